"""Every CLI action has its API operation and vice versa (issue 13): the swf commands (engine/cli.py
COMMANDS) and the API's operations are both covered by the declared table engine/web/api/cli_twins.py,
each gap with its reason; a command or operation added without an entry fails here."""
from __future__ import annotations

from engine.cli import COMMANDS
from engine.web.api import operations
from engine.web.api.cli_twins import API_ONLY, CLI_ONLY, TWINS


def _command_names(commands, prefix: str = "") -> set[str]:
    names = set()
    for command in commands:
        name = f"{prefix}{command.name}"
        names |= _command_names(command.actions, f"{name} ") if command.actions else {name}
    return names


def test_every_command_and_every_operation_has_its_twin_or_a_reason() -> None:
    commands = _command_names(COMMANDS)
    operation_ids = {operation.operation_id for operation in operations()}
    assert commands == set(TWINS) | set(CLI_ONLY), (commands ^ (set(TWINS) | set(CLI_ONLY)))
    assert not set(TWINS) & set(CLI_ONLY)
    twinned = {operation for twins in TWINS.values() for operation in twins}
    assert operation_ids == twinned | set(API_ONLY), operation_ids ^ (twinned | set(API_ONLY))
    assert not twinned & set(API_ONLY)
    assert all(reason.strip() for reason in (*CLI_ONLY.values(), *API_ONLY.values()))
