"""Option values checked without pydantic when that is plainly safe (issue 19: quick start-up).

typer 0.29 builds a pydantic ``TypeAdapter`` for every option it processes, even one left at its
default (the root's ``--output`` on ``storagectl diag --help``): importing pydantic and building
adapters costs more than the rest of a quick command. ``QuickCoercion`` takes the cases whose
answer is obvious (no value; a plain str; a whole number; a choice; a path, checked by typer's own
``coerce_cli_path``; an option with its own ``parser``, which is all typer's adapter applies) and
hands every other case, and every error, to typer's own coercion, so results and error messages
stay typer's. tests/test_cli_startup.py compares both on many values.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

try:  # typer internals: without them (another typer), typer's own coercion simply runs
    from typer._coercion import build_runtime_param
    from typer._param_types import coerce_cli_choice, coerce_cli_path, routes_to_path
    from typer._typing import is_literal_type, literal_values
except ImportError:  # pragma: no cover - depends on the installed typer
    build_runtime_param = None

_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")
_FALL_BACK = object()


class QuickCoercion:
    """Stands in for typer's runtime coercion of one parameter; builds typer's on first need."""

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:  # as typer's RuntimeParam.coerce, without building an adapter first
            return () if param.multiple or param.nargs == -1 else None
        if param.multiple or param.nargs != 1:
            return self._typer_coercion().coerce(value, param=param, ctx=ctx)
        try:
            quick = self._quick(value, param, ctx)
        except Exception:  # noqa: BLE001 - typer raises its own error for this value below
            quick = _FALL_BACK
        if quick is _FALL_BACK:
            return self._typer_coercion().coerce(value, param=param, ctx=ctx)
        return quick

    def _typer_coercion(self) -> Any:
        if self._typer is None:
            self._typer = build_runtime_param(self.descriptor)
        return self._typer

    def _quick(self, value: Any, param: Any, ctx: Any) -> Any:
        """The value typer would return, or _FALL_BACK; same order of cases as typer's adapters."""
        annotation, info = self.descriptor.annotation, self.descriptor.parameter_info
        if self.descriptor.file_annotation is not None:
            return _FALL_BACK
        if info.parser is not None:  # typer's adapter is the parser itself (an error: typer's, on the way back)
            return info.parser(value)
        if isinstance(annotation, type) and issubclass(annotation, Enum) or is_literal_type(annotation):
            choices = list(annotation) if isinstance(annotation, type) else literal_values(annotation)
            return coerce_cli_choice(value, choices=choices, case_sensitive=info.case_sensitive, ctx=ctx)
        if annotation is int:
            return _whole_number(value, info)
        if annotation is float:
            return _in_range(value, info) if type(value) is float else _FALL_BACK
        if annotation is str:
            return value if type(value) is str else _FALL_BACK
        if routes_to_path(annotation, info) and _plain_path(value):
            path_type = info.path_type or (annotation if isinstance(annotation, type) and issubclass(annotation, Path)
                                           else None)
            if isinstance(path_type, type) and issubclass(path_type, Path):
                value = path_type(value)
            return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)
        return _FALL_BACK


def _whole_number(value: Any, info: Any) -> Any:
    if type(value) is int:
        number = value
    elif type(value) is str and _WHOLE_NUMBER.fullmatch(value):
        number = int(value)
    else:
        return _FALL_BACK
    return _in_range(number, info)


def _in_range(number: float, info: Any) -> Any:
    if info.clamp or (info.min is not None and number < info.min) or (info.max is not None and number > info.max):
        return _FALL_BACK  # clamping and the range error: typer's
    return number


def _plain_path(value: Any) -> bool:
    return isinstance(value, Path) or (type(value) is str and value != "" and "\0" not in value)


def install_quick_coercion(command: Any, *, subcommands: bool = True) -> None:
    """Give every typer parameter of ``command`` (and of its subcommands) a ``QuickCoercion``,
    including those click adds when parsing (the help option; typer's completion options)."""
    if build_runtime_param is None:
        return  # pragma: no cover
    parameters_of = command.get_params

    def get_params(ctx: Any) -> list[Any]:
        params = parameters_of(ctx)
        for param in params:
            _install(param)
        return params

    command.get_params = get_params
    commands = getattr(command, "commands", None)
    if subcommands and type(commands) is dict:  # a LazyCommands installs on each command it builds
        for sub in commands.values():
            install_quick_coercion(sub)


def _install(param: Any) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(param, "_runtime_param", "absent") is None:
        param._runtime_param = QuickCoercion(descriptor)
