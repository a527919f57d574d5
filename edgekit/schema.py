"""Recipes checked whole with pydantic v2, before any work, from the same dataclasses the rest of edgekit uses.

The recipe format is defined once, as the frozen dataclasses of :mod:`edgekit.recipe` with their ``_check``
metadata (ranges, fixed choices, list lengths). This module turns each into a pydantic model (element types
of lists, ``Literal`` choices, ``ge``/``le`` ranges, unknown keys forbidden), validates a parsed YAML mapping
with it — numbers as people write them (``1e-3``, which YAML 1.1 reads as a string; ``1_000``) become numbers
— and builds the dataclasses from the result. The first problem becomes one line naming the file, the key
path, the value, the valid choices and a close match. :func:`json_schema` is the same model as a JSON Schema,
for editors (``edgekit schema recipe``).

The device side (profiles) keeps :func:`edgekit.recipe.from_dict`, which reads the same metadata and applies
the same rules without pydantic.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Annotated, Any, Literal

from edgekit.errors import ConfigError, close_matches

_MESSAGES = {
    "int_parsing": "expected an integer", "int_type": "expected an integer", "int_from_float": "expected an integer",
    "float_parsing": "expected a number", "float_type": "expected a number", "bool_parsing": "expected true or false",
    "bool_type": "expected true or false", "string_type": "expected a string", "list_type": "expected a list",
    "dict_type": "expected a mapping", "model_type": "expected a mapping", "dataclass_type": "expected a mapping",
    "finite_number": "expected a finite number",
}


@functools.cache
def model_for(cls: type):
    """The pydantic model of a recipe dataclass (cached)."""
    from pydantic import BaseModel, ConfigDict, Field, create_model

    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        tp = _pydantic_type(hints[f.name], f.metadata)
        extra = {"alias": f.name} if hasattr(BaseModel, f.name) else {}  # "schema" is a BaseModel attribute
        if f.default is not dataclasses.MISSING:
            spec = Field(default=f.default, **extra)
        elif f.default_factory is not dataclasses.MISSING:
            spec = Field(default_factory=f.default_factory, **extra)
        else:
            spec = Field(**extra)
        fields[_py(f.name)] = (tp, spec)
    return create_model(cls.__name__, __config__=ConfigDict(extra="forbid", allow_inf_nan=False,
                                                            populate_by_name=True), **fields)


def _py(name: str) -> str:
    from pydantic import BaseModel

    return f"{name}_" if hasattr(BaseModel, name) else name


def _pydantic_type(tp: Any, meta) -> Any:
    from pydantic import Field

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _pydantic_type(inner[0], meta) | None
    if dataclasses.is_dataclass(tp):
        return model_for(tp)
    meta = meta or {}
    choices, lo, hi, length = meta.get("choices"), meta.get("lo"), meta.get("hi"), meta.get("length")
    if tp is list or origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if choices:
            item = Literal[tuple(choices)]
        elif lo is not None or hi is not None:
            item = Annotated[item, Field(ge=lo, le=hi)]
        return Annotated[list[item], Field(min_length=length, max_length=length)] if length else list[item]
    if choices:
        return Literal[tuple(choices)]
    if tp in (int, float) and (lo is not None or hi is not None):
        return Annotated[tp, Field(ge=lo, le=hi)]
    return tp


def validate(cls: type, raw: Any, file: str) -> Any:
    """``raw`` (a parsed YAML mapping) checked against ``cls`` and built into it.

    Raises:
        ConfigError: one line for the first problem: file, key path, value, what was expected, a close match.
    """
    from pydantic import ValidationError

    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: is empty" if raw is None else f"{file}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        model = model_for(cls).model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_line(exc.errors()[0], cls, file)) from None
    return _build(cls, model)


def _build(cls: type, model) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        v = getattr(model, _py(f.name))
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
            typing.Union, types.UnionType) else [tp]
        if v is not None and dataclasses.is_dataclass(inner[0]):
            v = _build(inner[0], v)
        values[f.name] = v
    return cls(**values)


def _line(err: dict, cls: type, file: str) -> str:
    loc = [str(p) for p in err["loc"]]
    where = "".join(f"[{p}]" if p.isdigit() else (f".{p}" if i else p) for i, p in enumerate(loc))
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent = _class_at(cls, loc[:-1])
        names = [f.name for f in dataclasses.fields(parent) if f.name != "source"] if parent else []
        return (f"{file}: unknown key '{where}'.{close_matches(loc[-1], names)}"
                + (f" Valid keys: {', '.join(names)}" if names else ""))
    if kind == "missing":
        return f"{file}: missing required key '{where}'"
    bad = f"{file}: {where} = {value!r}"
    if kind == "literal_error":
        expected = list((err.get("ctx") or {}).get("expected", "").replace("'", "").replace(" or ", ", ").split(", "))
        return f"{bad}: must be one of {', '.join(expected)}.{close_matches(value, expected)}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        meta = _meta_at(cls, [p for p in loc if not p.isdigit()])
        return f"{bad}: must be between {meta.get('lo')} and {meta.get('hi')}"
    if kind in ("too_short", "too_long"):
        meta = _meta_at(cls, loc)
        return f"{bad}: expected {meta.get('length')} values"
    return f"{bad}: {_MESSAGES.get(kind, err['msg'].lower())}"


def _class_at(cls: type, loc: list[str]) -> type | None:
    for part in loc:
        hints = typing.get_type_hints(cls)
        tp = hints.get(part)
        if tp is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        cls = args[0]
        if not dataclasses.is_dataclass(cls):
            return None
    return cls


def _meta_at(cls: type, loc: list[str]) -> dict:
    parent = _class_at(cls, loc[:-1]) if len(loc) > 1 else cls
    if parent is None:
        return {}
    f = next((f for f in dataclasses.fields(parent) if f.name == loc[-1]), None)
    return dict(f.metadata) if f is not None else {}


def json_schema(cls: type, title: str) -> dict:
    """``cls`` as a JSON Schema (draft 2020-12), for editors that complete and check YAML (edgekit.recipe uses it)."""
    schema = model_for(cls).model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema
