"""Config schemas: what each config group may hold, declared once as a dataclass beside the code it
configures (``DataSettings`` in :mod:`genre_cls.data.datamodule`, a network's settings in its own
module, ...), and checked here.

A schema is a dataclass whose fields are the group's keys. The field's type says what kind of
value it holds (``int`` a whole number, ``float`` a finite number, ``bool``, ``str`` a non-empty
text, ``list[int]``, ``Optional[...]`` for null, a nested schema for a sub-group, ``Any`` for
values checked only by their metadata); :func:`setting` adds the range (``ge``, ``gt``, ``le``,
``lt``), the allowed values (``choices``: a tuple, or a function that reads a registry) and the
hint a message ends with. :func:`check` merges a config node into its schema with OmegaConf
(``OmegaConf.structured``: types) and builds the dataclass (``OmegaConf.to_object``, which runs
its ``__post_init__``: checks across its fields, raising a ``UserError``); the first value
that does not fit becomes one :class:`~genre_cls.errors.UserError` naming the key, what it
accepts and what it got::

    lr must be > 0, got -1 (the paper's values: 0.01, 0.001, 0.0005, 0.0001)
    unknown data.split 'random': choose one of track, segment, filtered, official

A schema says what it does with keys it does not declare (:data:`EXTRA`): refuse them, refuse the
ones its target class does not take (``Trainer``'s arguments are too many to list), or leave them
to their own code (a sub-group of free settings).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import typing
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from genre_cls.errors import UserError, one_line

#: How a schema treats keys it does not declare: ``"refuse"`` (a typo), ``"ignore"`` (their own
#: code checks them), or ``"module.Class"`` (refused unless they are arguments of that class).
EXTRA = "__extra__"
#: The name a schema's "not a setting of" message gives (``GenreDataModule``, ``Trainer``).
OWNER = "__owner__"
HINT_ALL_KEYS = "check its spelling (python -m genre_cls.train --cfg job lists every key)"


def setting(
    default: Any = MISSING,
    *,
    kind: Any = None,
    null: bool = False,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence | Callable[[], Sequence] | None = None,
    also: tuple = (),
    item: dict | None = None,
    length: int | None = None,
    expect: str | None = None,
    ok: Callable[[Any], bool] | None = None,
    alternatives: tuple[dict, ...] = (),
    hint: str = "",
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A schema field with its default and what it accepts besides its type.

    Args:
        kind, null: for an ``Any`` field (whose values OmegaConf does not convert): the type its
            value is checked as, and whether null is allowed.
        ge, gt, le, lt: the range of a number (``>=``, ``>``, ``<=``, ``<``).
        choices: the allowed values, or a function returning them (a registry's names).
        also: values accepted besides the type's (``"warn"`` for Lightning's ``deterministic``).
        item, length: a list's items (``setting`` keyword arguments, e.g. ``{"ge": 1}``) and length.
        expect, ok: what the value must be, in words, and the test of it, where the above do not say.
        alternatives: the kinds of value an ``Any`` field takes (each a ``dict`` of these keyword
            arguments); it fits when one of them does.
        hint: appended to the message (``" (the paper's: 180)"``).
    """
    given = dict(kind=kind, null=null, ge=ge, gt=gt, le=le, lt=lt, choices=choices, also=also, item=item, length=length,
                 expect=expect, ok=ok, alternatives=alternatives, hint=hint)
    meta = {k: v for k, v in given.items() if v is not None and not (isinstance(v, (tuple, str, bool)) and not v)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --------------------------------------------------------------------------- what a field accepts


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _shown(value: Any) -> str:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return repr(value)


class Accepts:
    """What one field accepts, from its type and :func:`setting` metadata: :meth:`problem` says
    what the value must be when it does not fit (``None`` when it does)."""

    def __init__(self, tp: Any, meta: dict) -> None:
        self.meta = meta
        self.null = bool(meta.get("null"))
        if typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp):
            self.null = True
            (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = meta.get("kind", tp)
        self.tp = tp
        self.is_list = typing.get_origin(tp) in (list, tuple) or tp in (list, tuple)
        item_type = (typing.get_args(tp) or (Any,))[0] if self.is_list else None
        self.item = Accepts(item_type, meta.get("item", {})) if self.is_list else None
        self.alternatives = [Accepts(a.get("kind", Any), a) for a in meta.get("alternatives", ())]

    @property
    def choices(self) -> list | None:
        values = self.meta.get("choices")
        if values is None:
            return None
        return list(values() if callable(values) else values)

    def expect(self) -> str:
        """What the field must be, in words (``a whole number in [4, 1024]``, ``one of a, b``)."""
        m = self.meta
        text = m.get("expect")
        if text is None:
            if self.choices is not None:
                shown = list(dict.fromkeys(str(a) for a in self.choices))
                text = "one of " + ", ".join(shown[:12]) + (", ..." if len(shown) > 12 else "")
            elif self.alternatives:
                text = " or ".join(a.expect() for a in self.alternatives)
            elif self.is_list:
                size = f"{m['length']} " if "length" in m else ""
                text = f"a list of {size}values, each {self.item.expect()}"
            elif self.tp is bool:
                text = "true or false" + "".join(f" or {a!r}" for a in m.get("also", ()))
            elif self.tp is int:
                lo, hi = m.get("ge", 0), m.get("le")
                text = f"a whole number >= {lo}" if hi is None else f"a whole number in [{lo}, {hi}]"
            elif self.tp is float:
                lo = f"> {m['gt']:g}" if "gt" in m else f">= {m.get('ge', 0.0):g}"
                hi = f" and < {m['lt']:g}" if "lt" in m else (f" and <= {m['le']:g}" if "le" in m else "")
                text = lo + hi
            elif self.tp is str:
                text = "a text (a name or a path)"
            else:
                text = "a value"
        return text + (" or null" if self.null else "")

    def _fits(self, v: Any) -> bool:
        m = self.meta
        if any(v == a and type(v) is type(a) for a in m.get("also", ())):
            return True
        if self.choices is not None:
            return isinstance(v, (str, int)) and not isinstance(v, bool) and v in self.choices
        if self.alternatives:
            return any(a.problem(v) is None for a in self.alternatives)
        if "ok" in m:
            return bool(m["ok"](v))
        if self.is_list:
            return (isinstance(v, (list, tuple, ListConfig))
                    and (len(v) == m["length"] if "length" in m else len(v) > 0)
                    and all(self.item.problem(x) is None for x in v))
        if self.tp is bool:
            return isinstance(v, bool)
        if self.tp is int:
            return _is_int(v) and v >= m.get("ge", 0) and ("le" not in m or v <= m["le"])
        if self.tp is float:
            return (_is_number(v) and math.isfinite(v)
                    and (v > m["gt"] if "gt" in m else v >= m.get("ge", 0.0))
                    and ("lt" not in m or v < m["lt"]) and ("le" not in m or v <= m["le"]))
        if self.tp is str:
            return isinstance(v, str) and v != ""
        return True

    def problem(self, value: Any) -> str | None:
        """``None`` when ``value`` fits, else what it must be (:meth:`expect`)."""
        if value is None:
            return None if self.null else self.expect()
        if self._fits(value):
            return None
        if self.tp is float and "expect" not in self.meta and not (_is_number(value) and math.isfinite(value)):
            return "a finite number " + self.expect()
        return self.expect()

    def message(self, key: str, value: Any, expect: str) -> str:
        """The one-line error for ``key`` holding ``value``."""
        hint = self.meta.get("hint", "")
        if self.choices is not None:
            return f"unknown {key} {_shown(value)}: choose {expect}{hint}"
        return f"{key} must be {expect}, got {_shown(value)}{hint}"

    def typed(self, value: Any) -> bool:
        """Whether ``value`` has this field's type as a config writes it. OmegaConf would turn
        ``1`` into ``True`` and ``5`` into ``"5"``: a flag written ``1`` is refused instead."""
        if value is None or self.choices is not None or self.alternatives or "ok" in self.meta:
            return True
        if self.tp is bool:
            return isinstance(value, bool) or any(value == a and type(value) is type(a) for a in self.meta.get("also", ()))
        if self.tp is int:
            return _is_int(value)
        if self.tp is float:
            return _is_number(value)
        if self.tp is str:
            return isinstance(value, str)
        return True


def _nested(tp: Any) -> type | None:
    """The schema of a sub-group field (``Optional[LogMelSettings]`` -> ``LogMelSettings``)."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if dataclasses.is_dataclass(tp) else None


def fields_of(schema: type) -> dict[str, tuple[Any, dict]]:
    """``{key: (type, metadata)}`` of a schema's fields."""
    hints = typing.get_type_hints(schema)
    return {f.name: (hints[f.name], dict(f.metadata)) for f in dataclasses.fields(schema)}


# --------------------------------------------------------------------------- checking a node

_ABSENT = object()


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _read(node: Any, name: str, full: str) -> Any:
    """``node[name]``, resolved (one key at a time: keys nobody checks may hold interpolations that
    resolve only inside a Hydra run); :data:`_ABSENT` when absent or ``???``."""
    if isinstance(node, dict):
        value = node.get(name, _ABSENT)
        return _ABSENT if value == MISSING else value
    if name not in node or OmegaConf.is_missing(node, name):
        return _ABSENT
    try:
        value = node[name]
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, ListConfig) else value
    except OmegaConfBaseException as exc:
        raise UserError(f"{full} cannot be read: {one_line(exc)}") from None


def _unknown(schema: type, names: list[str]) -> list[str]:
    """The keys of ``names`` that ``schema`` refuses (see :data:`EXTRA`)."""
    declared = {f.name for f in dataclasses.fields(schema)}
    extra = getattr(schema, EXTRA, "refuse")
    rest = [n for n in names if n not in declared and not str(n).startswith("_")]
    if extra == "ignore" or not rest:
        return []
    if extra == "refuse":
        return rest
    module, _, name = extra.rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    return [n for n in rest if n not in params]


def check(schema: type, node: Any, key: str = "", dynamic: dict[str, type] | None = None) -> Any:
    """Check the config ``node`` (at ``key``) against ``schema`` and return the schema's object.

    ``dynamic`` gives the schema of sub-groups that depend on other values (a model's network
    settings depend on its ``arch``), by full key. Raises :class:`UserError` on the first key or
    value that does not fit.
    """
    dynamic = dynamic or {}
    if node is None:
        node = {}
    if not isinstance(node, (dict, DictConfig)):
        raise UserError(f"{key} must be a group of settings, got {_shown(node)}")
    for name in _unknown(schema, [str(k) for k in node.keys()]):
        owner = getattr(schema, OWNER, schema.__name__)
        raise UserError(f"{_join(key, name)} is not a setting of {owner}: {HINT_ALL_KEYS}")
    values: dict[str, Any] = {}
    declared = fields_of(schema)
    # Sub-groups named by a value elsewhere (a front end's settings under its name) are checked too.
    extra = {str(k): (Any, {}) for k in node.keys() if str(k) not in declared and _join(key, str(k)) in dynamic}
    for name, (tp, meta) in {**declared, **extra}.items():
        full = _join(key, name)
        value = _read(node, name, full)
        if value is _ABSENT:
            continue
        sub = dynamic.get(full) or _nested(tp)
        if sub is not None:
            if value is not None:
                check(sub, value, full, dynamic)
            continue
        value = to_plain(value)
        accepts = Accepts(tp, meta)
        expect = accepts.problem(value) if accepts.typed(value) else accepts.problem(value) or accepts.expect()
        if expect is not None:
            raise UserError(accepts.message(full, value, expect))
        values[name] = value
    # The types once more through OmegaConf's structured configs, then the dataclass itself
    # (its __post_init__ checks what one field cannot say alone).
    try:
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as exc:
        name = str(getattr(exc, "full_key", "") or "").split(".")[0].split("[")[0]
        if name not in values:
            raise UserError(f"{key or 'the config'} cannot be read: {one_line(exc)}") from None
        accepts = Accepts(*fields_of(schema)[name])
        raise UserError(accepts.message(_join(key, name), values[name], accepts.expect())) from None


def to_plain(value: Any) -> Any:
    """A config value as plain Python (lists and dicts, resolved)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value
