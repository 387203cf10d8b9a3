"""Sub-commands of the ``heurmetrics`` CLI whose modules load only when the sub-command runs.

``heurmetrics --help`` lists them from a static name and help line; resolving one (running it,
or asking for its own ``--help``) imports its module. A module that needs an extra that is not
installed raises :class:`~heurmetrics.extras.MissingExtra` on import: the command then prints that
one line (naming the extra to install) and exits 2, without a traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from heurmetrics.cli.options import EXIT_ERROR, fail
from heurmetrics.extras import MissingExtra

_COMPLETION_OPTIONS = frozenset({"install_completion", "show_completion"})


@dataclass(frozen=True)
class LazyCommand:
    """A sub-command: its name, ``"module:attribute"`` (a Typer app or a command function), help line.

    Typer vendors its own click (``typer._click``): commands are typed loosely here on purpose.
    """

    name: str
    target: str
    help: str
    hidden: bool = False

    def load(self) -> Any:
        """Import the module and build the click command (raises what the import raises)."""
        module_name, attribute = self.target.split(":")
        obj = getattr(importlib.import_module(module_name), attribute)
        command: Any
        if isinstance(obj, typer.Typer):  # a group, as add_typer would mount it (even with one command)
            command = typer.main.get_group(obj)
        else:  # a plain command function
            single = typer.Typer()
            single.command(self.name)(obj)
            command = typer.main.get_command(single)
        # Mounted, not a program of its own: no --install-completion / --show-completion here.
        command.params = [p for p in command.params if p.name not in _COMPLETION_OPTIONS]
        command.name = self.name
        command.hidden = self.hidden
        return command

    def placeholder(self) -> TyperCommand:
        """What the group lists before the module is loaded: the name and the help line only."""
        return TyperCommand(self.name, help=self.help, short_help=self.help, hidden=self.hidden)


class LazyGroup(TyperGroup):
    """A Typer group that loads :class:`LazyCommand` modules on first use (see the module doc)."""

    lazy: tuple[LazyCommand, ...] = ()

    @classmethod
    def with_commands(cls, commands: Sequence[LazyCommand]) -> type[LazyGroup]:
        """This class bound to ``commands`` (Typer builds the group from the class)."""
        return type("HeurmetricsGroup", (cls,), {"lazy": tuple(commands)})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lazy = {c.name: c for c in self.lazy}
        for command in self.lazy:
            self.commands.setdefault(command.name, command.placeholder())

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else None
        pending = self._lazy.pop(name, None) if name is not None else None
        if pending is not None:
            try:
                self.commands[pending.name] = pending.load()
            except MissingExtra as exc:
                raise fail(str(exc), EXIT_ERROR) from None
        return super().resolve_command(ctx, args)
