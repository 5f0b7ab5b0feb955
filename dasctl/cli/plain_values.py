"""Command-line values converted without pydantic, for start-up's sake.

Typer converts every value of every command through a pydantic TypeAdapter, and importing pydantic costs
about 70 ms of CPU: half of what a short command like `dasctl config show` needs in all. dasctl's options
are plain (text, flags, numbers with bounds, paths, lists of them), and a plain value converts the same way
without it: text as given, a number written in digits, a path through typer's own path checks. Anything
else (a value that does not parse or is out of bounds, a type not listed here) goes to typer's own
conversion, so results and error messages stay typer's. With a typer that has no such conversion layer
(older versions) `install` does nothing.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from typer import _click

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_WHOLE = re.compile(r"[+-]?\d{1,18}")
#: a value `_plain` cannot vouch for: typer converts it
_NOT_PLAIN = object()
_P = TypeVar("_P", bound=_click.Parameter)


def install(command: _click.Command) -> None:
    """Give every parameter of the tree whose values can be plain the conversion below."""
    for param in command.params:
        converting(param)
    for sub in getattr(command, "commands", {}).values():
        install(sub)


def converting(param: _P | None) -> _P | None:
    """The parameter, converting plain values itself when it can (also the help option, made late)."""
    converter = _converter()
    descriptor = getattr(param, "type_descriptor", None)
    unconverted = getattr(param, "_runtime_param", _NOT_PLAIN) is None  # typer builds its own on first use
    if (param is not None and converter is not None and descriptor is not None and unconverted
            and _convertible(descriptor.annotation, descriptor.parameter_info)):
        param._runtime_param = converter(  # type: ignore[attr-defined]
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation, descriptor=descriptor,
        )
    return param


def _convertible(annotation: Any, info: Any) -> bool:
    if getattr(info, "parser", None) is not None or getattr(info, "clamp", False):
        return False
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (None,)
        return item in (str, float, int, Path)
    return annotation in (str, bool, float, int, Path)


@functools.cache
def _converter() -> type | None:
    """typer's RuntimeParam for plain values; None with a typer that has none (it needs no pydantic)."""
    try:
        from typer._coercion import RuntimeParam, TypeDescriptor
    except ImportError:
        return None

    @dataclass(frozen=True)
    class PlainValues(RuntimeParam):
        """Plain values here; any other through typer's own conversion (built only then)."""

        descriptor: TypeDescriptor

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            plain = _plain(self.annotation, self.parameter_info, value, param, ctx)
            if plain is not _NOT_PLAIN:
                return plain
            from typer._coercion import build_runtime_param

            return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    return PlainValues


def _plain(annotation: Any, info: Any, value: Any, param: Any, ctx: Any) -> Any:
    """The value typer would produce, or _NOT_PLAIN when only typer's conversion can say."""
    if get_origin(annotation) is list:
        if not isinstance(value, (list, tuple)):
            return _NOT_PLAIN
        (item_type,) = get_args(annotation)
        items = [_plain(item_type, info, item, param, ctx) for item in value]
        return _NOT_PLAIN if any(item is _NOT_PLAIN for item in items) else items
    if annotation is str:
        return value if type(value) is str else _NOT_PLAIN
    if annotation is bool:
        return value if type(value) is bool else _NOT_PLAIN
    if annotation is Path:
        if type(value) is not str or info.path_type is not None:
            return _NOT_PLAIN
        from typer._param_types import coerce_cli_path

        # what typer does with a path already converted (existence, file or directory, `-`, ...)
        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    if annotation is float:
        if type(value) is str and _DECIMAL.fullmatch(value):
            number: float | int = float(value)
        elif type(value) is float:
            number = value
        else:
            return _NOT_PLAIN
        return number if math.isfinite(number) and _within(number, info) else _NOT_PLAIN
    if annotation is int:
        if type(value) is str and _WHOLE.fullmatch(value):
            number = int(value)
        elif type(value) is int:
            number = value
        else:
            return _NOT_PLAIN
        return number if _within(number, info) else _NOT_PLAIN
    return _NOT_PLAIN


def _within(number: float, info: Any) -> bool:
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    return (low is None or number >= low) and (high is None or number <= high)
