"""The console's Cluster page with two instances on one PostgreSQL (issue 15), in a real browser (headless
chromium through selenium), logged in on instance B: it lists both instances with their heartbeat and who
holds which lease (the leader, outbox:archive); once instance A is killed (SIGKILL) the page shows it stale
before its leases run out, then dead, its leases held by B."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.cluster.conftest import Instance, mllp_exchange
from tests.cluster.test_failover import database_rows
from tests.conftest import ROOT
from tests.integration.test_console_browser import PASSWORD, chrome, log_in  # noqa: F401 - chrome: a fixture
from tests.integration.test_mllp import msa, order
from tests.mllp_receiver import Receiver

LEASE_SECONDS = 6


def instance_name(instance: Instance) -> str:
    return f"{socket.gethostname()}:{instance.mllp_port}"


def cluster_page(driver: WebDriver, base: str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """The page as read: instance -> (last heartbeat, state), and lease -> holder ("-": nobody)."""
    driver.get(f"{base}/console/cluster")
    def rows(table: str) -> list:
        return [row for row in driver.find_elements(By.CSS_SELECTOR, f"#{table} tr")
                if row.find_elements(By.TAG_NAME, "td")]
    instances = {row.find_element(By.CLASS_NAME, "instance-name").text:
                 (row.find_element(By.CLASS_NAME, "instance-heartbeat").text,
                  row.find_element(By.CLASS_NAME, "instance-state").text) for row in rows("instances")}
    leases = {row.find_element(By.CLASS_NAME, "lease-name").text: row.find_element(By.CLASS_NAME, "lease-holder").text
              for row in rows("leases")}
    return instances, leases


def test_cluster_page_lists_both_instances_and_shows_a_killed_one_stale(make_instances, database_url, chrome,
                                                                          tmp_path) -> None:
    archive = Receiver()
    config = tmp_path / "engine.yaml"
    config.write_text(f"cluster:\n  lease_seconds: {LEASE_SECONDS}\n  heartbeat_seconds: 1\n")
    try:
        a, b = make_instances(2, extra=("--config", str(config)), env={"SWF_ARCHIVE_ADDRESS": archive.address})
        added = subprocess.run([sys.executable, "-m", "engine.cli", "users", "add", "vera", "--role", "viewer",
                                "--database-url", database_url, "--data-dir", str(a.data_dir), "--password-stdin"],
                               cwd=ROOT, input=PASSWORD + "\n", capture_output=True, text=True, timeout=30)
        assert added.returncode == 0, added.stderr
        assert msa(mllp_exchange(a.mllp_port, order("CLUSTER1")))[1] == "AA"   # the archive's lease gets taken
        archive.wait_for(1)
        base = f"http://127.0.0.1:{b.http_port}"
        log_in(chrome, base, "vera")

        instances, leases = cluster_page(chrome, base)
        assert set(instances) == {instance_name(a), instance_name(b)}
        assert {state for _, state in instances.values()} == {"alive"}, instances
        assert all(heartbeat.endswith(" s ago") for heartbeat, _ in instances.values())
        held = dict(database_rows(database_url, "SELECT name, holder FROM cluster_leases WHERE expires_at > %s",
                                  (time.time(),)))
        assert leases["leader"] == held["leader"] == instance_name(a)   # the first one started leads
        assert leases["outbox:archive"] == held["outbox:archive"] in (instance_name(a), instance_name(b))

        a.kill()
        killed = time.monotonic()
        seen: dict[str, float] = {}

        def shows(state: str, leader: str) -> bool:
            instances, leases = cluster_page(chrome, base)
            seen.setdefault(instances[instance_name(a)][1], time.monotonic() - killed)
            return (instances[instance_name(a)][1] == state and instances[instance_name(b)][1] == "alive"
                    and leases["leader"] == leader)

        WebDriverWait(chrome, LEASE_SECONDS, poll_frequency=0.3).until(lambda _: shows("stale", instance_name(a)))
        assert seen["stale"] < LEASE_SECONDS, seen   # while its leases are still its own
        WebDriverWait(chrome, LEASE_SECONDS + 5, poll_frequency=0.3).until(lambda _: shows("dead", instance_name(b)))
        print(f"\ncluster page: {instance_name(a)} shown stale {seen['stale']:.1f} s and dead {seen['dead']:.1f} s"
              f" after its SIGKILL (lease {LEASE_SECONDS} s, heartbeat 1 s)")
    finally:
        archive.close()
