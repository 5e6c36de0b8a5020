"""The API of tests/api_role_server.py (admin, CSRF passed) with a password hash that takes as long as the
test wants: it writes START_FILE when it begins and waits (at most 8 s) for GO_FILE before it goes on.
Run as a process:

    python -m tests.slow_hash_server PORT DATABASE_URL START_FILE GO_FILE
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from engine.domain import credentials
from tests.api_role_server import main

_real_scrypt = credentials._scrypt


def held_scrypt(started: Path, go: Path) -> Any:
    def scrypt(*args: Any, **kwargs: Any) -> bytes:
        started.touch()
        deadline = time.monotonic() + 8
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return _real_scrypt(*args, **kwargs)
    return scrypt


if __name__ == "__main__":
    port, url, start_file, go_file = sys.argv[1:]
    credentials._scrypt = held_scrypt(Path(start_file), Path(go_file))
    main(port, url, "admin", "1")
