"""Modality Worklist C-FIND SCP (RAD-5): DICOM identifier -> WorklistRequest -> response datasets.

SWF.md section 5.  Matching runs in SQL (``store/worklist_query.py``); this module reads the request
identifier (which keys are matched where, which ones we do not support), and writes each matching item
back with exactly the keys of the request (section 5.5) and the calling AE's character set (5.7).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.sequence import Sequence
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import ModalityWorklistInformationFind

from ...store.matching import QueryError
from ...store.worklist_query import step_keys, top_level_keys
from ...workflow.worklist import WorklistItem, WorklistRequest, find_items
from ..ae import DicomContext, ForegroundService, element_text, status_dataset
from ..answer_limit import checked_limit, limit_reached
from ..auditing import audit_query
from ..identifier import identifier_of
from ..wire.pending_responses import PendingSender, encode_identifier, pending_command
from ..wire.response_encoding import (ASCII_VRS, CHARSET_VRS, Element, NotPlain, PlainKey, encode_elements,
                                      encode_plain, plain_headers)

log = logging.getLogger(__name__)

SPS_SEQUENCE = "ScheduledProcedureStepSequence"
CODE_SEQUENCE = "RequestedProcedureCodeSequence"
CODE_MATCH_KEYS = ("CodeValue", "CodingSchemeDesignator")
TOP_MATCH_KEYS = top_level_keys()
STEP_MATCH_KEYS = step_keys()
NEVER_MATCHED = {"SpecificCharacterSet"}
# Return keys of Type 1 (PS3.4 Table K.6-1) the engine may lack a value for.  An item that lacks one the
# request asks for is not offered: a response with a zero-length Type 1 attribute would be invalid.
# (ScheduledProcedureStepStartTime is Type 1 too, but date-only orders have none: SWF.md 3.3.4.)
TYPE1_TOP = {tag_for_keyword(k): k for k in ("PatientName", "PatientID", "StudyInstanceUID", "RequestedProcedureID")}
TYPE1_STEP = {tag_for_keyword(k): k for k in ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "Modality",
                                              "ScheduledProcedureStepID")}
SPS_TAG = tag_for_keyword(SPS_SEQUENCE)
TEXT_VRS = CHARSET_VRS | ASCII_VRS
NO_TYPE1: dict[int, str] = {}
SPECIFIC_CHARACTER_SET = tag_for_keyword("SpecificCharacterSet")
# Repertoires every Unicode character can be written in.
UNIVERSAL_CHARSETS = {"ISO_IR 192", "GB18030"}
# Character sets written with one Python codec (no ISO 2022 code extensions): the plain-text writer's.
SIMPLE_CHARSETS = {name for name in python_encoding if not name.startswith("ISO 2022")}


class BadIdentifier(ValueError):
    """The request identifier cannot be used (0xA900)."""


def _has_value(element: Any) -> bool:
    """Whether a key is non-empty; a sequence key is non-empty when one of its items holds a value."""
    if element.VR == "SQ":
        return any(_has_value(child) for item in element.value or [] for child in item)
    return element_text(element) != ""


def _one_item(element: Any) -> Dataset | None:
    """The sequence key's only item (None when empty); more than one item cannot be matched (PS3.4 C.2.2.2.6)."""
    items = element.value or []
    if len(items) > 1:
        raise BadIdentifier(f"{element.keyword or element.tag} with {len(items)} items (one is allowed)")
    return items[0] if items else None


def _key_value(element: Any, undecodable: list[str]) -> str:
    """A matching key's text; bytes that could not be decoded (U+FFFD) match any one character (SWF.md 5.1)."""
    value = element_text(element)
    if "\ufffd" in value:
        undecodable.append(element.keyword)
        value = value.replace("\ufffd", "?")
    return value


def _is_group_length(element: Any) -> bool:
    return element.tag.element == 0


def request_from_identifier(identifier: Dataset) -> tuple[WorklistRequest, bool]:
    """The matching keys of a C-FIND identifier; the flag says an unsupported key was given a value."""
    request = WorklistRequest()
    unsupported: list[str] = []
    undecodable: list[str] = []
    for element in identifier:
        keyword = element.keyword
        if _is_group_length(element) or keyword in NEVER_MATCHED:
            continue
        if keyword == SPS_SEQUENCE:
            for child in _one_item(element) or []:
                if _is_group_length(child):
                    continue
                if child.keyword in STEP_MATCH_KEYS:
                    request.step[child.keyword] = _key_value(child, undecodable)
                elif _has_value(child):
                    unsupported.append(f"{SPS_SEQUENCE}>{child.keyword or child.tag}")
        elif keyword == CODE_SEQUENCE:
            for child in _one_item(element) or []:
                if child.keyword in CODE_MATCH_KEYS:
                    request.code[child.keyword] = _key_value(child, undecodable)
                elif not _is_group_length(child) and _has_value(child):
                    unsupported.append(f"{CODE_SEQUENCE}>{child.keyword or child.tag}")
        elif element.VR == "SQ":
            _one_item(element)
            if _has_value(element):
                unsupported.append(keyword or str(element.tag))
        elif keyword in TOP_MATCH_KEYS:
            request.top[keyword] = _key_value(element, undecodable)
        elif _has_value(element):
            unsupported.append(keyword or str(element.tag))
    if undecodable:
        log.warning("MWL query: undecodable bytes in %s are matched as '?'", ", ".join(undecodable))
    if unsupported:
        log.info("MWL query: keys not supported for matching, returned only: %s", ", ".join(unsupported))
    return request, bool(unsupported)


# -- responses ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestedKey:
    """One key of the request identifier; for a sequence, ``children`` holds the keys of its item
    (None: a universal sequence key, answered with the whole stored sequence)."""
    tag: int
    vr: str
    keyword: str
    children: tuple[RequestedKey, ...] | None = None


def _requested_keys(identifier: Dataset) -> tuple[RequestedKey, ...]:
    keys = []
    for element in identifier:
        if _is_group_length(element) or element.keyword == "SpecificCharacterSet":
            continue
        children = None
        if element.VR == "SQ":
            request_items = element.value or []
            if request_items and len(request_items[0]) > 0:
                children = _requested_keys(request_items[0])
        keys.append(RequestedKey(int(element.tag), element.VR, element.keyword, children))
    return tuple(sorted(keys, key=lambda key: key.tag))


def _zero_if_empty(value: Any) -> Any:
    return None if value in ("", None, []) else value


def _stored_items(stored: Any) -> list[dict[str, Any]]:
    if isinstance(stored, dict):
        stored = [stored]
    if not stored or not isinstance(stored, list):
        return []
    return [item if isinstance(item, dict) else {} for item in stored]


def _whole_item(stored: dict[str, Any]) -> list[Element]:
    """A stored sequence item (keyword -> value) written whole."""
    elements: list[Element] = []
    for keyword, value in stored.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        vr = dictionary_VR(tag)
        if vr == "SQ":
            items = value if isinstance(value, list) else [value] if value else []
            elements.append((tag, "SQ", [_whole_item(item) for item in _stored_items(items)]))
        else:
            elements.append((tag, vr, _zero_if_empty(value)))
    return elements


def _answer(keys: tuple[RequestedKey, ...], values: dict[str, Any]) -> list[Element]:
    """Every requested key with the item's value, or zero-length when the item has none."""
    elements: list[Element] = []
    for key in keys:
        stored = values.get(key.keyword) if key.keyword else None
        if key.vr == "SQ":
            items = _stored_items(stored)
            if key.children is None:
                elements.append((key.tag, "SQ", [_whole_item(item) for item in items]))
            else:
                elements.append((key.tag, "SQ", [_answer(key.children, item) for item in items]))
            continue
        if isinstance(stored, dict) or (isinstance(stored, list) and any(isinstance(v, dict) for v in stored)):
            stored = None  # a stored sequence asked for as a plain attribute: zero-length
        elements.append((key.tag, key.vr, _zero_if_empty(stored)))
    return elements


def _map_texts(elements: list[Element], change: Callable[[str], str]) -> list[Element]:
    """The elements with ``change`` applied to every text value, nested sequences included."""
    changed: list[Element] = []
    for tag, vr, value in elements:
        if vr == "SQ":
            value = [_map_texts(item, change) for item in value]
        elif isinstance(value, str):
            value = change(value)
        elif isinstance(value, list):
            value = [change(v) if isinstance(v, str) else v for v in value]
        changed.append((tag, vr, value))
    return changed


def _all_ascii(elements: list[Element]) -> bool:
    for _tag, vr, value in elements:
        if vr == "SQ":
            if not all(_all_ascii(item) for item in value):
                return False
        elif isinstance(value, str):
            if not value.isascii():
                return False
        elif isinstance(value, list) and not all(str(v).isascii() for v in value):
            return False
    return True


def _fit_repertoire(elements: list[Element], charset: str, accession: str) -> list[Element]:
    """Replace with '?' what the AE's single-byte repertoire cannot hold (SWF.md 5.7, ``replace``)."""
    codec = python_encoding.get(charset)
    if charset in UNIVERSAL_CHARSETS or charset.startswith("ISO 2022") or codec is None:
        return elements
    replaced: set[str] = set()

    def fit(text: str) -> str:
        fitted = text.encode(codec, errors="replace").decode(codec)
        if fitted != text:
            replaced.add(text)
        return fitted

    fitted = _map_texts(elements, fit)
    if replaced:
        log.warning("MWL response for accession %s: %d value(s) not representable in %s, replaced by '?'",
                    accession, len(replaced), charset)
    return fitted


def _dataset_of(elements: list[Element]) -> Dataset:
    dataset = Dataset()
    for tag, vr, value in elements:
        if vr == "SQ":
            dataset.add_new(tag, vr, Sequence([_dataset_of(item) for item in value]))
        else:
            dataset.add_new(tag, vr, value)
    return dataset


@dataclass
class WorklistResponse:
    """One item's response identifier as elements; ``missing`` names the requested Type 1 keys it lacks."""
    elements: list[Element]
    charset: str                # the Specific Character Set written, '' when the content is ASCII
    missing: list[str]

    def dataset(self) -> Dataset:
        return _dataset_of(self.elements)

    def encode(self, transfer_syntax: Any) -> bytes:
        """Bytes for the presentation context: the plain-text writer, or pydicom for anything else."""
        if transfer_syntax.is_little_endian and not transfer_syntax.is_deflated and (
                not self.charset or (self.charset in SIMPLE_CHARSETS)):
            try:
                return encode_elements(self.elements, not transfer_syntax.is_implicit_VR,
                                       python_encoding[self.charset] if self.charset else "latin_1")
            except NotPlain:
                pass
        return encode_identifier(self.dataset(), transfer_syntax)


def _lacks_type1(elements: list[Element]) -> list[str]:
    missing = [TYPE1_TOP[tag] for tag, _vr, value in elements if tag in TYPE1_TOP and value in (None, "")]
    for tag, _vr, items in elements:
        if tag == SPS_TAG:
            for item in items:
                missing += [f"{SPS_SEQUENCE}>{TYPE1_STEP[t]}" for t, _v, value in item
                            if t in TYPE1_STEP and value in (None, "")]
    return missing


def _plain_keys(keys: tuple[RequestedKey, ...]) -> tuple[PlainKey, ...] | None:
    """The keys for the fast path; None when a universal sequence key asks for whole stored items."""
    plain: list[PlainKey] = []
    for key in keys:
        children = None
        if key.vr == "SQ":
            children = _plain_keys(key.children) if key.children is not None else None
            if children is None:
                return None
        plain.append((key.tag, key.vr, children))
    return tuple(plain)


@dataclass(frozen=True)
class PlainSpec:
    """A requested key as the fast path reads it: where its value is, how it is written, whether it is a
    Type 1 key the item must have a value for; ``children`` for a sequence key."""
    keyword: str
    text: bool                  # a text VR the plain writer handles
    pad: bytes                  # the byte that pads an odd length
    type1: bool
    children: tuple[PlainSpec, ...] | None


def _plain_specs(keys: tuple[RequestedKey, ...], type1: dict[int, str]) -> tuple[PlainSpec, ...]:
    return tuple(PlainSpec(key.keyword, key.vr in TEXT_VRS, b"\0" if key.vr == "UI" else b" ", key.tag in type1,
                           _plain_specs(key.children, TYPE1_STEP if key.tag == SPS_TAG and type1 is TYPE1_TOP
                                        else NO_TYPE1) if key.vr == "SQ" and key.children is not None else None)
                 for key in keys)


def _plain_values(specs: tuple[PlainSpec, ...], values: dict[str, Any]) -> list | None:
    """What ``_answer`` would give, as value bytes, when every value is ASCII text and no Type 1 key is
    empty; None otherwise (the item then takes the general path: warnings, repertoire, pydicom)."""
    out: list = []
    for spec in specs:
        stored = values.get(spec.keyword) if spec.keyword else None
        if spec.children is not None:
            items = []
            for item in _stored_items(stored):
                children = _plain_values(spec.children, item)
                if children is None:
                    return None
                items.append(children)
            out.append(items)
            continue
        if type(stored) is str and stored:
            if not spec.text or not stored.isascii():
                return None
            data = stored.encode("ascii")
        elif stored is None or stored == "" or isinstance(stored, dict):
            data = b""
        elif isinstance(stored, list):
            if not stored or any(isinstance(v, dict) for v in stored):
                data = b""
            elif spec.text and all(type(v) is str and v.isascii() for v in stored):
                data = b"\\".join(v.encode("ascii") for v in stored)
            else:
                return None
        else:
            return None
        if not data and spec.type1:
            return None
        if len(data) % 2:
            data += spec.pad
        out.append(data)
    return out


class PlainResponse:
    """An ASCII-only item's response held as the value bytes of the plan's keys: written straight to a
    little-endian transfer syntax (``encode_plain``); its elements are built only when asked for."""

    charset = ""

    def __init__(self, plan: ResponsePlan, source: dict[str, Any], values: list):
        self._plan = plan
        self._source = source
        self._values = values

    @property
    def missing(self) -> list[str]:
        return []

    @property
    def elements(self) -> list[Element]:
        return _answer(self._plan.keys, self._source)

    def dataset(self) -> Dataset:
        return _dataset_of(self.elements)

    def encode(self, transfer_syntax: Any) -> bytes:
        if transfer_syntax.is_little_endian and not transfer_syntax.is_deflated:
            try:
                return encode_plain(self._plan.headers[not transfer_syntax.is_implicit_VR], self._values)
            except NotPlain:
                pass
        return encode_identifier(self.dataset(), transfer_syntax)


class ResponsePlan:
    """The request identifier's keys, read once per query and applied to every matching item."""

    def __init__(self, identifier: Dataset):
        self.keys = _requested_keys(identifier)
        plain = _plain_keys(self.keys)
        self.headers = {explicit: plain_headers(plain, explicit) for explicit in (False, True)} if plain else None
        self.specs = _plain_specs(self.keys, TYPE1_TOP)

    def response(self, item: WorklistItem, charset: str) -> WorklistResponse | PlainResponse:
        """Exactly the requested keys; (0008,0005) only for non-ASCII content (SWF.md 5.5, 5.7)."""
        values = dict(item.attributes)
        values[SPS_SEQUENCE] = [item.step]
        if self.headers is not None:
            plain = _plain_values(self.specs, values)
            if plain is not None:
                return PlainResponse(self, values, plain)
        elements = _answer(self.keys, values)
        written = ""
        if not _all_ascii(elements):
            elements = _fit_repertoire(elements, charset, item.accession_number)
            elements.append((SPECIFIC_CHARACTER_SET, "CS", charset))
            written = charset
        return WorklistResponse(elements, written, _lacks_type1(elements))


def build_response(item: WorklistItem, identifier: Dataset, charset: str) -> WorklistResponse | PlainResponse:
    return ResponsePlan(identifier).response(item, charset)


class WorklistService(ForegroundService):
    name = "worklist"

    def __init__(self, context: DicomContext):
        self.context = context
        self.max_answers = checked_limit("worklist_max_answers", context.config.dicom.worklist_max_answers)

    def contexts(self) -> list[PresentationContext]:
        return [build_context(ModalityWorklistInformationFind)]

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_C_FIND, self.on_find, [ModalityWorklistInformationFind])]

    def answer(self, identifier: Dataset, calling: str,
               is_cancelled: Callable[[], bool]) -> Iterator[tuple[Any, WorklistResponse | PlainResponse | None]]:
        """The C-FIND answer as (status, response): pending items, then one final status."""
        directory = self.context.directory
        if not directory.allows(calling, "worklist"):
            log.warning("MWL query from %s refused: no worklist permission", calling)
            yield status_dataset(0xC000, f"AE {calling} may not query the worklist"), None
            return
        try:
            request, unsupported = request_from_identifier(identifier)
            plan = ResponsePlan(identifier)
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier is the SCU's problem
            log.warning("MWL query from %s: unusable identifier: %s", calling, exc)
            yield status_dataset(0xA900, str(exc) if isinstance(exc, BadIdentifier) else f"unusable identifier: {exc}"), None
            return
        known = directory.get(calling)
        request.station_restriction = known.stations if known else ()
        request.default_station = self.context.config.orders.default_station_ae
        try:
            items = self.context.store.read(lambda txn: find_items(txn, request))
        except QueryError as exc:
            log.warning("MWL query from %s refused: %s", calling, exc)
            yield status_dataset(0xA900, str(exc)), None
            return
        except Exception as exc:  # noqa: BLE001 - database trouble: unable to process
            log.exception("MWL query from %s failed", calling)
            yield status_dataset(0xC000, f"unable to process: {exc}"), None
            return
        charset = (known.charset if known and known.charset else "") or self.context.config.dicom.worklist_charset
        pending = 0xFF01 if unsupported else 0xFF00
        sent = 0
        for item in items:
            if is_cancelled():
                log.info("MWL query from %s cancelled after %d item(s)", calling, sent)
                yield 0xFE00, None
                return
            response = plan.response(item, charset)
            if response.missing:
                log.warning("MWL item %s not offered to %s: no value for %s", item.accession_number, calling,
                            ", ".join(response.missing))
                continue
            if self.max_answers and sent == self.max_answers:   # counts the items offered, after the sort
                yield limit_reached("MWL query", calling, self.max_answers, len(items)), None
                return
            sent += 1
            yield pending, response
        log.info("MWL query from %s: %d item(s)", calling, sent)
        yield 0x0000, None

    def on_find(self, event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        """pynetdicom's C-FIND handler: pending responses are written as whole PDUs, many a write
        (pending_responses.py), the final status through pynetdicom."""
        calling = event.assoc.requestor.ae_title.strip()
        transfer_syntax = event.context.transfer_syntax
        sender: PendingSender | None = None
        started = time.perf_counter()
        try:
            identifier = identifier_of(event)
        except QueryError as exc:
            log.warning("MWL query from %s refused: %s", calling, exc)
            self.context.metrics.mwl_answered("refused", time.perf_counter() - started)
            audit_query(self.context.audit, event, 0xA900, str(exc))
            yield status_dataset(0xA900, str(exc)), None
            return
        for status, response in self.answer(identifier, calling, lambda: event.is_cancelled):
            if response is None:
                if sender is not None:
                    sender.flush()
                self.context.metrics.mwl_answered(_outcome(status), time.perf_counter() - started)
                audit_query(self.context.audit, event, status if isinstance(status, int) else int(status.Status))
                yield status, None
                return
            if sender is None:
                sender = PendingSender(event.assoc, event.context.context_id, pending_command(event.request, status))
            sender.add(response.encode(transfer_syntax))


def _outcome(status: Any) -> str:
    """The /metrics outcome of a C-FIND's final status (a code, or a status data set with a comment)."""
    code = status if isinstance(status, int) else int(status.Status)
    return {0x0000: "success", 0xFE00: "cancelled", 0xA700: "limited"}.get(code, "refused")


def create(context: DicomContext) -> WorklistService:
    return WorklistService(context)
