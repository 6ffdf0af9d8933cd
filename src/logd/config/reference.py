"""The configuration reference, generated from the pydantic models so it cannot drift.

`logd config-reference` prints it; docs/config-reference.md is its output, and a test fails
when a key has no description or the file is stale.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ByteSize, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from logd.config.paths import DatabaseURL
from logd.config.settings import RetryConfig, Settings, SourceConfig
from logd.plugin.ratelimit import format_rate, parse_rate
from logd.timeparse import format_duration, parse_duration


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" (optional)" if type(None) in args else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, tuple, set):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "table"
    if annotation is SecretStr:
        return "secret"
    if annotation is Path:
        return "path"
    if annotation is DatabaseURL:
        return "postgresql:// URL (secret)"
    if annotation is ByteSize:
        return "size"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    if annotation is float:
        return "number"
    return getattr(annotation, "__name__", str(annotation))


def _is_duration(field: FieldInfo) -> bool:
    return _parsed_by(field, parse_duration)


def _parsed_by(field: FieldInfo, parser: Any) -> bool:
    annotated = [field.annotation, *typing.get_args(field.annotation)]
    metadata = list(field.metadata)
    for item in annotated:
        metadata += list(getattr(item, "__metadata__", ()))
    return any(getattr(m, "func", None) is parser for m in metadata)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "see description"
        if isinstance(value, BaseModel):
            return "see below"
    else:
        value = field.default
    if value is None or value is PydanticUndefined:
        return "none"
    if value == [] or value == {}:
        return "empty"
    if _is_duration(field) and isinstance(value, int | float):
        return f"`{format_duration(value)}`"
    if _parsed_by(field, parse_rate) and isinstance(value, int | float):
        return f"`{format_rate(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, ByteSize):
        return f"`{_format_size(value)}`"
    return f"`{value}`"


def _format_size(size: int) -> str:
    """`4194304` → `4MiB`: the largest binary unit that divides the size."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def fields_of(
    model: type[BaseModel], skip: tuple[str, ...] = ()
) -> Iterator[tuple[str, FieldInfo]]:
    """The documented fields of `model`, in declaration order."""
    for name, field in model.model_fields.items():
        if name not in skip:
            yield name, field


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in fields_of(model, skip):
        desc = (field.description or "").replace("\n", " ")
        kind = "duration" if _is_duration(field) else _type_name(field.annotation)
        if _parsed_by(field, parse_rate):
            kind = "rate"
        if kind in ("duration", "rate") and "optional" in _type_name(field.annotation):
            kind += " (optional)"
        lines.append(f"| `{name}` | {kind} | {_default(field)} | {desc} |")
    return lines


def models() -> list[tuple[str, type[BaseModel], tuple[str, ...]]]:
    """Every configuration model with the heading it is documented under."""
    from logd.plugin.manager import load_plugins

    out: list[tuple[str, type[BaseModel], tuple[str, ...]]] = [
        ("Top level", Settings, ("sources", "webhooks", "exports")),
        ("`[[sources]]`: keys every source has", SourceConfig, ()),
        ("`retry` (in a source)", RetryConfig, ()),
    ]
    webhooks = Settings.model_fields.get("webhooks")
    if webhooks is not None:
        (item,) = typing.get_args(webhooks.annotation) or (None,)
        if isinstance(item, type) and issubclass(item, BaseModel):
            out.append(("`[[webhooks]]`", item, ()))
    exports = Settings.model_fields.get("exports")
    if exports is not None:
        (item,) = typing.get_args(exports.annotation) or (None,)
        if isinstance(item, type) and issubclass(item, BaseModel):
            out.append(('`[[exports]]` with `kind = "otlp"`', item, ()))
    for name, provider in sorted(load_plugins().providers.items()):
        heading = f'`[[sources]]` with `provider = "{name}"`'
        out.append((heading, provider.Options, ()))
        for key, field in provider.Options.model_fields.items():
            nested = _nested_model(field.annotation)
            if nested is not None:
                out.append((f"`{key}` items of a `{name}` source", nested, ()))
    return out


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `list[Model]`, `Model | None` and the like, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        inner = _nested_model(arg)
        if inner is not None:
            return inner
    return None


def render() -> str:
    """The whole reference as Markdown."""
    parts = [
        "# Configuration reference",
        "",
        "Generated from the configuration models by `logd config-reference`; do not edit.",
        "Durations take seconds or `30s`, `5m`, `1h`, `1d`. Secrets take a string,",
        '`{ env = "VAR" }` or `{ file = "/path" }` (with `${CREDENTIALS_DIRECTORY}` expanded).',
        "Sizes take bytes or `512KiB`, `4MiB`, `1GiB` (`4MB` is 4,000,000 bytes).",
    ]
    for heading, model, skip in models():
        parts += ["", f"## {heading}", "", *_table(model, skip)]
    return "\n".join(parts) + "\n"
