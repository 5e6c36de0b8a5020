"""README.md's "Running two instances" shows the HAProxy configuration the cluster tests write, and an
engine configuration the engine reads."""
from __future__ import annotations

import re

from engine.config import load_config
from tests.cluster.conftest import Backend, haproxy_config
from tests.conftest import ROOT


def section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Running two instances\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_shows_the_tests_haproxy_configuration() -> None:
    [shown] = re.findall(r"\n```\n(global\n.*?)```", section(), re.S)
    backends = [Backend("swf-a", "10.1.0.11", 2575, 11112, 8080), Backend("swf-b", "10.1.0.12", 2575, 11112, 8080)]
    assert shown == haproxy_config(backends, 2575, 11112, bind="0.0.0.0")


def test_the_readme_instance_configuration_is_read(tmp_path) -> None:
    [shown] = re.findall(r"```yaml\n(.*?)```", section(), re.S)
    path = tmp_path / "engine.yaml"
    path.write_text(shown)
    config = load_config(path)
    assert config.cluster.instance == "swf-a" and config.database_url.startswith("postgresql://")
    assert str(config.storage_dir) == "/srv/swf/dicom"
