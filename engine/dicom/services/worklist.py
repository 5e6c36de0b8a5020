"""Modality Worklist C-FIND SCP (RAD-5): DICOM identifier -> WorklistRequest -> response datasets."""
from __future__ import annotations

import logging
from typing import Any, Iterator

from pydicom.dataset import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.sequence import Sequence
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import ModalityWorklistInformationFind

from ...store.worklist_query import QueryError, supported_keys
from ...workflow.worklist import WorklistItem, WorklistRequest, find_items
from ..ae import DicomContext

log = logging.getLogger(__name__)

SPS_SEQUENCE = "ScheduledProcedureStepSequence"
CODE_SEQUENCE = "RequestedProcedureCodeSequence"
SUPPORTED_KEYS = supported_keys()
NOT_MATCHED = {"SpecificCharacterSet", SPS_SEQUENCE, CODE_SEQUENCE}


class BadIdentifier(ValueError):
    """The request identifier cannot be used (0xA900)."""


def _text(element: Any) -> str:
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def request_from_identifier(identifier: Dataset) -> tuple[WorklistRequest, bool]:
    """The matching keys of a C-FIND identifier; the flag says an unsupported key was given a value."""
    request = WorklistRequest()
    unsupported = False
    for element in identifier:
        keyword = element.keyword
        if keyword == SPS_SEQUENCE:
            items = element.value or []
            if len(items) > 1:
                raise BadIdentifier("Scheduled Procedure Step Sequence with more than one item")
            for item_element in (items[0] if items else []):
                value = _text(item_element) if item_element.VR != "SQ" else ""
                if item_element.keyword in SUPPORTED_KEYS:
                    request.step[item_element.keyword] = value
                elif value:
                    unsupported = True
        elif keyword == CODE_SEQUENCE:
            items = element.value or []
            if items:
                for item_element in items[0]:
                    if item_element.keyword in ("CodeValue", "CodingSchemeDesignator"):
                        request.code[item_element.keyword] = _text(item_element)
        elif keyword in SUPPORTED_KEYS:
            request.top[keyword] = _text(element)
        elif keyword not in NOT_MATCHED and element.VR != "SQ" and _text(element):
            unsupported = True
    return request, unsupported


def _set(target: Dataset, keyword: str, tag: Any, vr: str, value: Any) -> None:
    if vr == "SQ":
        items = Sequence()
        for item in value or []:
            child = Dataset()
            for key, child_value in item.items():
                child_tag = tag_for_keyword(key)
                if child_tag is not None:
                    _set(child, key, child_tag, dictionary_VR(child_tag), child_value)
            items.append(child)
        target.add_new(tag, vr, items)
    else:
        target.add_new(tag, vr, value if value not in (None, []) else None)


def _fill(response: Dataset, requested: Dataset, values: dict[str, Any]) -> None:
    """Copy into ``response`` every key of ``requested``, with the item's value or zero-length."""
    for element in requested:
        keyword = element.keyword
        if keyword == "SpecificCharacterSet":
            continue
        if element.VR == "SQ":
            stored = values.get(keyword)
            request_items = element.value or []
            if keyword == SPS_SEQUENCE:
                stored = [values["__step__"]]
            if not stored:
                response.add_new(element.tag, "SQ", Sequence())
                continue
            if not request_items or len(request_items[0]) == 0:  # universal: the whole stored sequence
                _set(response, keyword, element.tag, "SQ", stored)
                continue
            items = Sequence()
            for stored_item in stored if isinstance(stored, list) else [stored]:
                child = Dataset()
                _fill(child, request_items[0], stored_item if isinstance(stored_item, dict) else {})
                items.append(child)
            response.add_new(element.tag, "SQ", items)
        else:
            value = values.get(keyword, "") if keyword else ""
            response.add_new(element.tag, element.VR, value if value not in ("", None, []) else None)


def _is_ascii(values: Any) -> bool:
    if isinstance(values, str):
        return values.isascii()
    if isinstance(values, dict):
        return all(_is_ascii(v) for v in values.values())
    if isinstance(values, list):
        return all(_is_ascii(v) for v in values)
    return True


def build_response(item: WorklistItem, identifier: Dataset, charset: str) -> Dataset:
    response = Dataset()
    values = dict(item.attributes)
    values["__step__"] = item.step
    _fill(response, identifier, values)
    if not (_is_ascii(item.attributes) and _is_ascii(item.step)):
        response.SpecificCharacterSet = charset
    return response


class WorklistService:
    name = "worklist"

    def __init__(self, context: DicomContext):
        self.context = context

    def contexts(self) -> list[PresentationContext]:
        return [build_context(ModalityWorklistInformationFind)]

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_C_FIND, self.on_find, [ModalityWorklistInformationFind])]

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def on_find(self, event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        calling = event.assoc.requestor.ae_title.strip()
        directory = self.context.directory
        if not directory.allows(calling, "worklist"):
            yield _failure(0xC000, f"AE {calling} may not query the worklist"), None
            return
        try:
            identifier = event.identifier
            request, unsupported = request_from_identifier(identifier)
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier is the SCU's problem
            log.warning("MWL query from %s: unusable identifier: %s", calling, exc)
            yield _failure(0xA900, f"identifier cannot be used: {exc}"), None
            return
        known = directory.get(calling)
        request.station_restriction = known.stations if known else ()
        try:
            items = self.context.store.read(lambda txn: find_items(txn, request))
        except QueryError as exc:
            yield _failure(0xA900, str(exc)), None
            return
        except Exception as exc:  # noqa: BLE001 - database trouble: unable to process
            log.exception("MWL query from %s failed", calling)
            yield _failure(0xC000, f"unable to process: {exc}"), None
            return
        charset = (known.charset if known and known.charset else "") or self.context.config.dicom.worklist_charset
        log.info("MWL query from %s: %d item(s)", calling, len(items))
        pending = 0xFF01 if unsupported else 0xFF00
        for item in items:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield pending, build_response(item, identifier, charset)
        yield 0x0000, None


def _failure(status: int, comment: str) -> Dataset:
    dataset = Dataset()
    dataset.Status = status
    dataset.ErrorComment = comment[:64]
    return dataset


def create(context: DicomContext) -> WorklistService:
    return WorklistService(context)
