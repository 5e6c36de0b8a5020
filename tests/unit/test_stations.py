"""Station policies of routes/ (``stations:``): which entry a step gets, and the durations accepted."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.rules.ruleset import load_ruleset
from engine.rules.stations import parse_duration
from engine.yamlfile import YamlProblem


def test_the_first_matching_entry_is_the_policy_and_both_keys_must_match(tmp_path: Path) -> None:
    (tmp_path / "30-stations.yaml").write_text("""stations:
  - station_ae: CR1_AE
    modality: CR
    complete_on_images: {quiet: 10m}
  - modality: [CR, DX]
    start_on_first_image: true
  - station_ae: {not: null}
    drop_on_study_arrival: true
""")
    stations = load_ruleset(tmp_path).stations
    first = stations.policy_for("CR1_AE", "CR")
    assert first is not None and first.complete_quiet_seconds == 600 and not first.start_on_first_image
    assert first.where == f"{tmp_path / '30-stations.yaml'}:2"
    second = stations.policy_for("CR2_AE", "DX")
    assert second is not None and second.start_on_first_image and second.complete_quiet_seconds is None
    third = stations.policy_for("CT1_AE", "CT")
    assert third is not None and third.drop_on_study_arrival
    assert stations.policy_for("", "MR") is None


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("10m", 600), ("2h", 7200), ("45", 45), ("5 m", 300)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "f.yaml", 3, "quiet") == seconds


@pytest.mark.parametrize("value", ["0s", "10 minutes", "-5m", "1.5m", True, None, ["10m"]])
def test_bad_durations_name_the_line(value: object) -> None:
    with pytest.raises(YamlProblem, match=r"^f\.yaml:3: quiet must be a duration greater than zero"):
        parse_duration(value, "f.yaml", 3, "quiet")
