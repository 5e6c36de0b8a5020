"""Commands declared as data, and the fixed-width tables they print (the ``swf`` command's machinery).

A command is declared once (``Command``: name, help texts, arguments in --help order, the function that
runs it) and argparse is built from the declarations; a listing declares its columns once (``Column``)
and ``print_table`` prints its header and rows, or the one line saying nothing matched.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Argument:
    """One positional argument or flag of a command, as ``add_argument`` takes it."""

    flags: tuple[str, ...]
    settings: dict[str, Any]


def arg(*flags: str, **settings: Any) -> Argument:
    return Argument(flags, settings)


@dataclass(frozen=True)
class Command:
    """One ``swf`` command: its help texts, its arguments in --help order, and what runs it (or, for a
    group such as ``swf rules``, its actions)."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int] | None = None
    description: str | None = None
    epilog: str | None = None
    arguments: tuple[Argument, ...] = ()
    actions: tuple["Command", ...] = ()


@dataclass(frozen=True)
class Column:
    """One column of a listing: its heading, the width it is padded to (None: the last column, never
    padded) and the cell text of a record (cut where the listing cuts it)."""

    heading: str
    width: int | None
    value: Callable[[Any], object]
    right: bool = False


def print_table(columns: Sequence[Column], records: Sequence[Any], nothing: str, separator: str = "") -> None:
    """The header and a line per record, or the one line saying that nothing matched (never empty output,
    which a user cannot tell from a wrong --data-dir)."""
    if not records:
        print(nothing)
        return

    def line(cells: list[object]) -> str:
        return separator.join(f"{cell}" if column.width is None else
                              f"{cell!s:{'>' if column.right else '<'}{column.width}}"
                              for column, cell in zip(columns, cells))
    print(line([column.heading for column in columns]))
    for record in records:
        print(line([column.value(record) for column in columns]))


def add_commands(parser: argparse.ArgumentParser, commands: Sequence[Command], dest: str, metavar: str) -> None:
    """One sub-parser per declared command (and, for a group, per action below it)."""
    choices = parser.add_subparsers(dest=dest, metavar=metavar, required=True)
    for command in commands:
        sub = choices.add_parser(command.name, help=command.help, description=command.description,
                                 epilog=command.epilog)
        for argument in command.arguments:
            sub.add_argument(*argument.flags, **argument.settings)
        if command.run is not None:
            sub.set_defaults(run=command.run)
        if command.actions:
            add_commands(sub, command.actions, f"{command.name}_command", "ACTION")
