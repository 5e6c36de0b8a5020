"""The README's "Users and access" commands, run as written against a running engine: the first
``swf users add`` on a terminal (a pseudo-terminal answering its two password prompts), the rest in one
bash script with curl.  ``.venv/bin/swf`` becomes this interpreter's ``-m engine.cli`` on the test
engine's data dir, ``http://127.0.0.1:8080`` the test engine's HTTP address."""
from __future__ import annotations

import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def readme_blocks() -> list[str]:
    section = re.search(r"^## Users and access\n(.*?)^## ", (ROOT / "README.md").read_text(), re.S | re.M)
    assert section, "README.md has no 'Users and access' section"
    blocks = re.findall(r"```sh\n(.*?)```", section.group(1), re.S)
    assert len(blocks) == 2, blocks
    return blocks


def on_terminal(argv: list[str], answers: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run ``argv`` on a new pseudo-terminal (no other controlling terminal), typing each answer when its
    prompt shows; its exit status and everything it wrote."""
    master, slave = pty.openpty()
    process = subprocess.Popen(argv, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output, pending = "", dict(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096).decode(errors="replace")
                except OSError:   # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                for prompt in [prompt for prompt in pending if prompt in output]:
                    os.write(master, pending.pop(prompt).encode() + b"\n")
        return process.wait(timeout=max(1.0, deadline - time.monotonic())), output
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()


def test_readme_users_and_access_runs_as_written(start_engine, tmp_path: Path) -> None:
    engine = start_engine()   # on loopback, no users yet: every request is the local admin
    wrapper = tmp_path / ".venv" / "bin" / "swf"
    wrapper.parent.mkdir(parents=True)
    data_dir = shlex.quote(str(engine.data_dir))
    wrapper.write_text(f'#!/bin/sh\ncd {shlex.quote(str(ROOT))} || exit 2\n'
                       f'exec {shlex.quote(sys.executable)} -m engine.cli "$@" --data-dir {data_dir}\n')
    wrapper.chmod(0o755)
    commands, requests = readme_blocks()
    first, rest = commands.split("\n", 1)
    words = shlex.split(first.partition("#")[0])
    assert words[:3] == [".venv/bin/swf", "users", "add"], first
    status, output = on_terminal([str(wrapper), *words[1:]], {"password for ada: ": "ada-passphrase-1",
                                                              "the same again: ": "ada-passphrase-1"})
    assert status == 0 and "user ada added with role admin" in output, output
    script = "set -eu\n" + rest + "sleep 2.5\n" + requests.replace("http://127.0.0.1:8080",
                                                                  f"http://127.0.0.1:{engine.http_port}")
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    listing = r"^NAME +ROLE +TOKENS +SESSIONS +CREATED\nada +admin +0 +0 .*\notto +operator +0 +0 "
    assert re.search(listing, out, re.M), out
    assert '{"name": "otto", "role": "operator", "via": "token"}' in out
    assert re.search(r'\{"name": "otto", "role": "operator", "csrf_token": "[\w-]{43}", "expires_at"', out), out
    assert '{"error": "needs role admin", "needed": "admin", "role": "operator"}' in out
    assert "user otto removed" in out
    listed = subprocess.run([str(wrapper), "users", "list"], capture_output=True, text=True, timeout=60)
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["ada"]
