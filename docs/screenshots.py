"""Regenerate the console screenshots in docs/ (console-*.png) with the browser the tests use.

    .venv/bin/python docs/screenshots.py [--cluster]   (needs chromium and chromium-driver: .ci/system-deps;
                                                        the cluster step also PostgreSQL: package postgresql)

Starts an engine on free loopback ports with a fresh data folder, a stand-in RIS and an archive that
refuses everything (so the queues page has dead letters), replays the sample day over MLLP, reschedules
one order, creates and edits one in the console, resends a message to a destination and dry-runs a
candidate rules file, then saves each page at its full height.  Then (alone with ``--cluster``) the
Cluster page: two instances on a throwaway PostgreSQL server (.ci/start-postgres) sharing one data
folder, the sample day replayed half to each, saved as docs/console-cluster.png."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as seen  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests import browser  # noqa: E402
from tests.conftest import free_port, wait_for_port  # noqa: E402
from tests.integration.test_outbound import _fast_retry_routes  # noqa: E402
from tests.mllp_receiver import Receiver  # noqa: E402

PASSWORD = "screenshots-password"
DOCS = ROOT / "docs"


def swf(*args: str, stdin: str | None = None, check: bool = True) -> None:
    subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, input=stdin, check=check,
                   capture_output=True, text=True, timeout=120)


def save(driver: WebDriver, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height, 600), 4000))
    driver.execute_script("window.scrollTo(0, 0)")   # a form filled last leaves the page scrolled
    path = DOCS / f"console-{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    print(f"wrote {path.relative_to(ROOT)}")


def start_engine(work: Path, log_name: str, data: Path, routes: Path, ris: Receiver, archive: Receiver,
                 *database: str) -> tuple[subprocess.Popen, int, int]:
    """``swf serve`` on free ports (``database``: ``--database-url URL``, else SQLite in ``data``); the
    process, its MLLP and its HTTP port, once it listens."""
    mllp, http, dicom = free_port(), free_port(), free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(data), *database, "--mllp-port", str(mllp),
         "--http-port", str(http), "--dicom-port", str(dicom), "--routes", str(routes),
         "--allow-any-ae"], cwd=ROOT, stdout=open(work / log_name, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, "SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
    wait_for_port(http, engine, 60)
    return engine, mllp, http


def log_in(driver: WebDriver, base: str) -> None:
    driver.get(f"{base}/console/login")
    driver.find_element(By.ID, "name").send_keys("admin")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-button").click()
    WebDriverWait(driver, 15).until(seen.text_to_be_present_in_element((By.ID, "who"), "admin"))


def console_pages() -> None:
    work = Path(tempfile.mkdtemp(prefix="swf-screenshots-"))
    ris, archive = Receiver(), Receiver(answer=lambda message: "AE")
    data = work / "var"
    swf("users", "add", "admin", "--role", "admin", "--data-dir", str(data), "--password-stdin", stdin=PASSWORD)
    engine, mllp, http = start_engine(work, "engine.log", data, _fast_retry_routes(work), ris, archive)
    driver = None
    try:
        for sample in ("day-v231.hl7", "day-v251.hl7", "malformed.hl7"):
            # malformed.hl7 is answered AE/AR on purpose: replay says so with exit status 1
            swf("replay", str(ROOT / "samples" / sample), "--to", f"127.0.0.1:{mllp}", check=sample != "malformed.hl7")
        base = f"http://127.0.0.1:{http}"
        driver = browser.chrome()
        wait = WebDriverWait(driver, 15)
        driver.get(f"{base}/console/login")
        save(driver, "login")
        log_in(driver, base)
        driver.get(f"{base}/console/worklist?all=1")
        driver.find_elements(By.CSS_SELECTOR, "#orders a.order-link")[-1].click()
        driver.find_element(By.ID, "reschedule-start").send_keys("202612071430")
        driver.find_element(By.ID, "reschedule-button").click()
        wait.until(seen.presence_of_element_located((By.ID, "done")))
        driver.get(f"{base}/console/worklist?all=1")
        driver.find_element(By.ID, "create-summary").click()
        for name, value in (("patient_id", "PAT-DT-1"), ("issuer", "GENHOSP"), ("patient_name", "DOE^JANE"),
                            ("birth_date", "19800101"), ("sex", "F"), ("placer_order_number", "PLC-DT-1"),
                            ("procedure_code", "CTHEAD"), ("procedure_description", "CT head"),
                            ("coding_scheme", "99RAD"), ("modality", "CT"), ("start", "202612071600")):
            driver.find_element(By.ID, f"create-{name}").send_keys(value)
        save(driver, "worklist")
        driver.find_element(By.ID, "create-button").click()
        wait.until(seen.text_to_be_present_in_element((By.ID, "done"), "created"))
        driver.find_element(By.ID, "edit-start").send_keys("202612071630")
        driver.find_element(By.ID, "edit-button").click()
        wait.until(seen.text_to_be_present_in_element((By.ID, "done"), "edited"))
        save(driver, "order")
        driver.get(f"{base}/console/messages")
        save(driver, "messages")
        driver.find_elements(By.PARTIAL_LINK_TEXT, "#")[-1].click()   # the day's first message
        driver.find_element(By.ID, "resend-button").click()           # to the first destination: the archive
        wait.until(seen.text_to_be_present_in_element((By.ID, "done"), "resent"))
        save(driver, "message")
        driver.get(f"{base}/console/queues?status=all")
        save(driver, "queues")
        driver.get(f"{base}/console/rules")
        driver.find_element(By.ID, "dry-run-file").clear()
        driver.find_element(By.ID, "dry-run-file").send_keys("20-rooms.yaml")
        driver.execute_script("arguments[0].value = arguments[1];", driver.find_element(By.ID, "dry-run-text"),
                              (ROOT / "routes" / "20-rooms.yaml").read_text().replace("CT1_AE", "CT2_AE"))
        driver.find_element(By.ID, "dry-run-button").click()
        wait.until(seen.presence_of_element_located((By.ID, "dry-run-summary")))
        save(driver, "rules")
        driver.get(f"{base}/console/audit")
        save(driver, "audit")
        driver.get(f"{base}/console/dashboard")
        save(driver, "dashboard")
    finally:
        if driver is not None:
            driver.quit()
        engine.terminate()
        engine.wait(10)
        ris.close(), archive.close()


def cluster_page() -> None:
    """Two instances on one PostgreSQL database: the Cluster page of the second one."""
    work = Path(tempfile.mkdtemp(prefix="swf-screenshots-cluster-"))
    postgres = Path(tempfile.mkdtemp(prefix="swf-screenshots-pg-"))   # its own: initdb's user must enter it
    started = subprocess.run(["bash", str(ROOT / ".ci" / "start-postgres"), str(postgres)], capture_output=True,
                             text=True, timeout=180, check=True)
    url = started.stdout.strip().splitlines()[-1]
    ris, archive = Receiver(), Receiver()
    data = work / "shared"   # one storage_dir for both instances, as a site shares a volume
    swf("users", "add", "admin", "--role", "admin", "--database-url", url, "--data-dir", str(data),
        "--password-stdin", stdin=PASSWORD)
    routes = _fast_retry_routes(work)
    engines: list[subprocess.Popen] = []
    driver = None
    try:
        for n, sample in enumerate(("day-v231.hl7", "day-v251.hl7")):   # one after the other: the first migrates
            engine, mllp, http = start_engine(work, f"engine-{n}.log", data, routes, ris, archive,
                                               "--database-url", url)
            engines.append(engine)
            swf("replay", str(ROOT / "samples" / sample), "--to", f"127.0.0.1:{mllp}")
        archive.wait_for(1)
        driver = browser.chrome()
        base = f"http://127.0.0.1:{http}"
        log_in(driver, base)
        driver.get(f"{base}/console/cluster")
        save(driver, "cluster")
    finally:
        if driver is not None:
            driver.quit()
        for engine in engines:
            engine.terminate()
            engine.wait(10)
        ris.close(), archive.close()
        subprocess.run(["bash", str(ROOT / ".ci" / "start-postgres"), "--stop", str(postgres)], capture_output=True,
                       timeout=60)
        shutil.rmtree(postgres, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", action="store_true", help="only the Cluster page (two instances on PostgreSQL)")
    if not parser.parse_args().cluster:
        console_pages()
    cluster_page()


if __name__ == "__main__":
    main()
