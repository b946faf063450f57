"""The method registry: a tiny dict filled by ``@register`` on each method class.

The package's ``__init__`` imports ``methods`` (every method module), so the registry is full as soon as
``unipb_core.pruning`` (or any module in it) is imported; this module imports none of them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Union

CATEGORIES = ("baseline", "vit", "llm", "hybrid")

_REGISTRY: dict[str, type] = {}


class UnknownMethodError(ValueError):
    """A method name that is not registered."""


class MethodParamError(ValueError):
    """A method parameter of the wrong type or value (names the method, the parameter and what is accepted)."""


def register(cls: type) -> type:
    """Class decorator: register ``cls`` under its ``name``; category and stage must be declared."""
    name = getattr(cls, "name", None)
    if not name or name in _REGISTRY:
        raise ValueError(f"method class {cls.__name__} needs a unique `name` (got {name!r})")
    if getattr(cls, "category", None) not in CATEGORIES:
        raise ValueError(f"method {name!r}: category must be one of {CATEGORIES}")
    _REGISTRY[name] = cls
    return cls


def available() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def method_class(name: str) -> type:
    """The registered class for ``name``; unknown names list the valid ones and close matches."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownMethodError(f"unknown pruning method {name!r}.{hint} Registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get(name: str, **params: Any):
    """Instantiate method ``name`` with ``params``.

    Unknown parameters are an error naming the accepted ones; each value is checked against the type of its
    dataclass field (``int``, ``float``, ``str``, ``bool``, ``Literal[...]``, ``X | None``, ``tuple[int, ...]``)
    before the method's own checks run, so ``layer: 2.5``, ``layer: "two"`` or ``layer: true`` never reach
    a method. Integers are accepted for float fields (as floats) and lists for tuple fields (as tuples).
    """
    cls = method_class(name)

    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        names = ", ".join(sorted(fields)) or "none"
        raise UnknownMethodError(f"method {name!r}: unknown parameter(s) {', '.join(unknown)}; accepted: {names}")
    hints = _field_types(cls) if params else {}
    checked = {}
    for key, value in params.items():
        ok, converted = _conform(value, hints.get(key, Any))
        if not ok:
            raise MethodParamError(
                f"method {name!r}: parameter {key!r} = {value!r} ({type(value).__name__}) is not accepted; "
                f"expected {_describe(hints.get(key, Any))}"
            )
        checked[key] = converted
    return cls(**checked)


def _field_types(cls: type) -> dict[str, Any]:
    """The dataclass fields' annotations, resolved (string annotations under ``from __future__``)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation naming something only imported for type checkers
        return {f.name: f.type for f in dataclasses.fields(cls) if not isinstance(f.type, str)}


def _conform(value: Any, tp: Any) -> tuple[bool, Any]:
    """(whether ``value`` fits annotation ``tp``, the value converted: int -> float, list -> tuple)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, value
    if origin in (Union, types.UnionType):
        for option in args:
            ok, converted = _conform(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args), value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:  # finite: NaN and infinity have no place in a config hash
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_conform(v, args[0]) for v in value]
        elif len(args) == len(value):
            items = [_conform(v, a) for v, a in zip(value, args, strict=True)]
        else:
            return False, value
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value  # an annotation this check does not model: the method's own checks decide


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {plural.get(args[0], 'values')}"
        return f"a list of {len(args)} values"
    named = {type(None): "null", bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return named.get(tp, getattr(tp, "__name__", str(tp)))
