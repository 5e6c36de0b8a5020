"""The answer limit of the C-FIND SCPs (``dicom.worklist_max_answers``, ``dicom.query_max_answers``; Orthanc's
LimitAnswers): past it the SCP has sent the first matches and ends with 0xA700 Refused: Out of Resources.

PS3.4 has no C-FIND status for "more matches than sent" (C.4.1.1.4, K.4.1.1.4): Success would tell the SCU
it has every match, Cancel (0xFE00) answers a C-CANCEL the SCU did not send, and 0xC000 Unable to process
blames the request.  Out of Resources says the SCP stopped for its own limit; the Error Comment says which
limit and how many matched, so the user can narrow the query.
"""
from __future__ import annotations

import logging

from pydicom.dataset import Dataset

from .ae import status_dataset

log = logging.getLogger(__name__)

OUT_OF_RESOURCES = 0xA700


def checked_limit(key: str, value: int) -> int:
    """The configured limit (0 = none); a negative one is refused at start."""
    if value < 0:
        raise ValueError(f"dicom.{key} {value}: use 0 (no limit) or a positive number of answers")
    return value


def limit_reached(what: str, calling: str, limit: int, matched: int) -> Dataset:
    """The final status once ``limit`` answers of ``matched`` went out, logged with the calling AE."""
    log.warning("%s from %s: answer limit %d reached, %d matched; the first %d were sent, then 0xA700",
                what, calling, limit, matched, limit)
    return status_dataset(OUT_OF_RESOURCES, f"answer limit {limit} reached: {matched} matched")
