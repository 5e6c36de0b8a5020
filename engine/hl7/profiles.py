"""Loads and validates the mapping profiles in ``profiles/`` (see profiles/README.md).

Every problem is reported as ``file:line: reason`` and all of them are raised together as an
ExceptionGroup; a folder with a problem yields no profiles at all (the engine refuses to start,
``swf rules check`` lists them).
"""
from __future__ import annotations

import re
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
# Kinds that read a whole field (all its components, the first or every repetition): the path names a field.
WHOLE_FIELD_KINDS = {"xpn", "xcn", "joined", "code", "codes"}
OBX_KINDS = {"obx_weight", "obx_size"}
EVERY_SEGMENT_KINDS = {"text", "list", "code", "codes"}
MATCH_KEYS = {"codes", "text"}
# Keys merged key by key with the base profile when a profile ``extends`` another; others replace.
MERGED_KEYS = SECTIONS + ("coding_schemes", "modality_map", "options")
# Keys a site variant does not inherit.
NOT_INHERITED = ("name", "title")

_SEGMENT = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_MESSAGE_CODE = re.compile(r"^[A-Z][A-Z0-9]{2}\^[A-Z][A-Z0-9]{2}$")


def profile_files(directory: Path | str) -> list[Path]:
    """``*.yaml`` and ``*.yml`` of a folder sorted by name; hidden files are ignored."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir()
                   if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()),
                  key=lambda p: p.name)


def _check_path(file: str, line: int, text: Any, problems: list[YamlProblem], whole_field: str = "") -> None:
    if not isinstance(text, str):
        problems.append(YamlProblem(file, line, f"a field path must be text such as PID-5 or OBR-4.2, not {text!r}"))
        return
    try:
        path = FieldPath.parse(text)
    except ValueError as exc:
        problems.append(YamlProblem(file, line, str(exc)))
        return
    if whole_field and (path.component or path.repetition != 1):
        problems.append(YamlProblem(file, line, f"type {whole_field} reads a whole field: use "
                                                f"{path.segment}-{path.field}, not {text}"))


def _paths(spec: Any, file: str, line: int, problems: list[YamlProblem], kind: str = "text") -> None:
    """A path or a list of paths (first non-empty wins)."""
    whole_field = kind if kind in WHOLE_FIELD_KINDS else ""
    if isinstance(spec, list):
        if not spec:
            problems.append(YamlProblem(file, line, "an empty list of paths"))
        for index, path in enumerate(spec):
            _check_path(file, line_of(spec, index, line), path, problems, whole_field)
            if kind == "list" and isinstance(path, str) and "[" in path:
                problems.append(YamlProblem(file, line_of(spec, index, line),
                                            "type list reads every repetition; drop the [n]"))
    else:
        _check_path(file, line, spec, problems, whole_field)
        if kind == "list" and isinstance(spec, str) and "[" in spec:
            problems.append(YamlProblem(file, line, "type list reads every repetition; drop the [n]"))


def _check_attribute(file: str, section: LineDict, keyword: str, problems: list[YamlProblem],
                     may_remove: bool) -> None:
    line = line_of(section, keyword)
    if tag_for_keyword(keyword) is None:
        problems.append(YamlProblem(file, line, f"{keyword!r} is not a DICOM attribute keyword"))
    spec = section[keyword]
    if spec is None:
        if not may_remove:
            problems.append(YamlProblem(file, line, f"{keyword}: null only removes an inherited attribute "
                                                    "(in a profile that extends another)"))
        return
    if isinstance(spec, (str, list)):
        _paths(spec, file, line, problems)
        return
    if not isinstance(spec, dict):
        problems.append(YamlProblem(file, line, f"{keyword}: expected a path, a list of paths or a mapping"))
        return
    for key in spec:
        if key not in ATTRIBUTE_KEYS:
            problems.append(YamlProblem(file, line_of(spec, key, line), f"unknown key {key!r} for {keyword}; "
                                                                        f"allowed: {', '.join(sorted(ATTRIBUTE_KEYS))}"))
    kind = spec.get("type", "text")
    if not isinstance(kind, str) or kind not in KINDS:
        problems.append(YamlProblem(file, line_of(spec, "type", line), f"unknown type {kind!r}; one of "
                                                                       f"{', '.join(sorted(KINDS))}"))
        kind = "text"
    if kind in OBX_KINDS:
        if "path" in spec:
            problems.append(YamlProblem(file, line_of(spec, "path", line), f"type {kind} reads the OBX segments "
                                                                           "chosen by 'match'; it takes no path"))
        match = spec.get("match")
        if not isinstance(match, dict) or not any(isinstance(match.get(k), str) and match.get(k) for k in MATCH_KEYS):
            problems.append(YamlProblem(file, line_of(spec, "match", line),
                                        f"type {kind} needs match: {{codes: 'code|code', text: ...}}"))
        else:
            for key, value in match.items():
                if key not in MATCH_KEYS or not isinstance(value, str):
                    problems.append(YamlProblem(file, line_of(match, key, line),
                                                f"match takes codes: 'c1|c2' and text: ... (text values), not {key!r}"))
    else:
        if "match" in spec:
            problems.append(YamlProblem(file, line_of(spec, "match", line), "match is only for obx_weight/obx_size"))
        if "path" not in spec:
            problems.append(YamlProblem(file, line, f"{keyword} needs a path"))
        else:
            _paths(spec["path"], file, line_of(spec, "path", line), problems, kind)
    for key in ("every_segment", "truncate"):
        if key in spec and not isinstance(spec[key], bool):
            problems.append(YamlProblem(file, line_of(spec, key, line), f"{key} must be true or false"))
    if spec.get("every_segment") is True and kind not in EVERY_SEGMENT_KINDS:
        problems.append(YamlProblem(file, line_of(spec, "every_segment", line),
                                    f"every_segment works with type {', '.join(sorted(EVERY_SEGMENT_KINDS))}, "
                                    f"not {kind}"))
    if "components" in spec:
        components = spec["components"]
        if kind not in ("code", "codes"):
            problems.append(YamlProblem(file, line_of(spec, "components", line), "components is only for type code/codes"))
        elif (not isinstance(components, list) or len(components) != 3
              or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in components)):
            problems.append(YamlProblem(file, line_of(spec, "components", line),
                                        "components must be three component numbers [value, meaning, scheme], "
                                        "e.g. [4, 5, 6]"))
    if "max_length" in spec:
        limit = spec["max_length"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            problems.append(YamlProblem(file, line_of(spec, "max_length", line),
                                        "max_length must be a whole number (0 = no limit)"))


def _check_text_map(file: str, data: LineDict, key: str, problems: list[YamlProblem]) -> None:
    block = data[key]
    if not isinstance(block, dict):
        problems.append(YamlProblem(file, line_of(data, key), f"{key} must be a mapping"))
        return
    if key == "options":
        return  # free-form, reserved for later use
    for source, target in block.items():
        if not isinstance(target, str):
            problems.append(YamlProblem(file, line_of(block, source), f"{key}: {source!r} must map to a text value"))


def _check_profile(file: str, data: LineDict, problems: list[YamlProblem]) -> None:
    for key in data:
        if key not in TOP_KEYS:
            problems.append(YamlProblem(file, line_of(data, key), f"unknown profile key {key!r}; "
                                                                  f"allowed: {', '.join(sorted(TOP_KEYS))}"))
    for key in ("name", "title", "extends"):
        if key in data and (not isinstance(data[key], str) or not data[key].strip()):
            problems.append(YamlProblem(file, line_of(data, key), f"{key} must be a text value"))
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list):
            problems.append(YamlProblem(file, line_of(data, "messages"), "messages must be a list such as "
                                                                         "[ORM^O01, ADT^A01]"))
        else:
            for index, code in enumerate(messages):
                if not isinstance(code, str) or not _MESSAGE_CODE.match(code):
                    problems.append(YamlProblem(file, line_of(messages, index, line_of(data, "messages")),
                                                f"{code!r} is not a message type such as ORM^O01"))
    for key in ("order_group", "step_segment"):
        if key in data and (not isinstance(data[key], str) or not _SEGMENT.match(data[key])):
            problems.append(YamlProblem(file, line_of(data, key), f"{key} must be a segment name such as ORC, OBR, IPC"))
    for key in ("order_control", "order_status"):
        if key in data:
            _check_path(file, line_of(data, key), data[key], problems)
    if "truncate" in data and not isinstance(data["truncate"], bool):
        problems.append(YamlProblem(file, line_of(data, "truncate"), "truncate must be true or false"))
    for key in ("coding_schemes", "modality_map", "options"):
        if key in data:
            _check_text_map(file, data, key, problems)
    for section in SECTIONS:
        if section not in data:
            continue
        block = data[section]
        if not isinstance(block, LineDict):
            problems.append(YamlProblem(file, line_of(data, section), f"{section} must be a mapping of DICOM keywords"))
            continue
        for keyword in block:
            _check_attribute(file, block, str(keyword), problems, may_remove="extends" in data)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A site variant over its base: sections and tables merged key by key, ``null`` removes."""
    merged = {key: value for key, value in base.items() if key not in NOT_INHERITED}
    for key, value in override.items():
        if key in MERGED_KEYS and isinstance(value, dict):
            combined = {**(base.get(key) or {}), **value}
            merged[key] = {k: v for k, v in combined.items() if v is not None}
        else:
            merged[key] = value
    return merged


def load_profiles(directory: Path | str) -> dict[str, Profile]:
    """All profiles of a folder, ``extends`` resolved; raises a list of problems as ExceptionGroup."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExceptionGroup("profiles folder missing",
                             [YamlProblem(str(directory), 0, "profiles folder does not exist")])
    raw: dict[str, tuple[str, LineDict]] = {}
    problems: list[YamlProblem] = []
    for path in profile_files(directory):
        file = str(path)
        try:
            data = load_yaml(path)
        except YamlProblem as problem:
            problems.append(problem)
            continue
        if not isinstance(data, LineDict):
            problems.append(YamlProblem(file, 1, "a profile must be a mapping"))
            continue
        _check_profile(file, data, problems)
        name = data.get("name") if isinstance(data.get("name"), str) else path.stem
        if name in raw:
            problems.append(YamlProblem(file, line_of(data, "name"), f"profile name {name!r} also defined in {raw[name][0]}"))
            continue
        raw[name] = (file, data)

    resolved: dict[str, dict[str, Any] | None] = {}

    def resolve(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any] | None:
        if name in resolved:
            return resolved[name]
        file, data = raw[name]
        parent = data.get("extends")
        result: dict[str, Any] | None
        if not parent:
            result = dict(data)
        elif parent in chain + (name,):
            problems.append(YamlProblem(file, line_of(data, "extends"),
                                        f"circular extends: {' -> '.join(chain + (name, parent))}"))
            result = None
        elif parent not in raw:
            problems.append(YamlProblem(file, line_of(data, "extends"),
                                        f"extends unknown profile {parent!r}; known: {', '.join(sorted(raw))}"))
            result = None
        else:
            base = resolve(parent, chain + (name,))
            result = None if base is None else _merge(base, data)
        resolved[name] = result
        return result

    for name in raw:
        resolve(name)

    def definitions(name: str) -> dict[str, str]:
        """file:line of each ``section.key`` the resolved profile holds: its own, else its base's."""
        file, data = raw[name]
        parent = data.get("extends")
        where = definitions(parent) if parent else {}
        for section in MERGED_KEYS:
            block = data.get(section)
            if not isinstance(block, LineDict):
                continue
            for key in block:
                if block[key] is None:
                    where.pop(f"{section}.{key}", None)
                else:
                    where[f"{section}.{key}"] = f"{file}:{block.line_of(str(key))}"
        return where

    # A message type claimed by two base profiles would be mapped by whichever sorts first.
    claimed: dict[str, str] = {}
    for name in sorted(raw):
        file, data = raw[name]
        if data.get("extends") or not isinstance(data.get("messages"), list):
            continue
        for index, code in enumerate(data["messages"]):
            if code in claimed and claimed[code] != name:
                problems.append(YamlProblem(file, line_of(data["messages"], index, line_of(data, "messages")),
                                            f"{code} is already mapped by base profile {claimed[code]!r}; make this "
                                            f"profile extend it and name it from a rule, or drop {code} here"))
            claimed.setdefault(code, name)

    if problems:
        unique = list({(p.file, p.line, p.reason): p for p in problems}.values())
        raise ExceptionGroup(f"{len(unique)} problem(s) in {directory}", unique)
    profiles: dict[str, Profile] = {}
    for name, data in resolved.items():
        if data is not None:
            merged = dict(data)
            merged.setdefault("title", name)
            profiles[name] = Profile(name, merged, definitions(name))
    return profiles


def select_profile(profiles: dict[str, Profile], message_code: str, preferred: str = "") -> Profile | None:
    """The profile a rule named, else the base profile (one that extends none) listing this message type.

    Site variants (profiles that ``extend`` another) are only used when a rule names them.
    """
    if preferred:
        return profiles.get(preferred)
    for name in sorted(profiles):
        if not profiles[name].extends and message_code in profiles[name].messages:
            return profiles[name]
    return None
