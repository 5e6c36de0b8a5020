"""Configuration precedence (defaults < file < flags), config problems with file:line, swf --help."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from engine.cli import build_parser, resolve_config
from engine.config import load_config
from engine.yamlfile import YamlProblem
from tests.conftest import run_swf


def test_defaults_listen_on_loopback_only() -> None:
    config = load_config(None)
    assert (config.mllp.host, config.mllp.port) == ("127.0.0.1", 2575)
    assert (config.dicom.host, config.dicom.port, config.dicom.ae_title) == ("127.0.0.1", 11112, "SWF_ENGINE")
    assert config.database == "sqlite:///var/swf.sqlite"


def test_file_overrides_defaults_and_flags_override_the_file(tmp_path: Path) -> None:
    file = tmp_path / "engine.yaml"
    file.write_text("data_dir: /srv/swf\nmllp: {port: 3000, idle_timeout: 20}\ndicom: {ae_title: FROMFILE}\n")
    from_file = resolve_config(build_parser().parse_args(["serve", "--config", str(file)]))
    assert (from_file.mllp.port, from_file.mllp.idle_timeout, from_file.dicom.ae_title) == (3000, 20.0, "FROMFILE")
    assert from_file.data_dir == "/srv/swf" and from_file.database == "sqlite:////srv/swf/swf.sqlite"
    flags = resolve_config(build_parser().parse_args(
        ["serve", "--config", str(file), "--mllp-port", "4000", "--ae-title", "FLAG", "--data-dir", "/tmp/x",
         "--host", "0.0.0.0"]))
    assert (flags.mllp.port, flags.dicom.ae_title, flags.data_dir) == (4000, "FLAG", "/tmp/x")
    assert flags.mllp.idle_timeout == 20.0  # untouched by flags: still the file's value
    assert flags.mllp.host == flags.dicom.host == flags.http.host == "0.0.0.0"


@pytest.mark.parametrize("text,line,reason", [
    ("mllp:\n  port: twenty\n", 2, "mllp.port must be int"),
    ("log_level: INFO\nmlp: {port: 1}\n", 2, "unknown setting 'mlp'"),
    ("mllp: [1, 2]\n", 1, "mllp must be a mapping"),
    ("mllp: {port: 1\n", 2, "YAML syntax"),
])
def test_config_problems_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(YamlProblem) as problem:
        load_config(str(file))
    assert problem.value.line == line and reason in problem.value.reason
    assert str(problem.value).startswith(f"{file}:{line}: ")


def test_serve_help_documents_every_flag() -> None:
    result = run_swf("serve", "--help")
    assert result.returncode == 0
    for flag in ("--config", "--data-dir", "--mllp-port", "--dicom-port", "--http-port", "--ae-title", "--routes",
                 "--log-level", "--host", "--allow-any-ae", "--max-message-bytes", "--idle-timeout"):
        assert flag in result.stdout


def test_serve_refuses_a_broken_config_with_its_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("mllp:\n  port: nope\n")
    result = run_swf("serve", "--config", str(file))
    assert result.returncode == 2 and f"{file}:2:" in result.stderr


def test_data_commands_need_an_existing_database(tmp_path: Path) -> None:
    result = run_swf("orders", "--data-dir", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no database" in result.stderr


def test_health_page_reports_journal_counts(start_engine) -> None:
    engine = start_engine()
    with urllib.request.urlopen(f"http://127.0.0.1:{engine.http_port}/health", timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "ok" and body["rules"] >= 1 and body["journal"] == {}
    assert "HTTP listener on 127.0.0.1" in engine.log() and "DICOM listener on 127.0.0.1" in engine.log()
