"""Modality Worklist C-FIND SCP (RAD-5): DICOM identifier -> WorklistRequest -> response datasets.

SWF.md section 5.  Matching runs in SQL (``store/worklist_query.py``); this module reads the request
identifier (which keys are matched where, which ones we do not support), and writes each matching item
back with exactly the keys of the request (section 5.5) and the calling AE's character set (5.7).
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

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
from ..ae import DicomContext, ForegroundService, status_dataset

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
TYPE1_TOP = ("PatientName", "PatientID", "StudyInstanceUID", "RequestedProcedureID")
TYPE1_STEP = ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "Modality", "ScheduledProcedureStepID")
# Repertoires every Unicode character can be written in.
UNIVERSAL_CHARSETS = {"ISO_IR 192", "GB18030"}


class BadIdentifier(ValueError):
    """The request identifier cannot be used (0xA900)."""


def _text(element: Any) -> str:
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _has_value(element: Any) -> bool:
    """Whether a key is non-empty; a sequence key is non-empty when one of its items holds a value."""
    if element.VR == "SQ":
        return any(_has_value(child) for item in element.value or [] for child in item)
    return _text(element) != ""


def _one_item(element: Any) -> Dataset | None:
    """The sequence key's only item (None when empty); more than one item cannot be matched (PS3.4 C.2.2.2.6)."""
    items = element.value or []
    if len(items) > 1:
        raise BadIdentifier(f"{element.keyword or element.tag} with {len(items)} items (one is allowed)")
    return items[0] if items else None


def _key_value(element: Any, undecodable: list[str]) -> str:
    """A matching key's text; bytes that could not be decoded (U+FFFD) match any one character (SWF.md 5.1)."""
    value = _text(element)
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
def _zero_if_empty(value: Any) -> Any:
    return None if value in ("", None, []) else value


def _set_sequence(target: Dataset, tag: Any, stored: list[dict[str, Any]]) -> None:
    """A stored sequence (list of keyword -> value dicts) written whole."""
    items = Sequence()
    for stored_item in stored:
        child = Dataset()
        for key, value in stored_item.items():
            child_tag = tag_for_keyword(key)
            if child_tag is None:
                continue
            vr = dictionary_VR(child_tag)
            if vr == "SQ":
                _set_sequence(child, child_tag, value if isinstance(value, list) else [value] if value else [])
            else:
                child.add_new(child_tag, vr, _zero_if_empty(value))
        items.append(child)
    target.add_new(tag, "SQ", items)


def _fill(response: Dataset, requested: Dataset, values: dict[str, Any]) -> None:
    """Copy into ``response`` every key of ``requested``, with the item's value or zero-length."""
    for element in requested:
        keyword = element.keyword
        if _is_group_length(element) or keyword == "SpecificCharacterSet":
            continue
        stored = values.get(keyword) if keyword else None
        if element.VR == "SQ":
            if isinstance(stored, dict):
                stored = [stored]
            if not stored or not isinstance(stored, list):
                response.add_new(element.tag, "SQ", Sequence())
                continue
            request_items = element.value or []
            if not request_items or len(request_items[0]) == 0:  # universal: the whole stored sequence
                _set_sequence(response, element.tag, stored)
                continue
            items = Sequence()
            for stored_item in stored:
                child = Dataset()
                _fill(child, request_items[0], stored_item if isinstance(stored_item, dict) else {})
                items.append(child)
            response.add_new(element.tag, "SQ", items)
        else:
            if isinstance(stored, dict) or (isinstance(stored, list) and any(isinstance(v, dict) for v in stored)):
                stored = None  # a stored sequence asked for as a plain attribute: zero-length
            response.add_new(element.tag, element.VR, _zero_if_empty(stored))


def _texts(dataset: Dataset) -> Iterator[tuple[Dataset, Any]]:
    """(dataset, element) for every element holding text, nested sequences included."""
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value or []:
                yield from _texts(item)
        elif element.value is not None and element.VR not in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            yield dataset, element


def _values_of(element: Any) -> list[str]:
    value = element.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


def _fit_repertoire(response: Dataset, charset: str, accession: str) -> None:
    """Replace with '?' what the AE's single-byte repertoire cannot hold (SWF.md 5.7, ``replace``)."""
    if charset in UNIVERSAL_CHARSETS or charset.startswith("ISO 2022"):
        return
    codec = python_encoding.get(charset)
    if codec is None:
        return
    replaced = []
    for _dataset, element in _texts(response):
        values = _values_of(element)
        fitted = [v.encode(codec, errors="replace").decode(codec) for v in values]
        if fitted != values:
            replaced.append(element.keyword)
            element.value = fitted if len(fitted) > 1 else fitted[0]
    if replaced:
        log.warning("MWL response for accession %s: %s not representable in %s, replaced by '?'", accession,
                    ", ".join(replaced), charset)


def _lacks_type1(response: Dataset) -> list[str]:
    missing = [k for k in TYPE1_TOP if k in response and response[k].value in (None, "")]
    for item in response.get(SPS_SEQUENCE) or []:
        missing += [f"{SPS_SEQUENCE}>{k}" for k in TYPE1_STEP if k in item and item[k].value in (None, "")]
    return missing


def build_response(item: WorklistItem, identifier: Dataset, charset: str) -> Dataset:
    """The response identifier: exactly the requested keys, (0008,0005) only for non-ASCII content."""
    response = Dataset()
    values = dict(item.attributes)
    values[SPS_SEQUENCE] = [item.step]
    _fill(response, identifier, values)
    if not all(value.isascii() for _ds, element in _texts(response) for value in _values_of(element)):
        _fit_repertoire(response, charset, item.accession_number)
        response.SpecificCharacterSet = charset
    return response


class WorklistService(ForegroundService):
    name = "worklist"

    def __init__(self, context: DicomContext):
        self.context = context

    def contexts(self) -> list[PresentationContext]:
        return [build_context(ModalityWorklistInformationFind)]

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_C_FIND, self.on_find, [ModalityWorklistInformationFind])]

    def on_find(self, event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        calling = event.assoc.requestor.ae_title.strip()
        directory = self.context.directory
        if not directory.allows(calling, "worklist"):
            log.warning("MWL query from %s refused: no worklist permission", calling)
            yield status_dataset(0xC000, f"AE {calling} may not query the worklist"), None
            return
        try:
            identifier = event.identifier
            request, unsupported = request_from_identifier(identifier)
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier is the SCU's problem
            log.warning("MWL query from %s: unusable identifier: %s", calling, exc)
            yield status_dataset(0xA900, str(exc) if isinstance(exc, BadIdentifier) else f"unusable identifier: {exc}"), None
            return
        known = directory.get(calling)
        request.station_restriction = known.stations if known else ()
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
            if event.is_cancelled:
                log.info("MWL query from %s cancelled after %d item(s)", calling, sent)
                yield 0xFE00, None
                return
            response = build_response(item, identifier, charset)
            missing = _lacks_type1(response)
            if missing:
                log.warning("MWL item %s not offered to %s: no value for %s", item.accession_number, calling,
                            ", ".join(missing))
                continue
            sent += 1
            yield pending, response
        log.info("MWL query from %s: %d item(s)", calling, sent)
        yield 0x0000, None


def create(context: DicomContext) -> WorklistService:
    return WorklistService(context)
