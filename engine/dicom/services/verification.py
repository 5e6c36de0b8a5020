"""Verification SCP (C-ECHO): lets a modality check that the engine answers."""
from __future__ import annotations

from typing import Any

from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification

from ..ae import DicomContext, ForegroundService


class VerificationService(ForegroundService):
    name = "verification"

    def __init__(self, context: DicomContext):
        self.context = context

    def contexts(self) -> list[PresentationContext]:
        return [build_context(Verification)]

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_C_ECHO, self.on_echo)]

    def on_echo(self, event: Any) -> int:
        if not self.context.directory.allows(event.assoc.requestor.ae_title, "echo"):
            return 0x0124  # refused: not authorised
        return 0x0000


def create(context: DicomContext) -> VerificationService:
    return VerificationService(context)
