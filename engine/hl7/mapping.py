"""Applies a mapping profile (``profiles/*.yaml``) to an HL7 message: HL7 fields -> DICOM attributes.

A profile names, per DICOM keyword, where the value comes from and how it is converted.  The message
is cut into order groups (one per ORC) and, inside a group, into step contexts (one per OBR in v2.3.1,
one per IPC in v2.5.1).  A path is looked up first in the step context's own segment, then in the
group, then in the whole message, so ``OBR-18`` in a two-OBR order reads each OBR's own value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import convert
from .message import FieldPath, Message, field_path

# DICOM VR length limits used for the length check of SWF.md 3.3.9.
_UID = re.compile(r"^\d+(\.\d+)*$", re.ASCII)
VR_MAX_LENGTH = {"SH": 16, "LO": 64, "PN": 64, "AE": 16, "CS": 16, "UI": 64, "DA": 8, "LT": 10240, "ST": 1024}


class MappingError(ValueError):
    """A field cannot be mapped (bad data type, too long); becomes AE with ERR 102 at ``path``.

    ``sequence`` is which occurrence of the path's segment holds the value (the second OBR is 2)."""

    def __init__(self, reason: str, path: str, sequence: int = 1):
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.sequence = sequence


def _mapping_error(reason: str, message: Message, index: int, fp: FieldPath) -> MappingError:
    return MappingError(reason, str(fp), message.segment_indexes(fp.segment).index(index) + 1)


@dataclass(frozen=True)
class AttributeRule:
    """How one DICOM attribute is filled: candidate HL7 paths (first non-empty wins) and a type."""

    keyword: str
    paths: tuple[str, ...]
    kind: str = "text"
    every_segment: bool = False      # gather from every occurrence of the segment (AL1, OBX ...)
    components: tuple[int, ...] = ()  # for codes: which components hold value/meaning/scheme
    max_length: int = 0
    uid: bool = False                 # a DICOM UID (VR UI): digits and dots only
    truncate: bool = False
    match: dict[str, str] = field(default_factory=dict)  # for obx: {"codes": "29463-7|3141-9", "text": ...}
    field_paths: tuple[FieldPath, ...] = ()  # ``paths`` parsed once, at load
    where: str = ""                   # file:line of its definition in the profile (``swf explain``)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_paths", tuple(field_path(p) for p in self.paths))


KINDS = {"text", "xpn", "xcn", "date", "time", "ts", "sex", "priority", "code", "codes", "list", "joined",
         "obx_weight", "obx_size", "pregnancy", "number"}


@dataclass
class StepContext:
    """Where lookups happen for one scheduled step: its own segment, its group, the message."""

    message: Message
    group: range
    step_index: int | None
    header_end: int = -1  # first segment of the first order group; -1 for the whole-message context
    _cache: dict[str, list[int]] = field(default_factory=dict)

    def occurrences(self, segment: str) -> list[int]:
        """Indexes of ``segment`` in lookup order: the step's own, then its group's, then the message's."""
        cached = self._cache.get(segment)
        if cached is not None:
            return cached
        indexes = self.message.segment_indexes(segment)
        if self.step_index is not None and self.message.segments[self.step_index][0] == segment:
            result = [self.step_index]
        else:
            in_group = [i for i in indexes if i in self.group]
            if in_group and self.step_index is not None:
                # Segments that follow the step segment (ZDS after OBR) belong to that step first.
                after = [i for i in in_group if i > self.step_index]
                before = [i for i in in_group if i < self.step_index]
                result = after + before[::-1]
            elif in_group:
                result = in_group
            elif self.header_end >= 0:
                # Outside its group an order only sees the message header part (PID, PV1, AL1 ...), never
                # another order's segments, and never an NTE (an NTE there is a patient note).
                result = [] if segment == "NTE" else [i for i in indexes if i < self.header_end]
            else:
                result = indexes
        self._cache[segment] = result
        return result

    def sequence(self, segment: str) -> int:
        """Which occurrence in the message (from 1) the segment this context reads first is, for ERR."""
        indexes = self.occurrences(segment)
        return self.message.segment_indexes(segment).index(indexes[0]) + 1 if indexes else 1

    def value(self, path: str) -> str:
        fp = field_path(path)
        for index in self.occurrences(fp.segment)[:1]:
            return self.message.value_in(index, fp).strip()
        return ""


# Where each value of an attribute was read: (segment index, path), or None (nothing read).
Source = tuple[int, FieldPath] | None


class Profile:
    """A loaded mapping profile; ``load_profiles`` builds these from YAML.

    ``where`` holds the file:line of each definition, keyed ``section.key`` (``step.Modality``,
    ``modality_map.NMR``): a site variant's own lines, else those of the profile it extends."""

    def __init__(self, name: str, data: dict[str, Any], where: dict[str, str] | None = None):
        self.name = name
        self.where: dict[str, str] = dict(where or {})
        self.title: str = data.get("title", name)
        self.extends: str = data.get("extends", "")
        self.messages: list[str] = list(data.get("messages", []))
        self.order_group_segment: str = data.get("order_group", "ORC")
        self.step_segment: str = data.get("step_segment", "OBR")
        self.order_control: str = data.get("order_control", "ORC-1")
        self.order_status: str = data.get("order_status", "ORC-5")
        self.coding_schemes: dict[str, str] = dict(data.get("coding_schemes", {}))
        self.modality_map: dict[str, str] = dict(data.get("modality_map", {}))
        self.truncate: bool = bool(data.get("truncate", False))
        self.options: dict[str, Any] = dict(data.get("options", {}))
        self.patient = [_rule(k, v, self.where.get(f"patient.{k}", "")) for k, v in (data.get("patient") or {}).items()]
        self.request = [_rule(k, v, self.where.get(f"request.{k}", "")) for k, v in (data.get("request") or {}).items()]
        self.step = [_rule(k, v, self.where.get(f"step.{k}", "")) for k, v in (data.get("step") or {}).items()]

    # -- extraction ---------------------------------------------------------------------------
    def groups(self, message: Message) -> list[range]:
        """One range of segment indexes per order group (ORC ... up to the next ORC)."""
        starts = message.segment_indexes(self.order_group_segment)
        ends = starts[1:] + [len(message.segments)]
        return [range(start, end) for start, end in zip(starts, ends)]

    def step_contexts(self, message: Message, group: range) -> list[StepContext]:
        indexes = [i for i in message.segment_indexes(self.step_segment) if i in group]
        header_end = message.segment_indexes(self.order_group_segment)[0]
        if not indexes:
            return [StepContext(message, group, None, header_end)]
        return [StepContext(message, group, index, header_end) for index in indexes]

    def patient_attributes(self, message: Message, sources: dict[str, Source] | None = None) -> dict[str, Any]:
        return self._apply(self.patient, StepContext(message, range(len(message.segments)), None), sources)

    def request_attributes(self, context: StepContext, sources: dict[str, Source] | None = None) -> dict[str, Any]:
        return self._apply(self.request, context, sources)

    def step_attributes(self, context: StepContext, sources: dict[str, Source] | None = None) -> dict[str, Any]:
        attributes = self._apply(self.step, context, sources)
        modality = attributes.get("Modality")
        if modality:
            attributes["Modality"] = self.modality_map.get(modality, modality)
        return attributes

    def step_modality(self, context: StepContext) -> str:
        """The step's modality as sent, from this profile's Modality paths (before ``modality_map``): what
        a routing rule's ``modality`` condition compares."""
        rule = next((r for r in self.step if r.keyword == "Modality"), None)
        if rule is None:
            return ""
        try:
            value, _source = self._value(rule, context)
        except MappingError:
            return ""
        return value if isinstance(value, str) else ""

    def first_step_modality(self, message: Message) -> str:
        """``step_modality`` of the message's first step (the rules' whole-message pass)."""
        groups = self.groups(message)
        return self.step_modality(self.step_contexts(message, groups[0])[0]) if groups else ""

    def _apply(self, rules: list[AttributeRule], context: StepContext,
               sources: dict[str, Source] | None = None) -> dict[str, Any]:
        """The attributes the rules give; with ``sources``, also where each was read (``swf explain``)."""
        result: dict[str, Any] = {}
        for rule in rules:
            value, source = self._value(rule, context)
            if value in ("", None, []):
                continue
            if isinstance(value, str) and rule.max_length and len(value) > rule.max_length:
                if rule.truncate or self.truncate:
                    value = value[:rule.max_length]
                else:
                    reason = f"{rule.keyword} longer than {rule.max_length} characters: {value!r}"
                    raise (_mapping_error(reason, context.message, *source) if source
                           else MappingError(reason, rule.paths[0]))
            elif rule.uid and isinstance(value, str) and not _UID.match(value):
                reason = f"{rule.keyword} {value!r} is not a DICOM UID (digits and dots)"
                raise (_mapping_error(reason, context.message, *source) if source
                       else MappingError(reason, rule.paths[0]))
            elif isinstance(value, str) and "\ufffd" in value:
                reason = f"{rule.keyword}: bytes not valid in the message character set ({context.message.codec})"
                raise (_mapping_error(reason, context.message, *source) if source
                       else MappingError(reason, rule.paths[0]))
            result[rule.keyword] = value
            if sources is not None:
                sources[rule.keyword] = source
        return result

    def _value(self, rule: AttributeRule, context: StepContext) -> tuple[Any, Source]:
        """The rule's value and where it was read (segment index, path); a bad value raises ``MappingError``."""
        message = context.message
        kind = rule.kind
        if kind == "text" and not rule.every_segment:   # most attributes: the first non-empty path's text
            for fp in rule.field_paths:
                indexes = context.occurrences(fp.segment)
                if indexes:
                    text = message.value_in(indexes[0], fp).strip()
                    if text and text != '""':
                        return text, (indexes[0], fp)
            return "", None
        if kind in ("obx_weight", "obx_size"):
            return _observation(rule, context)
        if rule.every_segment or kind in ("list", "codes"):
            values: list[Any] = []
            for fp in rule.field_paths:
                indexes = context.occurrences(fp.segment) if rule.every_segment else context.occurrences(fp.segment)[:1]
                for index in indexes:
                    try:
                        values.extend(self._field_values(rule, message, index, fp))
                    except convert.ConversionError as exc:
                        raise _mapping_error(str(exc), message, index, fp) from None
                if values:
                    return values, (indexes[0], fp)
            return values, None
        for fp in rule.field_paths:
            indexes = context.occurrences(fp.segment)
            if not indexes:
                continue
            if kind == "text":
                converted: Any = message.value_in(indexes[0], fp).strip()
                if converted == '""':
                    converted = ""
            else:
                try:
                    converted = self._convert(rule, message, indexes[0], fp)
                except convert.ConversionError as exc:
                    raise _mapping_error(str(exc), message, indexes[0], fp) from None
            if converted not in ("", None, []):
                return converted, (indexes[0], fp)
        return "", None

    def _field_values(self, rule: AttributeRule, message: Message, index: int, fp: FieldPath) -> list[Any]:
        """Every repetition of a field, converted (multi-valued attributes, code sequences)."""
        values = []
        for raw in message.field_repetitions(index, fp.field):
            components = message.components(raw)
            if rule.kind == "codes" or (rule.kind == "code"):
                item = self._code(rule, components)
                if item:
                    values.append(item)
            else:
                text = components[fp.component - 1] if fp.component and fp.component <= len(components) else (
                    components[0] if not fp.component else "")
                if text.strip():
                    values.append(text.strip())
        return values

    def _code(self, rule: AttributeRule, components: list[str]) -> dict[str, str] | None:
        value_at, meaning_at, scheme_at = rule.components or (1, 2, 3)
        padded = components + [""] * 9
        return convert.code_item(padded[value_at - 1].strip(), padded[scheme_at - 1].strip(),
                                 padded[meaning_at - 1].strip(), self.coding_schemes)

    def _convert(self, rule: AttributeRule, message: Message, index: int, fp: FieldPath) -> Any:
        kind = rule.kind
        if kind in ("xpn", "xcn", "code", "joined"):
            reps = message.field_repetitions(index, fp.field)
            if not reps:
                return ""
            if reps[0] == '""':
                return ""
            chosen = reps[0]
            if kind == "xpn":
                names = [message.components(r) for r in reps]
                legal = [c for c in names if len(c) > 6 and c[6] == "L"]
                return convert.xpn_to_pn(legal[0] if legal else names[0])
            if kind == "xcn":
                return convert.xcn_to_pn(message.components(chosen))
            if kind == "joined":
                return "^".join(message.components(chosen)).rstrip("^")
            return self._code(rule, message.components(chosen))
        if kind in ("date", "time", "ts") and not fp.component:
            fp = FieldPath(fp.segment, fp.field, fp.repetition, 1)  # TS = DTM^degree of precision: the DTM
        value = message.value_in(index, fp).strip()
        if value == '""':
            return ""
        if kind == "text":
            return value
        if kind == "number":
            return convert.number(value)
        if kind == "date":
            return convert.parse_ts(value)[0]
        if kind == "time":
            return convert.parse_ts(value)[1]
        if kind == "ts":
            date, time = convert.parse_ts(value)
            return f"{date}{'T' + time if time else ''}" if date else ""
        if kind == "sex":
            return convert.sex(value)
        if kind == "priority":
            return convert.priority(value)
        if kind == "pregnancy":
            return 3 if value.upper() == "B6" else ""
        return value


def _observation(rule: AttributeRule, context: StepContext) -> tuple[str, tuple[int, FieldPath] | None]:
    """Patient weight (kg) / size (m) from OBX segments identified by LOINC code or text.

    An OBX whose value type (OBX-2) is NM must hold a number; with another type a non-number is skipped."""
    message = context.message
    codes = rule.match.get("codes", "").split("|")
    text = rule.match.get("text", "").upper()
    value_path = field_path("OBX-5")
    for index in message.segment_indexes("OBX"):
        identifier = message.components(message.raw_field(index, 3))
        if not (identifier[0] in codes or (text and text in " ".join(identifier).upper())):
            continue
        value = message.value_in(index, value_path).strip()
        if not value or value == '""':
            continue
        try:
            number = float(convert.number(value))
        except convert.ConversionError as exc:
            if message.value_in(index, field_path("OBX-2")).strip().upper() == "NM":
                raise _mapping_error(str(exc), message, index, value_path) from None
            continue  # a text observation such as "not measured"
        unit = message.value_in(index, field_path("OBX-6.1")).strip().lower()
        if rule.kind == "obx_weight" and unit in ("g", "gram"):
            number /= 1000
        if rule.kind == "obx_size" and unit in ("cm", "centimeter"):
            number /= 100
        return f"{number:g}", (index, value_path)
    return "", None


def _rule(keyword: str, spec: Any, where: str = "") -> AttributeRule:
    """Build an AttributeRule from the YAML value: a path, a list of paths or a mapping."""
    vr = _vr(keyword)
    max_length, uid = VR_MAX_LENGTH.get(vr, 0), vr == "UI"
    if isinstance(spec, str):
        return AttributeRule(keyword, (spec,), max_length=max_length, uid=uid, where=where)
    if isinstance(spec, list):
        return AttributeRule(keyword, tuple(spec), max_length=max_length, uid=uid, where=where)
    paths = spec.get("path", ())
    paths = (paths,) if isinstance(paths, str) else tuple(paths)
    return AttributeRule(
        keyword, paths, kind=spec.get("type", "text"), every_segment=bool(spec.get("every_segment", False)),
        components=tuple(spec.get("components", ())), max_length=int(spec.get("max_length", max_length)),
        truncate=bool(spec.get("truncate", False)), match=dict(spec.get("match", {})), uid=uid, where=where)


def _vr(keyword: str) -> str:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return dictionary_VR(tag) if tag is not None else ""
