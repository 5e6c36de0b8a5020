"""The README's quick start, run as written: the second-terminal block against an engine on its defaults.

The block is read from README.md, so a README edit that names an ID no sample carries, or a command
that fails, fails here.  ``.venv/bin/swf`` becomes this interpreter's ``-m engine.cli`` (the code under
test), ``127.0.0.1:2575`` the test engine's MLLP address, and the data commands get its --data-dir.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

from engine.replay import read_messages
from tests.conftest import ROOT

README = ROOT / "README.md"
DATA_COMMANDS = {"orders", "patients", "journal", "outbox", "mpps", "commitments", "forwards"}


def quickstart_commands() -> list[tuple[list[str], str]]:
    """(arguments after ``swf``, comment) of each line of the block after "Then, in a second terminal:"."""
    block = re.search(r"Then, in a second terminal:\n+```sh\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md has no second-terminal block in its quick start"
    commands = []
    for line in block.group(1).splitlines():
        command, _, comment = line.partition("#")
        words = shlex.split(command)
        assert words[0] == ".venv/bin/swf", line
        commands.append((words[1:], comment))
    return commands


def messages_in(path: str) -> int:
    return len(read_messages(ROOT / path))   # as replay splits the file (one sample has no MSH at all)


def check_output(arguments: list[str], output: str) -> None:
    """The output names what the command was asked for."""
    command, rest = arguments[0], arguments[1:]
    if command == "replay":
        assert re.search(rf"^sent {messages_in(rest[0])}: AA \d+, AE \d+, AR \d+, no answer 0$", output, re.M)
    elif command == "orders" and rest:
        assert f"accession {rest[0]}" in output and "reports to:" in output and "history:" in output
    elif command == "orders":
        lines = output.splitlines()
        assert lines[0].startswith("ACCESSION") and len(lines) > 1
    elif command == "patients":
        assert re.search(rf"^patient {rest[0]}\^", output, re.M)
    elif command == "journal":
        status = rest[rest.index("--status") + 1]
        rows = [line for line in output.splitlines() if line.startswith("#")]
        assert rows and all(f" {status} " in line for line in rows), output
    elif command == "rules":
        assert output.startswith("ok: ")
    else:
        raise AssertionError(f"the quick start runs 'swf {command}': add a check of its output here")


def test_readme_quickstart_runs_as_written(start_engine) -> None:
    engine = start_engine()
    commands = quickstart_commands()
    assert [arguments[0] for arguments, _ in commands[:1]] == ["replay"]  # data first, then the looks at it
    for asked, comment in commands:
        arguments = [engine.address if word == "127.0.0.1:2575" else word for word in asked]
        if asked[0] in DATA_COMMANDS:
            arguments += ["--data-dir", str(engine.data_dir)]
        done = subprocess.run([sys.executable, "-m", "engine.cli", *arguments], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        expected = 1 if "(exit 1)" in comment else 0
        shown = f"swf {' '.join(arguments)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        assert done.returncode == expected, shown
        check_output(asked, done.stdout)
