"""Station policies (``stations:`` in routes/*.yaml): how images move a step on rooms that send no MPPS.

Many CR/DX rooms and older scanners never send MPPS.  An entry names the steps it is for by their
Scheduled Station AE Title and/or modality (the same value forms as a rule's ``when``: text, wildcard,
``re:``, list, ``{not: ...}``) and says what their images do:

* ``start_on_first_image: true`` - the first instance of the step's study starts it (as MPPS IN PROGRESS);
* ``complete_on_images: {quiet: 10m}`` - once no new instance came for ``quiet``, it is completed (as MPPS
  COMPLETED);
* ``drop_on_study_arrival: true`` - once its study is stable (``studies.quiet_seconds``), it leaves the
  worklist (Orthanc's DeleteWorklistsOnStableStudy).

The first entry (files by name, entries in file order) that matches a step is its policy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..yamlfile import LineDict, LineList, YamlProblem, line_of

ENTRY_KEYS = {"station_ae", "modality", "complete_on_images", "start_on_first_image", "drop_on_study_arrival"}
MATCH_KEYS = ("station_ae", "modality")
FLAG_KEYS = ("start_on_first_image", "drop_on_study_arrival")
COMPLETE_KEYS = {"quiet"}
_DURATION = re.compile(r"^(\d+)\s*(s|m|h)?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, None: 1}


@dataclass(frozen=True)
class StationPolicy:
    """One ``stations:`` entry: which steps (its matchers) and what their images do."""

    file: str
    line: int
    matchers: tuple[tuple[str, Callable[[str], bool]], ...]
    complete_quiet_seconds: float | None = None   # None: images do not complete the step
    complete_quiet_text: str = ""                 # the quiet time as written ("10m"), for history
    start_on_first_image: bool = False
    drop_on_study_arrival: bool = False

    def matches(self, station_ae: str, modality: str) -> bool:
        values = {"station_ae": station_ae.strip(), "modality": modality.strip()}
        return all(matcher(values[key]) for key, matcher in self.matchers)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class StationPolicies:
    """The station policies in force, in evaluation order."""

    entries: tuple[StationPolicy, ...] = field(default_factory=tuple)

    def policy_for(self, station_ae: str, modality: str) -> StationPolicy | None:
        """The first entry matching a step of this station and modality, or None."""
        return next((entry for entry in self.entries if entry.matches(station_ae, modality)), None)


NO_STATIONS = StationPolicies()


def parse_duration(value: Any, file: str, line: int, what: str) -> float:
    """``30s``, ``10m``, ``2h`` or a number of seconds; more than zero."""
    match = _DURATION.match(str(value).strip()) if isinstance(value, (str, int)) and not isinstance(value, bool) \
        else None
    if match is None or int(match.group(1)) == 0:
        raise YamlProblem(file, line, f"{what} must be a duration greater than zero such as 30s, 10m or 2h,"
                                      f" not {value!r}")
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _parse_entry(raw: Any, file: str, line: int, compile_matcher: Callable[[Any, str, int], Callable[[str], bool]],
                 problems: list[YamlProblem]) -> StationPolicy | None:
    if not isinstance(raw, LineDict):
        problems.append(YamlProblem(file, line, "a stations entry must be a mapping with station_ae and/or modality"
                                                " and what images do"))
        return None
    found = len(problems)
    for key in raw:
        if key not in ENTRY_KEYS:
            problems.append(YamlProblem(file, line_of(raw, key), f"unknown stations key {key!r}; allowed: "
                                                                 f"{', '.join(sorted(ENTRY_KEYS))}"))
    matchers = []
    for key in MATCH_KEYS:
        if key in raw:
            try:
                matchers.append((key, compile_matcher(raw[key], file, line_of(raw, key))))
            except YamlProblem as problem:
                problems.append(problem)
    if not any(key in raw for key in MATCH_KEYS):
        problems.append(YamlProblem(file, raw.line, "a stations entry needs station_ae and/or modality"))
    flags = {}
    for key in FLAG_KEYS:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            problems.append(YamlProblem(file, line_of(raw, key), f"{key} must be true or false"))
        flags[key] = value is True
    quiet, quiet_text = None, ""
    if "complete_on_images" in raw:
        block = raw["complete_on_images"]
        block_line = line_of(raw, "complete_on_images")
        if not isinstance(block, dict) or "quiet" not in block:
            problems.append(YamlProblem(file, block_line, "complete_on_images must be {quiet: DURATION}, e.g."
                                                          " {quiet: 10m}"))
        else:
            for key in block:
                if key not in COMPLETE_KEYS:
                    problems.append(YamlProblem(file, line_of(block, key, block_line),
                                                f"unknown complete_on_images key {key!r}; allowed: quiet"))
            try:
                quiet = parse_duration(block["quiet"], file, line_of(block, "quiet", block_line),
                                       "complete_on_images.quiet")
                quiet_text = str(block["quiet"]).strip()
            except YamlProblem as problem:
                problems.append(problem)
    if not (quiet or any(flags.values())) and len(problems) == found:
        problems.append(YamlProblem(file, raw.line, "a stations entry does nothing: give complete_on_images,"
                                                    " start_on_first_image or drop_on_study_arrival"))
    return StationPolicy(file, raw.line, tuple(matchers), quiet, quiet_text, flags["start_on_first_image"],
                         flags["drop_on_study_arrival"])


def parse_stations(block: Any, file: str, line: int,
                   compile_matcher: Callable[[Any, str, int], Callable[[str], bool]],
                   problems: list[YamlProblem]) -> list[StationPolicy]:
    """The entries of one file's ``stations:`` list; problems are appended with their file:line."""
    if block is None:
        return []
    if not isinstance(block, LineList):
        problems.append(YamlProblem(file, line, "'stations' must be a list of entries"))
        return []
    entries = (_parse_entry(raw, file, block.line_of(index), compile_matcher, problems)
               for index, raw in enumerate(block))
    return [entry for entry in entries if entry is not None]
