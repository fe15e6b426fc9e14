"""Errors a user can cause and fix, and how every command reports them.

A :class:`UserError` (or a subclass) ends a command with one ``error: ...`` line on stderr and
exit status 2, never a traceback. Every ``python -m genre_cls.X`` command runs through
:func:`run_cli` (or :func:`user_errors` inside a Hydra ``main``), so the wording and the
status are the same everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

#: The exit status of a command the user has to change.
USAGE_STATUS = 2


class UserError(ValueError):
    """A mistake the user can fix; reported as one line on stderr, without a traceback."""


class DataRootError(UserError):
    """The data root is missing or holds no GTZAN layout."""


class SplitError(UserError):
    """An unknown split name or a split that leaves a side empty."""


def one_line(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """A library's exception message as one short line, without the path it repeats."""
    text = str(exc)
    if "Weights only load failed" in text:
        return "it holds Python objects that torch.load(weights_only=True) refuses to load"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    if line.endswith(":") and len(lines) > 1:  # a heading, then what it heads: say what
        line = f"{line} {lines[1]}"
    if path is not None and str(path) in line:
        line = line.split(str(path), 1)[1].lstrip("'\": ")
    return line if len(line) <= 160 else line[:157] + "..."


def printable(text: object) -> str:
    """``text`` for one cell of a table or one line of output: a character that would break it (a
    newline, a tab, any other control character in a label or a file name) as its escape (``\\n``),
    every other character, CJK and emoji included, as it is."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def exit_with(message: object, status: int = USAGE_STATUS) -> NoReturn:
    """Print ``error: <message>`` (one line) on stderr and exit with ``status``."""
    text = " ".join(str(message).split()) if "\n" in str(message) else str(message)
    print(f"error: {text}", file=sys.stderr)
    sys.exit(status)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose command-line mistakes end as one ``error:`` line and exit status 2
    (argparse's own answer is a usage block of several lines)."""

    def error(self, message: str) -> NoReturn:
        exit_with(f"{message} ({self.prog} --help lists the arguments)")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`UserError` raised inside into one ``error:`` line and exit status 2;
    a closed stdout (``| head``) ends the command quietly with status 1."""
    try:
        yield
    except UserError as exc:
        exit_with(exc)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:
        # hydra.utils.instantiate wraps a constructor's UserError (e.g. an unknown data.images)
        # in its own multi-line InstantiationException; report the user's mistake itself.
        if isinstance(exc.__cause__, UserError):
            exit_with(exc.__cause__)
        raise


def run_cli(main: Callable[[], Any], check: Callable[[Sequence[str]], None] | None = None) -> Any:
    """The one way a command starts: ``check(argv)`` first (checks of the command line that
    would otherwise end in a multi-line report), then ``main()``, both under :func:`user_errors`."""
    with user_errors():
        if check is not None:
            check(sys.argv[1:])
        return main()


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite (too high a learning rate, or bad data)."""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM stopped a run; its checkpoint and ``interrupted.json`` are written.

    A ``BaseException`` like ``KeyboardInterrupt``: a sweep must stop, not go on to its next run.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = int(signum)

    @property
    def status(self) -> int:
        """The shell's convention for a command killed by a signal: 128 + its number."""
        return 128 + self.signum
