"""SQLite serves one engine (issue 15): a second ``swf serve`` on the same database file is refused at start
with a clear message, and after the first is killed (SIGKILL: no clean stop) a new one starts at once."""
from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import free_port, run_swf


def serve(data_dir: Path) -> list[str]:
    return ["serve", "--data-dir", str(data_dir), "--mllp-port", str(free_port()), "--dicom-port",
            str(free_port()), "--http-port", str(free_port())]


def test_a_second_engine_on_one_sqlite_file_is_refused_and_a_crash_leaves_no_stale_lock(start_engine) -> None:
    first = start_engine()
    second = run_swf(*serve(first.data_dir), timeout=30)
    assert second.returncode == 2, second.stderr
    database = first.data_dir / "swf.sqlite"
    assert (f"cannot start: the SQLite database {database} is in use by another swf serve "
            f"(pid {first.process.pid}); SQLite serves one engine") in second.stderr, second.stderr
    assert first.process.poll() is None                        # the first one serves on
    assert run_swf("cluster", "--data-dir", str(first.data_dir)).stdout.splitlines()[1].startswith(
        f"{_host()}:{first.mllp_port} ")                       # the refused one did not register

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    again = start_engine(data_dir=first.data_dir)              # the kernel dropped the lock with the process
    assert again.process.poll() is None
    assert "is in use" not in again.log()


def _host() -> str:
    import socket

    return socket.gethostname()
