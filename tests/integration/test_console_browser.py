"""The web console in a real browser (headless chromium through selenium) against a real engine process:
orders replayed over MLLP, a stand-in RIS and a refusing archive on 127.0.0.1 (SWF.md 4.3/4.4)."""
from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests import browser
from tests.conftest import ROOT, require_tool, run_swf
from tests.integration.test_outbound import _fast_retry_routes, orders
from tests.mllp_receiver import Receiver

PASSWORD = "console-test-password"
WAIT = 15


@pytest.fixture
def chrome() -> Iterator[WebDriver]:
    require_tool(browser.installed(), "chromium and chromium-driver (Debian packages)")
    driver = browser.chrome()
    yield driver
    driver.quit()


def add_user(data_dir: Path, name: str, role: str) -> None:
    added = subprocess.run([sys.executable, "-m", "engine.cli", "users", "add", name, "--role", role,
                            "--data-dir", str(data_dir), "--password-stdin"], cwd=ROOT, input=PASSWORD + "\n",
                           capture_output=True, text=True, timeout=30)
    assert added.returncode == 0, added.stderr


def log_in(driver: WebDriver, base: str, name: str) -> None:
    def sent_to_login(d: WebDriver) -> bool:   # once the engine has re-read its users (auth_refresh_seconds)
        d.get(f"{base}/console/")
        return "/console/login" in d.current_url
    WebDriverWait(driver, WAIT, poll_frequency=0.3).until(sent_to_login)
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-button").click()
    WebDriverWait(driver, WAIT).until(seen.text_to_be_present_in_element((By.ID, "who"), name))


def dashboard_shows(driver: WebDriver, base: str, element: str, text: str) -> None:
    """Reload the dashboard until ``element`` reads ``text`` (the engine delivers in the background)."""
    def reloaded(d: WebDriver) -> bool:
        d.get(f"{base}/console/dashboard")
        return d.find_element(By.ID, element).text == text
    WebDriverWait(driver, WAIT, poll_frequency=0.3).until(reloaded)


def test_operator_reschedules_a_replayed_order_and_resends_a_dead_letter(start_engine, chrome, tmp_path) -> None:
    refuse = {"on": True}
    ris, archive = Receiver(), Receiver(answer=lambda message: "AE" if refuse["on"] else "AA")
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address},
                          routes=_fast_retry_routes(tmp_path))
    base = f"http://127.0.0.1:{engine.http_port}"
    add_user(engine.data_dir, "olivia", "operator")
    assert run_swf("replay", str(orders(tmp_path, 1)), "--to", engine.address).returncode == 0

    log_in(chrome, base, "olivia")
    dashboard_shows(chrome, base, "dead-total", "1")   # the archive refused the new order 3 times: parked
    assert chrome.find_element(By.ID, "listener-mllp").text == "up"
    assert chrome.find_element(By.CSS_SELECTOR, "#ack-codes .ack-AA").text == "1"
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#chart rect")) == 60
    refuse["on"] = False

    chrome.find_element(By.ID, "nav-worklist").click()
    chrome.find_element(By.ID, "filter-accession").send_keys("ACC0")
    chrome.find_element(By.ID, "filter-all").click()
    chrome.find_element(By.ID, "search").click()
    WebDriverWait(chrome, WAIT).until(seen.element_to_be_clickable((By.LINK_TEXT, "ACC0"))).click()   # the results page
    WebDriverWait(chrome, WAIT).until(seen.presence_of_element_located((By.ID, "explain")))
    assert "PatientID" in chrome.find_element(By.ID, "explain").text
    chrome.find_element(By.ID, "reschedule-start").send_keys("202503051430")
    chrome.find_element(By.ID, "reschedule-station").send_keys("CT2_AE")
    chrome.find_element(By.ID, "reschedule-button").click()
    WebDriverWait(chrome, WAIT).until(seen.text_to_be_present_in_element((By.ID, "done"), "ACC0 rescheduled"))
    assert chrome.find_element(By.CSS_SELECTOR, "#steps .step-station").text == "CT2_AE"
    [status] = ris.wait_for(1)
    assert (status.get("ORC-1"), status.get("ORC-5")) == ("XO", "SC")   # the stand-in RIS got the XO
    [change] = archive.wait_for(1)
    assert (change.get("ORC-1"), change.get("TQ1-7"), change.get("IPC-9")) == ("XO", "202503051430", "CT2_AE")

    chrome.find_element(By.ID, "nav-queues").click()
    [resend] = chrome.find_elements(By.CSS_SELECTOR, "#outbox button[id^=resend-outbox-]")
    csrf_token = chrome.find_element(By.NAME, "csrf_token").get_attribute("value")
    session = chrome.get_cookie("swf_session")["value"]
    action = resend.find_element(By.XPATH, "..").get_attribute("action")   # the form's absolute URL
    forged = urllib.request.Request(action, data=b"", headers={"Cookie": f"swf_session={session}"})
    with pytest.raises(urllib.error.HTTPError) as refused:   # the session alone, no CSRF token: nothing written
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 403 and csrf_token
    resend.click()
    WebDriverWait(chrome, WAIT).until(seen.text_to_be_present_in_element((By.ID, "done"), "resend done"))
    assert archive.wait_for(2)[1].get("ORC-1") == "NW"   # the parked order went out again, accepted now
    dashboard_shows(chrome, base, "dead-total", "0")

    chrome.find_element(By.ID, "nav-audit").click()
    actions = [cell.text for cell in chrome.find_elements(By.CSS_SELECTOR, "#audit .audit-action")]
    assert actions[:2] == ["outbox.resend", "order.reschedule"] and "session.login" in actions

    chrome.find_element(By.ID, "nav-cluster").click()   # this engine, and the leases it delivered under
    instance = f"{socket.gethostname()}:{engine.address.rpartition(':')[2]}"
    assert [cell.text for cell in chrome.find_elements(By.CSS_SELECTOR, "#instances .instance-name")] == [instance]
    holders = {row.find_element(By.CLASS_NAME, "lease-name").text: row.find_element(By.CLASS_NAME, "lease-holder").text
               for row in chrome.find_elements(By.CSS_SELECTOR, "#leases tr") if row.find_elements(By.TAG_NAME, "td")}
    assert holders["outbox:archive"] == instance and holders["leader"] == instance
    ris.close(), archive.close()


def test_a_viewer_sees_but_may_not_act(start_engine, chrome, tmp_path) -> None:
    engine = start_engine()
    base = f"http://127.0.0.1:{engine.http_port}"
    add_user(engine.data_dir, "victor", "viewer")
    assert run_swf("replay", str(orders(tmp_path, 1)), "--to", engine.address).returncode == 0
    log_in(chrome, base, "victor")
    chrome.get(f"{base}/")   # the console is the site's root too
    assert chrome.find_element(By.ID, "who").text == "victor (viewer)" and chrome.find_element(By.ID, "chart")
    chrome.get(f"{base}/console/nothing")
    assert chrome.find_element(By.TAG_NAME, "h1").text == "404"
    chrome.get(f"{base}/console/orders/ACC0")
    WebDriverWait(chrome, WAIT).until(seen.presence_of_element_located((By.ID, "steps")))
    assert not chrome.find_elements(By.ID, "reschedule") and not chrome.find_elements(By.ID, "cancel")
    assert not chrome.find_elements(By.ID, "edit")
    chrome.execute_script(   # the form a viewer is not offered, posted anyway with the session's CSRF token
        "const form = document.createElement('form'); form.method = 'post';"
        "form.action = '/console/orders/ACC0/cancel'; document.body.appendChild(form);"
        "const token = document.createElement('input'); token.name = 'csrf_token'; token.value = arguments[0];"
        "form.appendChild(token); form.submit();", "x")
    WebDriverWait(chrome, WAIT).until(seen.text_to_be_present_in_element((By.ID, "problem"), "operator role"))
    chrome.get(f"{base}/console/orders/ACC0")
    assert chrome.find_element(By.CSS_SELECTOR, "#steps .step-status").text == "SCHEDULED"
    chrome.get(f"{base}/console/messages")
    chrome.find_element(By.PARTIAL_LINK_TEXT, "#").click()
    WebDriverWait(chrome, WAIT).until(seen.presence_of_element_located((By.ID, "fields")))
    assert "MSH-9" in chrome.find_element(By.ID, "fields").text and "MSA" in chrome.find_element(By.ID, "ack").text
    assert not chrome.find_elements(By.ID, "resend")
    chrome.get(f"{base}/console/worklist")
    assert not chrome.find_elements(By.ID, "create-order")


def test_an_admin_dry_runs_a_candidate_rules_file_against_the_replayed_traffic(start_engine, chrome, tmp_path) -> None:
    engine = start_engine()
    base = f"http://127.0.0.1:{engine.http_port}"
    add_user(engine.data_dir, "ada", "admin")
    assert run_swf("replay", str(orders(tmp_path, 2)), "--to", engine.address).returncode == 0
    log_in(chrome, base, "ada")
    chrome.find_element(By.ID, "nav-rules").click()
    assert chrome.find_element(By.ID, "check").text.startswith("ok:")
    assert "20-rooms.yaml:" in chrome.find_element(By.ID, "rules").text   # each rule with its file:line
    file_name = chrome.find_element(By.ID, "dry-run-file")
    file_name.clear()
    file_name.send_keys("20-rooms.yaml")
    text = chrome.find_element(By.ID, "dry-run-text")
    chrome.execute_script("arguments[0].value = arguments[1];", text, (ROOT / "routes" / "20-rooms.yaml").read_text()
                          .replace("station_ae: CT1_AE", "station_ae: CT9_AE"))
    chrome.find_element(By.ID, "dry-run-button").click()
    WebDriverWait(chrome, WAIT).until(seen.presence_of_element_located((By.ID, "dry-run-summary")))
    assert chrome.find_element(By.ID, "dry-run-summary").text.startswith("2 message(s) read, 2 changed")
    rows = chrome.find_elements(By.CSS_SELECTOR, "#diff tr")[1:]
    assert len(rows) == 2 and all("CT1_AE" in row.text and "CT9_AE" in row.text for row in rows)
    text = chrome.find_element(By.ID, "dry-run-text")
    chrome.execute_script("arguments[0].value = arguments[1];", text, "rules:\n  - name: broken\n    when: [\n")
    chrome.find_element(By.ID, "dry-run-button").click()
    WebDriverWait(chrome, WAIT).until(seen.presence_of_element_located((By.CSS_SELECTOR, "table#candidate-check")))
    assert "20-rooms.yaml" in chrome.find_element(By.ID, "candidate-check").text
    assert not chrome.find_elements(By.ID, "diff")


def fill(driver: WebDriver, prefix: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        field = driver.find_element(By.ID, f"{prefix}-{name}")
        field.clear()
        field.send_keys(value)


def test_operator_creates_edits_an_order_and_resends_its_message_to_the_ris(start_engine, chrome, tmp_path) -> None:
    """The create form takes the HL7 path (its NW/SC reaches the procedure destination, a stand-in archive:
    the shipped ris destination sends status only), the edit form sends an XO, and the order's message is
    resent to the stand-in RIS from its message page."""
    ris, archive = Receiver(), Receiver()
    engine = start_engine(env={"SWF_RIS_ADDRESS": ris.address, "SWF_ARCHIVE_ADDRESS": archive.address})
    # the shipped rules: console orders (MSH-3 SWF_API) report to ris and archive
    base = f"http://127.0.0.1:{engine.http_port}"
    today = date.today().strftime("%Y%m%d")
    add_user(engine.data_dir, "olivia", "operator")
    log_in(chrome, base, "olivia")
    chrome.find_element(By.ID, "nav-worklist").click()
    order = {"patient_id": "PAT-WEB-1", "issuer": "GENHOSP", "patient_name": "DOE^JANE", "birth_date": "19800101",
             "sex": "F", "placer_order_number": "PLC-WEB-1", "accession_number": "ACC-WEB-1",
             "procedure_code": "CTHEAD", "procedure_description": "CT head", "coding_scheme": "99RAD",
             "modality": "CT", "start": f"{today}1000"}
    fill(chrome, "create", {**order, "birth_date": "19801301"})
    chrome.find_element(By.ID, "create-button").click()   # refused: the page names the field
    WebDriverWait(chrome, WAIT).until(seen.text_to_be_present_in_element((By.ID, "problem"), "birth date"))
    assert "body.patient.birth_date" in chrome.find_element(By.ID, "problem").text
    chrome.back()
    chrome.refresh()   # a new form key
    fill(chrome, "create", order)
    chrome.find_element(By.ID, "create-button").click()
    WebDriverWait(chrome, WAIT).until(seen.text_to_be_present_in_element((By.ID, "done"), "order ACC-WEB-1 created"))
    assert chrome.current_url.startswith(f"{base}/console/orders/ACC-WEB-1")
    assert chrome.find_element(By.CSS_SELECTOR, "#steps .step-status").text == "SCHEDULED"
    [scheduled] = archive.wait_for(1)
    assert (scheduled.get("ORC-1"), scheduled.get("ORC-5"), scheduled.message_code) == ("NW", "SC", "OMI^O23")
    chrome.find_element(By.ID, "nav-worklist").click()   # today's worklist
    assert [link.text for link in chrome.find_elements(By.CSS_SELECTOR, "#orders a.order-link")] == ["ACC-WEB-1"]

    WebDriverWait(chrome, WAIT).until(seen.element_to_be_clickable((By.LINK_TEXT, "ACC-WEB-1"))).click()
    fill(chrome, "edit", {"start": f"{today}1130"})
    chrome.find_element(By.ID, "edit-button").click()
    WebDriverWait(chrome, WAIT).until(seen.text_to_be_present_in_element((By.ID, "done"), "order ACC-WEB-1 edited"))
    assert chrome.find_element(By.CSS_SELECTOR, "#steps .step-start").text.startswith(f"{today}113")
    change = archive.wait_for(2)[1]
    assert (change.get("ORC-1"), change.get("TQ1-7")[:12]) == ("XO", f"{today}1130")

    chrome.find_elements(By.CSS_SELECTOR, "#history a")[0].click()   # the NW the create form entered
    WebDriverWait(chrome, WAIT).until(seen.presence_of_element_located((By.ID, "changes")))
    assert "ACC-WEB-1" in chrome.find_element(By.CSS_SELECTOR, "#changes .change-order").text
    assert "order.scheduled" in chrome.find_element(By.ID, "caused").text
    assert "AccessionNumber" in chrome.find_element(By.ID, "fields").text   # named by the profile
    Select(chrome.find_element(By.ID, "resend-destination")).select_by_value("ris")
    chrome.find_element(By.ID, "resend-button").click()
    WebDriverWait(chrome, WAIT).until(seen.text_to_be_present_in_element((By.ID, "done"), "resent to ris"))
    [copy] = ris.wait_for(1)
    assert (copy.get("ORC-1"), copy.get("OBR-18"), copy.get("MSH-5")) == ("NW", "ACC-WEB-1", "RIS")
    assert copy.control_id in chrome.find_element(By.ID, "done").text

    def delivered(d: WebDriver) -> bool:   # the copy went through the outbox: the queues page lists it
        d.get(f"{base}/console/queues?status=delivered")
        return "journal.resend" in d.find_element(By.ID, "outbox").text
    WebDriverWait(chrome, WAIT, poll_frequency=0.3).until(delivered)
    chrome.find_element(By.ID, "nav-audit").click()
    actions = [cell.text for cell in chrome.find_elements(By.CSS_SELECTOR, "#audit .audit-action")]
    assert actions[:3] == ["journal.resend", "order.edit", "order.create"]
    ris.close(), archive.close()
