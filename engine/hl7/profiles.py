"""Loads and validates the mapping profiles in ``profiles/`` (see profiles/README.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword

from ..yamlfile import LineDict, YamlProblem, line_of, load_yaml
from .mapping import KINDS, Profile
from .message import FieldPath

TOP_KEYS = {"name", "title", "extends", "messages", "order_group", "step_segment", "order_control",
            "order_status", "coding_schemes", "modality_map", "truncate", "options", "patient", "request", "step"}
SECTIONS = ("patient", "request", "step")
ATTRIBUTE_KEYS = {"path", "type", "every_segment", "components", "max_length", "truncate", "match"}


def _check_path(file: str, line: int, text: Any, problems: list[YamlProblem]) -> None:
    try:
        FieldPath.parse(str(text))
    except ValueError as exc:
        problems.append(YamlProblem(file, line, str(exc)))


def _check_attribute(file: str, section: LineDict, keyword: str, problems: list[YamlProblem]) -> None:
    line = line_of(section, keyword)
    if tag_for_keyword(keyword) is None:
        problems.append(YamlProblem(file, line, f"{keyword!r} is not a DICOM attribute keyword"))
    spec = section[keyword]
    if isinstance(spec, str):
        _check_path(file, line, spec, problems)
    elif isinstance(spec, list):
        for path in spec:
            _check_path(file, line, path, problems)
    elif isinstance(spec, dict):
        unknown = set(spec) - ATTRIBUTE_KEYS
        if unknown:
            problems.append(YamlProblem(file, line, f"unknown key(s) {sorted(unknown)} for {keyword}"))
        kind = spec.get("type", "text")
        if kind not in KINDS:
            problems.append(YamlProblem(file, line_of(spec, "type", line),
                                        f"unknown type {kind!r}; one of {sorted(KINDS)}"))
        paths = spec.get("path", [])
        if not paths and kind not in ("obx_weight", "obx_size"):
            problems.append(YamlProblem(file, line, f"{keyword} needs a path"))
        for path in [paths] if isinstance(paths, str) else paths:
            _check_path(file, line, path, problems)
    else:
        problems.append(YamlProblem(file, line, f"{keyword}: expected a path, a list of paths or a mapping"))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in SECTIONS + ("coding_schemes", "modality_map", "options") and isinstance(value, dict):
            merged[key] = {**(base.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged


def load_profiles(directory: Path | str) -> dict[str, Profile]:
    """All profiles of a folder, ``extends`` resolved; raises a list of problems as ExceptionGroup."""
    directory = Path(directory)
    raw: dict[str, tuple[str, LineDict]] = {}
    problems: list[YamlProblem] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = load_yaml(path)
        except YamlProblem as problem:
            problems.append(problem)
            continue
        file = str(path)
        if not isinstance(data, LineDict):
            problems.append(YamlProblem(file, 1, "a profile must be a mapping"))
            continue
        name = str(data.get("name") or path.stem)
        for key in data:
            if key not in TOP_KEYS:
                problems.append(YamlProblem(file, line_of(data, key), f"unknown profile key {key!r}"))
        for section in SECTIONS:
            block = data.get(section)
            if block is None:
                continue
            if not isinstance(block, LineDict):
                problems.append(YamlProblem(file, line_of(data, section), f"{section} must be a mapping"))
                continue
            for keyword in block:
                _check_attribute(file, block, str(keyword), problems)
        for key in ("order_control", "order_status"):
            if key in data:
                _check_path(file, line_of(data, key), data[key], problems)
        if name in raw:
            problems.append(YamlProblem(file, 1, f"profile name {name!r} also defined in {raw[name][0]}"))
        raw[name] = (file, data)
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any] | None:
        if name in resolved:
            return resolved[name]
        file, data = raw[name]
        parent = data.get("extends")
        if parent:
            if parent not in raw or parent in chain:
                problems.append(YamlProblem(file, line_of(data, "extends"),
                                            f"extends unknown or circular profile {parent!r}"))
                return None
            base = resolve(parent, chain + (name,))
            if base is None:
                return None
            resolved[name] = _merge(base, data)
        else:
            resolved[name] = dict(data)
        return resolved[name]

    profiles = {}
    for name in raw:
        data = resolve(name)
        if data is not None:
            profiles[name] = Profile(name, data)
    if problems:
        raise ExceptionGroup(f"{len(problems)} problem(s) in {directory}", problems)
    return profiles


def select_profile(profiles: dict[str, Profile], message_code: str, preferred: str = "") -> Profile | None:
    """The profile a rule named, else the first base profile (by name) that lists this message type.

    Site variants (profiles that ``extend`` another) are only used when a rule names them.
    """
    if preferred:
        return profiles.get(preferred)
    for name in sorted(profiles):
        if not profiles[name].extends and message_code in profiles[name].messages:
            return profiles[name]
    return None
