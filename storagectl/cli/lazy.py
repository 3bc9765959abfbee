"""Command groups imported on first use (issue 19): `storagectl --help` lists every command from a
table of names and summaries, and `storagectl backup list` imports backup_cmd alone.

The root group holds a ``LazyCommands`` mapping instead of a dict: looking a name up imports its
module and builds the click command as ``app.add_typer``/``app.command`` would have; listing the
names imports nothing. Code that walks ``group.commands.items()`` (tests, completion) still sees
every command, loaded on the way.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from gettext import gettext
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_command_name, get_group_from_info
from typer.models import TyperInfo

from storagectl.cli.coercion import install_quick_coercion


@dataclass(frozen=True)
class LazyCommand:
    """``module.attribute`` is a ``typer.Typer`` (a command group) or a function (one command, built
    with ``cls``). ``summary`` is what `storagectl --help` shows: the first sentence of its help
    (tests/test_cli_startup.py fails when the two differ)."""

    module: str
    attribute: str
    summary: str
    cls: type[Any] | None = None


class LazyCommands(MutableMapping[str, Any]):
    """A group's commands by name, each built by ``build(name)`` when first looked up."""

    def __init__(self, names: Iterable[str], build: Callable[[str], Any], loaded: dict[str, Any]) -> None:
        self._names, self._build, self._loaded = list(names), build, dict(loaded)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in self._names:
                raise KeyError(name)
            self._loaded[name] = command = self._build(name)
            install_quick_coercion(command)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._loaded.pop(name, None)
        self._names = [other for other in self._names if other != name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._names  # without building it

    def __iter__(self) -> Iterator[str]:
        yield from self._names
        yield from (name for name in self._loaded if name not in self._names)

    def __len__(self) -> int:
        return len(set(self._names) | set(self._loaded))

    def loaded(self, name: str) -> Any | None:
        return self._loaded.get(name)


class LazyGroup(TyperGroup):
    """A root group whose subcommands come from ``table``; subclass it and set ``table`` and ``app``."""

    table: ClassVar[dict[str, LazyCommand]] = {}
    app: ClassVar[typer.Typer | None] = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = LazyCommands(self.table, lambda name: self.build(name, self.table[name]), self.commands)
        install_quick_coercion(self, subcommands=False)

    def build(self, name: str, entry: LazyCommand) -> Any:
        """The click command for ``name``, as ``app.add_typer``/``app.command`` would have built it."""
        target = getattr(importlib.import_module(entry.module), entry.attribute)
        settings = {"pretty_exceptions_short": self.app.pretty_exceptions_short if self.app else True,
                    "rich_markup_mode": self.rich_markup_mode}
        if isinstance(target, typer.Typer):
            return _group_built_on_demand(TyperInfo(target, name=name), self.suggest_commands, settings)
        holder = typer.Typer()
        holder.command(name, cls=entry.cls)(target)
        return get_command_from_info(holder.registered_commands[0], **settings)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # typer's walks .items(), which would load every command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """As typer's, with the summaries from the table for the commands not loaded."""
        commands = []
        for name in self.list_commands(ctx):
            command = self.commands.loaded(name) if isinstance(self.commands, LazyCommands) else None
            if command is None and name in self.table:
                command = _Summary(self.table[name].summary)
            elif command is None:
                command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                commands.append((name, command))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
            with formatter.section(gettext("Commands")):
                formatter.write_dl(rows)


@dataclass(frozen=True)
class _Summary:
    """What the command list needs of a command not loaded: its short help, cut as click cuts it."""

    help: str
    hidden: bool = False

    def get_short_help_str(self, limit: int = 45) -> str:
        from typer._click.utils import make_default_short_help

        return make_default_short_help(self.help, limit).strip()


def _group_built_on_demand(info: TyperInfo, suggest_commands: bool, settings: dict[str, Any]) -> Any:
    """``get_group_from_info``'s group, whose commands are built when looked up (`backup list` need
    not build `backup schedule`): typer reads each command's signature and type hints, which adds up."""
    target = info.typer_instance
    shell = copy.copy(target)  # the group itself (callback, help, settings) without its commands
    shell.registered_commands, shell.registered_groups = [], []
    group = get_group_from_info(TyperInfo(shell, name=info.name), suggest_commands=suggest_commands, **settings)
    commands = {command.name or get_command_name(command.callback.__name__): command
                for command in target.registered_commands}
    groups = {sub.name: sub for sub in target.registered_groups}
    if not all(isinstance(name, str) for name in groups) or len(commands) + len(groups) != len({*commands, *groups}):
        return get_group_from_info(info, suggest_commands=suggest_commands, **settings)  # nameless or clashing

    def build(name: str) -> Any:
        if name in commands:
            return get_command_from_info(commands[name], **settings)
        return get_group_from_info(groups[name], suggest_commands=suggest_commands, **settings)

    group.commands = LazyCommands([*commands, *groups], build, {})
    return group
