"""Storage SCP (RAD-8, RAD-9): C-STORE for every storage SOP class pynetdicom knows, no transcoding.

Per instance: check the command and the calling AE, read the indexed attributes from the encoded data
set (``dicom/wire/header.py``; nothing else is decoded) and check them against the command, then hand it to
the storage workflow once (``workflow/storage.py``: file, index and rename, in the order the duplicate
policy needs) and map its outcome to the status.  The C-STORE response goes out only after the index
commit and the rename: nothing is acknowledged that is not indexed and on disk.

Received data sets are held by ``store/incoming.py`` (memory while small, a scratch file once large);
on the pynetdicom path ``bound_received_messages`` puts them there as they arrive.

Statuses (SWF.md RAD-8): 0x0000 stored (also a duplicate under ``duplicate_policy: ignore``);
0xA700 out of resources (disk full, database unavailable, data set larger than
``dicom.max_instance_bytes``: a local limit, not a fault of the data set, so not 0xA900 or 0xC000);
0xA900 data set does not match the SOP class (UIDs missing, malformed or different from the command);
0xC000 cannot understand (unreadable data set, sequences nested too deep); 0x0117 invalid SOP instance
(the Affected SOP Instance UID breaks the UID rules, PS3.7 C.4.2); 0x0124 calling AE not allowed to store.
"""
from __future__ import annotations

import logging
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import build_context, evt
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.presentation import PresentationContext

from ...domain.uid import MAX_LENGTH as MAX_UID_LENGTH, uid_problem
from ...security_events import SecurityEvent
from ...store.files import FileStore
from ...store.incoming import IncomingDataSet
from ...workflow import storage as workflow
from ..ae import DicomContext, status_dataset
from ..wire.header import HeaderError, TooLarge, read_header
from ..wire.pynetdicom_private import (after_each_pdata, all_transfer_syntaxes, drop_received, received_bytes,
                                       received_data_set, replace_received_data_set, storage_sop_classes)

log = logging.getLogger(__name__)

SUCCESS = 0x0000
INVALID_SOP_INSTANCE = 0x0117
NOT_AUTHORISED = 0x0124
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
# The data set of any other DIMSE message (N-CREATE, N-ACTION, C-FIND identifier ...) is small; a larger
# one ends the association on the pynetdicom path.
MAX_OTHER_DATA_SET_BYTES = 16 << 20

ALL_TRANSFER_SYNTAXES = all_transfer_syntaxes()
_UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"]
_LOSSLESS = ["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
             "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.110",
             "1.2.840.10008.1.2.5"]
# pynetdicom accepts, per presentation context, the first of *our* syntaxes the requestor proposed.  Most
# SCUs propose one context per syntax (DCMTK does), so each arrives as it is.  When one context offers
# several: lossless compressed first (an SCU holding such data sends it unchanged, nothing is lost either
# way), then uncompressed, then lossy and other encapsulated syntaxes (never ask an SCU holding
# uncompressed data to compress it lossily for us; DCMTK storescp prefers uncompressed too).
TRANSFER_SYNTAXES = ([ts for ts in _LOSSLESS if ts in ALL_TRANSFER_SYNTAXES] + _UNCOMPRESSED +
                     [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in _UNCOMPRESSED and ts not in _LOSSLESS])
STORAGE_SOP_CLASSES = storage_sop_classes()    # every storage SOP class pynetdicom knows
# The status of each way the storage workflow refuses an instance (every one a local limit or fault).
_REFUSAL_STATUS = {workflow.DISK_FULL: OUT_OF_RESOURCES, workflow.NOT_WRITTEN: OUT_OF_RESOURCES,
                   workflow.NOT_INDEXED: OUT_OF_RESOURCES}


class StorageService:
    name = "storage"

    def __init__(self, context: DicomContext):
        self.context = context
        self.files = FileStore(context.config.storage_dir)
        self.policy = context.config.dicom.duplicate_policy
        self.leading_zeros = context.config.dicom.accept_uid_leading_zeros
        if self.policy not in workflow.DUPLICATE_POLICIES:
            raise ValueError(f"dicom.duplicate_policy {self.policy!r}: use one of "
                             f"{', '.join(workflow.DUPLICATE_POLICIES)}")
        self.max_instance_bytes = context.config.dicom.max_instance_bytes
        self.storage = workflow.InstanceStorage(context.store, self.files,
                                                commit_timeout=max(context.config.dicom.dimse_timeout, 5.0),
                                                quiet_seconds=context.config.studies.quiet_seconds,
                                                stations=context.stations)

    def incoming(self) -> IncomingDataSet:
        """Where one received data set is collected (its scratch file, if any, in the store)."""
        return IncomingDataSet(self.max_instance_bytes, self.files.root)

    def contexts(self) -> list[PresentationContext]:
        # scu_role/scp_role True: a C-GET requestor may take the Storage SCP role on these contexts
        # (C-GET sub-operations come back over its association); a plain C-STORE SCU keeps the default.
        contexts = []
        for uid in STORAGE_SOP_CLASSES:
            context = build_context(uid, TRANSFER_SYNTAXES)
            context.scu_role = True
            context.scp_role = True
            contexts.append(context)
        return contexts

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_C_STORE, self.on_store), (evt.EVT_CONN_OPEN, self.bound_received_messages)]

    def start(self) -> None:
        self.files.root.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        """Nothing runs in the background."""

    # -- C-STORE ----------------------------------------------------------------------------------
    def on_store(self, event: Any) -> int | Dataset:
        """pynetdicom's C-STORE handler (the direct path, ``dicom/wire/direct_storage.py``, calls ``receive``)."""
        request = event.request
        received = request.DataSet
        uids = {"AffectedSOPClassUID": str(request.AffectedSOPClassUID or ""),
                "AffectedSOPInstanceUID": str(request.AffectedSOPInstanceUID or "")}
        if isinstance(received, SpoolingDataSet):
            data = received.incoming
            uids.update(received.command_uids)
        else:   # the whole message came in one P-DATA (bounded by the PDU size)
            data = self.incoming()
            with received.getbuffer() as buffer:
                data.write(buffer)
        try:
            return self.receive(event.assoc.requestor.ae_title.strip(), uids["AffectedSOPClassUID"],
                                uids["AffectedSOPInstanceUID"], str(event.context.transfer_syntax), data,
                                str(event.assoc.requestor.address or ""), int(event.assoc.requestor.port or 0))
        finally:
            data.close()

    def bound_received_messages(self, event: Any) -> None:
        """EVT_CONN_OPEN on the pynetdicom path: received data sets go where their size is bounded.

        pynetdicom reassembles each DIMSE message in ``assoc.dimse.message`` (a DIMSEMessage whose
        ``data_set`` is a BytesIO that grows without limit).  After each P-DATA, once the message is known
        to be a C-STORE request, its ``data_set`` is swapped for a ``SpoolingDataSet`` (an IncomingDataSet:
        memory, then a scratch file, nothing kept past ``max_instance_bytes``); any other message whose
        command or data set is over MAX_OTHER_DATA_SET_BYTES aborts the association.  A command UID over
        64 characters (pynetdicom would end the association with a traceback) is cut to 64 in the command
        set and kept whole in the SpoolingDataSet, so ``receive`` refuses it with a status.  (That needs
        the command and the end of the data set in different P-DATA PDUs, as the SCUs we know send them.)
        pynetdicom's message internals are reached through ``wire/pynetdicom_private.py``."""
        assoc = event.assoc

        def receive_bounded(message: Any) -> None:
            if message is None or isinstance(received_data_set(message), SpoolingDataSet):
                return                                   # None once a message is complete
            if isinstance(message, C_STORE_RQ):
                incoming = self.incoming()
                incoming.write(received_data_set(message).getbuffer())
                spooling = SpoolingDataSet(incoming)
                for keyword in ("AffectedSOPInstanceUID", "AffectedSOPClassUID"):
                    uid = str(message.command_set.get(keyword) or "")
                    if len(uid) > MAX_UID_LENGTH:
                        spooling.command_uids[keyword] = uid
                        setattr(message.command_set, keyword, uid[:MAX_UID_LENGTH])
                replace_received_data_set(message, spooling)
            elif received_bytes(message) > MAX_OTHER_DATA_SET_BYTES:
                log.warning("DICOM association from %s aborted: a %s over %d bytes", assoc.requestor.ae_title,
                            type(message).__name__, MAX_OTHER_DATA_SET_BYTES)
                drop_received(message)
                assoc.abort(block=False)     # we run in the DUL thread: it sends the A-ABORT

        after_each_pdata(assoc, receive_bounded)

    def receive(self, calling: str, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
                data: IncomingDataSet, address: str = "", port: int = 0) -> int | Dataset:
        """Store one received data set; the C-STORE response status (with a comment on failure).
        ``address`` and ``port``: where the association came from."""
        peer = f"{address}:{port}" if address else ""
        status = self._checked_store(calling, sop_class_uid, sop_instance_uid, transfer_syntax, data, address, peer)
        self.context.metrics.instance_stored("accepted" if status == SUCCESS else "refused", data.size)
        return status

    def _checked_store(self, calling: str, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
                       data: IncomingDataSet, address: str, peer: str) -> int | Dataset:
        command_uid = sop_instance_uid.strip()
        if not self.context.directory.allows(calling, "store"):
            log.warning("C-STORE %r from %s refused: not authorised (permission 'store')", command_uid, calling)
            return status_dataset(NOT_AUTHORISED, f"{calling} may not store")
        problem = uid_problem(command_uid, self.leading_zeros)
        if problem:
            log.warning("C-STORE %r from %s refused: Affected SOP Instance UID: %s", command_uid[:80], calling,
                        problem)
            self._uid_refused(calling, peer, f"Affected SOP Instance UID: {problem}")
            return status_dataset(INVALID_SOP_INSTANCE, f"SOP Instance UID: {problem}")
        problem = uid_problem(sop_class_uid.strip(), self.leading_zeros)
        if problem:
            log.warning("C-STORE %s from %s refused: Affected SOP Class UID: %s", command_uid, calling, problem)
            return status_dataset(DOES_NOT_MATCH_SOP_CLASS, f"SOP Class UID: {problem}")
        if data.too_large:
            return self._too_large(command_uid, calling, f"data set of {data.size} bytes")
        if data.failure is not None:
            return self._status(workflow.write_refused(command_uid, calling, data.failure))
        try:
            with data.view() as view:
                header = read_header(view, transfer_syntax, self.max_instance_bytes, self.files.root)
        except TooLarge as exc:
            return self._too_large(command_uid, calling, str(exc))
        except HeaderError as exc:
            log.warning("C-STORE %s from %s: %s", command_uid, calling, exc)
            return status_dataset(CANNOT_UNDERSTAND, str(exc))
        problem, malformed = self._filing_uids_problem(header)
        problem = problem or self._mismatch(header, sop_class_uid.strip(), command_uid)
        if problem:
            log.warning("C-STORE %s from %s refused: %s", command_uid, calling, problem)
            if malformed:
                self._uid_refused(calling, peer, f"C-STORE {command_uid}: {problem}")
            return status_dataset(DOES_NOT_MATCH_SOP_CLASS, problem)
        outcome = self.storage.store_received(header, transfer_syntax, calling, data, self.policy)
        if outcome.result is not None:
            self.context.audit.instance_received(calling, address, header["StudyInstanceUID"],
                                                 str(header.get("PatientID") or ""), sop_class_uid.strip())
        return self._status(outcome)

    def _uid_refused(self, calling: str, peer: str, detail: str) -> None:
        """A UID that is no UID (``../``, 200 characters) is hostile more often than broken: a security
        event (the ATNA trail audits it), besides the log line and the failure status."""
        self.context.security_events.raise_event(SecurityEvent("uid-refused", peer, detail, calling))

    def _too_large(self, uid: str, calling: str, what: str) -> Dataset:
        log.warning("C-STORE %s from %s refused: %s, over dicom.max_instance_bytes (%d)", uid, calling, what,
                    self.max_instance_bytes)
        return status_dataset(OUT_OF_RESOURCES, f"instance larger than {self.max_instance_bytes} bytes")

    @staticmethod
    def _status(outcome: workflow.StoreOutcome) -> int | Dataset:
        if outcome.result is not None:      # stored, replaced, or a duplicate ignored
            return SUCCESS
        return status_dataset(_REFUSAL_STATUS[outcome.refusal], outcome.reason)

    def _filing_uids_problem(self, header: dict[str, Any]) -> tuple[str, bool]:
        """Why the data set's UIDs cannot file it ('' when they can), and whether one is malformed (not
        merely missing)."""
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            if not header.get(keyword):
                return f"{keyword} missing", False
            problem = uid_problem(header[keyword], self.leading_zeros)
            if problem:
                return f"{keyword}: {problem}", True
        return "", False

    @staticmethod
    def _mismatch(header: dict[str, Any], sop_class_uid: str, sop_instance_uid: str) -> str:
        """Why the data set does not fit the command (empty: it fits)."""
        if header["SOPInstanceUID"] != sop_instance_uid:
            return "SOP Instance UID differs from the C-STORE request"
        if header["SOPClassUID"] != sop_class_uid:
            return "SOP Class UID differs from the C-STORE request"
        return ""


class SpoolingDataSet(BytesIO):
    """Stands in for the BytesIO pynetdicom collects a C-STORE data set in (``bound_received_messages``):
    what pynetdicom writes goes to ``incoming``; ``command_uids`` keeps command UIDs as received."""

    def __init__(self, incoming: IncomingDataSet):
        super().__init__()
        self.incoming = incoming
        self.command_uids: dict[str, str] = {}

    def write(self, data: Any) -> int:
        self.incoming.write(data)
        return len(data)


def create(context: DicomContext) -> StorageService:
    return StorageService(context)
