"""The config folder ``conf/``: where it is, the options of each config group, and composing
``conf/train.yaml`` with a command line's overrides (Hydra's several-line errors as one line)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genre_cls.errors import UserError

#: ``conf/`` of the repository; an install from a wheel holds it as the package ``genre_cls.configs``.
CONF_DIR = next(
    (d for d in (Path(__file__).resolve().parent / "configs", Path(__file__).resolve().parent.parent / "conf") if d.is_dir()),
    Path(__file__).resolve().parent.parent / "conf",
)
#: Config groups a user picks on the command line (``group=option``).
GROUPS = ("data", "model", "optim", "trainer", "callbacks", "logger", "experiment", "debug")
#: The command's own hint where a key is misspelt.
EVERY_KEY = "python -m genre_cls.train --cfg job prints every key"


def options(group: str) -> list[str]:
    """The options of a config group: the names of ``conf/<group>/*.yaml``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def settings_of(config_name: str) -> tuple[str, ...]:
    """The settings a command's ``conf/<config_name>.yaml`` offers (its keys but Hydra's)."""
    return tuple(sorted(set(OmegaConf.load(CONF_DIR / f"{config_name}.yaml").keys()) - {"defaults", "hydra"}))


def optim_name(target: str | None) -> str:
    """``torch.optim.RMSprop`` -> ``rmsprop``: an optimiser config's short name."""
    return str(target or "").rsplit(".", 1)[-1].lower()


@lru_cache(maxsize=None)
def _optimisers() -> tuple[tuple[str, str], ...]:
    return tuple((name, str(OmegaConf.load(CONF_DIR / "optim" / f"{name}.yaml").get("_target_"))) for name in options("optim"))


def optimisers() -> dict[str, str]:
    """The optimisers a run may use: ``conf/optim/<name>.yaml`` -> its ``_target_``."""
    return dict(_optimisers())


def compose(overrides: Sequence[str], multirun: bool = False, hydra: bool = False) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` (with Hydra's own config when ``hydra``);
    Hydra's several-line errors become one :class:`UserError` line. ``multirun``: the command
    line has ``-m`` (a list of values is then a sweep, not a mistake)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("train", overrides=list(overrides), return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        first = lines[0] if lines else type(exc).__name__
        if "LexerNoViableAltException" in first or "mismatched input" in first:
            first = (f"cannot parse the override {first.split(': ', 1)[-1]!r}: quote a value with special "
                     "characters ('data.root=\"~/My Music\"') or write $HOME instead of ~")
        if first.startswith("Ambiguous value for argument") and not multirun:
            first += ": several values sweep only with -m (python -m genre_cls.train -m lr=1e-3,1e-4)"
        if first.startswith("Could not override") and any(line.startswith("To append") for line in lines):
            first += f" (no such key: check its spelling; {EVERY_KEY})"
        raise UserError(first) from None
