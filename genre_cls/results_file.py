"""The results file of ``predict ... out=results.jsonl`` (or ``results.csv``): one record per
audio file, written the moment the file is done, and resumed by the same command (:class:`ResultsFile`).

A record holds the file (its absolute path), its top class, that class's probability, every
class's probability, its duration, the unit it was judged by and how many, its flags, or the
error that stopped it; and what resuming needs: the file's size and modification time and the
checkpoint (its path and the SHA-256 of its bytes). JSON Lines holds one object per line, flags
as ``{name: why}``; CSV one row per file, a ``p_<class>`` column per class and the flags' names
joined by ``;`` (:data:`CSV_FIELDS`).

Each record is appended with one ``write``, so a kill loses at most the files in flight, and a
line cut short by a crash (the file does not end in a newline) is dropped when the file is opened
again. Running the same command again skips every file with a record, unless the file changed
since (its size or modification time): its record is dropped and it is predicted again. A results
file of another checkpoint is refused; so is a second process writing the same file (a lock).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_cls.data.cache import atomic_write, can_write_in
from genre_cls.errors import UserError

#: The formats by file suffix.
FORMATS = {".jsonl": "jsonl", ".csv": "csv"}
#: CSV columns around the ``p_<class>`` ones.
CSV_HEAD = ("file", "genre", "probability")
CSV_TAIL = ("duration_s", "unit", "units", "flags", "error", "size", "mtime_ns", "model", "checkpoint", "checkpoint_sha256")


def csv_fields(classes: Sequence[str]) -> list[str]:
    """The columns of a CSV results file for a model with ``classes``."""
    return [*CSV_HEAD, *(f"p_{c}" for c in classes), *CSV_TAIL]


@dataclass(frozen=True)
class CheckpointId:
    """Which checkpoint wrote a record: its path, its model's name and the SHA-256 of its bytes."""

    path: str
    model: str
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike, model: str) -> CheckpointId:
        """The identity of the checkpoint file ``path`` (a run folder means its ``checkpoints/best.ckpt``)."""
        p = Path(os.path.expanduser(str(path)))
        if p.is_dir():
            p = p / "checkpoints" / "best.ckpt"
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return cls(os.path.abspath(p), model, digest.hexdigest())


def file_state(path: str | os.PathLike) -> tuple[int | None, int | None]:
    """``(size, mtime_ns)`` of a file, ``(None, None)`` when it cannot be looked at."""
    try:
        st = os.stat(os.path.expanduser(str(path)))
    except OSError:
        return None, None
    return int(st.st_size), int(st.st_mtime_ns)


def results_path(value: Any) -> Path:
    """An ``out=`` value as a results file's path, checked before any work: a ``.jsonl`` or ``.csv``
    file (not a folder) in a folder that exists and can be written."""
    path = Path(os.path.expanduser(str(value)))
    if path.is_dir():
        raise UserError(f"out={value} is a folder: name a file in it, e.g. out={path / 'results.jsonl'}")
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"out={value} must be a .jsonl or .csv file, e.g. out=results.jsonl")
    parent = path.parent.absolute()
    if not parent.is_dir():
        raise UserError(f"the folder of out={value} does not exist ({parent}): create it first, or choose another place")
    if not can_write_in(parent):
        raise UserError(f"cannot write out={value}: {parent} is not writable, choose another place")
    return path


class ResultsFile:
    """One results file: the records it holds (:meth:`open`), and new ones appended (:meth:`write`).

    Use as ``with ResultsFile(path, classes, checkpoint) as out: todo = out.open(files) ...``.
    """

    def __init__(self, path: str | os.PathLike, classes: Sequence[str], checkpoint: CheckpointId) -> None:
        self.path = Path(path)
        self.format = FORMATS[self.path.suffix.lower()]
        self.classes = list(classes)
        self.checkpoint = checkpoint
        self.fields = csv_fields(self.classes)
        #: The records held, by file (absolute path), from the file and from this run.
        self.records: dict[str, dict[str, Any]] = {}
        self.redone = 0
        self._fd: int | None = None

    # -- reading -------------------------------------------------------------------------------------

    def _lines(self) -> tuple[list[bytes], bool]:
        """The file's complete lines, and whether its last line was cut short (no newline at its end)."""
        data = self.path.read_bytes() if self.path.is_file() else b""
        lines = data.split(b"\n")
        torn = bool(lines[-1])
        return [line for line in lines[:-1]], torn

    def _refuse_other(self, record: dict[str, Any]) -> None:
        if record.get("checkpoint_sha256") != self.checkpoint.sha256:
            raise UserError(
                f"out={self.path} holds the results of another checkpoint ({record.get('checkpoint') or 'unnamed'}, "
                f"sha256 {str(record.get('checkpoint_sha256'))[:12]}...): predict with that checkpoint to resume it, "
                "or choose another out= file for this one"
            )

    def _parse(self, lines: list[bytes]) -> list[tuple[dict[str, Any], bytes]]:
        """``(record, line)`` for each line; a file that is not ours, or another checkpoint's, is a :class:`UserError`."""
        not_ours = f"out={self.path} is not a genre_cls results file"
        hint = "choose another out= file (or remove this one)"
        out = []
        if self.format == "jsonl":
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise UserError(f"{not_ours} (line {number} is not JSON): {hint}") from None
                if not isinstance(record, dict) or not isinstance(record.get("file"), str) or "checkpoint_sha256" not in record:
                    raise UserError(f"{not_ours} (line {number} is no record of a file): {hint}")
                self._refuse_other(record)
                out.append((record, line))
            return out
        if not lines:
            return out
        try:
            header = next(csv.reader([lines[0].decode("utf-8")]))
        except (UnicodeDecodeError, csv.Error):
            raise UserError(f"{not_ours} (its first line is no CSV header): {hint}") from None
        if header != self.fields:
            if "checkpoint_sha256" in header and "file" in header:
                raise UserError(f"out={self.path} holds the results of another checkpoint (its columns are another "
                                f"model's classes): predict with that checkpoint to resume it, or choose another out= file")
            raise UserError(f"{not_ours} (its header is not {','.join(self.fields[:3])},...): {hint}")
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = next(csv.reader([line.decode("utf-8")]), [])
            except (UnicodeDecodeError, csv.Error):
                raise UserError(f"{not_ours} (line {number} is not CSV): {hint}") from None
            if len(row) != len(self.fields):
                raise UserError(f"{not_ours} (line {number} has {len(row)} fields, not {len(self.fields)}): {hint}")
            record = dict(zip(self.fields, row))
            self._refuse_other(record)
            record["size"] = int(record["size"]) if record["size"] else None
            record["mtime_ns"] = int(record["mtime_ns"]) if record["mtime_ns"] else None
            out.append((record, line))
        return out

    def open(self, files: Sequence[str | os.PathLike], states: Sequence[tuple[int | None, int | None]]) -> list[int]:
        """Read the records already there, lock the file and open it for appending; returns the
        indices of ``files`` (with their :func:`file_state` ``states``) that still need a record.

        A record of a file that changed since (size or modification time) is dropped, and the file
        predicted again (:attr:`redone` counts them); a line cut short by a crash is dropped.
        """
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise UserError(f"out={self.path} is being written by another predict command now: wait for it to end, "
                            "or choose another out= file") from None
        lines, torn = self._lines()
        parsed = self._parse(lines)
        wanted = {os.path.abspath(os.path.expanduser(str(f))): i for i, f in enumerate(files)}
        kept: list[bytes] = []
        records: dict[str, tuple[dict[str, Any], bytes]] = {}
        for record, line in parsed:
            i = wanted.get(record["file"])
            if i is not None and (record.get("size"), record.get("mtime_ns")) != tuple(states[i]):
                self.redone += 1
                continue
            records[record["file"]] = (record, line)  # a later record of a file supersedes an earlier one
        kept = [line for _, line in records.values()]
        if self.format == "csv":
            kept.insert(0, ",".join(self.fields).encode() if not lines else lines[0])
        if torn or self.redone or len(kept) != len(lines):
            self._rewrite(kept)
        self.records = {name: record for name, (record, _) in records.items()}
        return [i for name, i in wanted.items() if name not in self.records]

    def _rewrite(self, lines: list[bytes]) -> None:
        """Replace the file by ``lines`` (atomically) and lock and open the new one."""
        text = b"".join(line + b"\n" for line in lines)
        atomic_write(self.path, lambda fh: fh.write(text))
        old, self._fd = self._fd, os.open(self.path, os.O_RDWR | os.O_APPEND)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(old)

    # -- writing -------------------------------------------------------------------------------------

    def record(self, result: dict[str, Any], state: tuple[int | None, int | None]) -> dict[str, Any]:
        """The record of a result of :func:`genre_cls.library.predict_many` (parts left out)."""
        record: dict[str, Any] = {"file": os.path.abspath(os.path.expanduser(result["file"]))}
        if "error" in result:
            record["error"] = result["error"]
        else:
            record.update({k: result[k] for k in ("genre", "probability", "probabilities", "duration_s", "unit", "units", "flags")})
        size, mtime = state
        record.update(size=size, mtime_ns=mtime, model=self.checkpoint.model, checkpoint=self.checkpoint.path,
                      checkpoint_sha256=self.checkpoint.sha256)
        return record

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (from :meth:`record`) as one line, in one ``write``."""
        if self.format == "jsonl":
            line = json.dumps(record, ensure_ascii=False) + "\n"
        else:
            row = {k: record.get(k, "") for k in self.fields if not k.startswith("p_")}
            row["flags"] = ";".join(record.get("flags") or {})
            row["error"] = record.get("error", "")
            for k in ("size", "mtime_ns"):
                row[k] = "" if record.get(k) is None else record[k]
            for c in self.classes:
                row[f"p_{c}"] = record["probabilities"][c] if "probabilities" in record else ""
            buf = io.StringIO()
            csv.DictWriter(buf, fieldnames=self.fields, lineterminator="\n").writerow(row)
            line = buf.getvalue()
        os.write(self._fd, line.encode("utf-8"))
        self.records[record["file"]] = record

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)  # the lock goes with it
                self._fd = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
