"""The inputs ``make fuzz`` found problems with: tests/fuzz/test_findings.py runs each through its target
in-process, tests/integration/test_fuzz_findings.py sends the same over the wire."""
from __future__ import annotations

from .datasets import keyword_element
from .dicom_bytes import ct_data_set, element

NUL_CHARSET = b"ISO_IR\x00100"                       # header: pydicom's codec lookup raised ValueError
BACKSLASHES = b"\\\\"                                # qr: ModalitiesInStudy of separators only -> "AND ()"
MODE_LIST = "rules:\n  - name: x\n    when: {MSH-3: RIS}\n    mode: []\n"   # rules: unhashable 'mode'
VERTICAL_TAB_REQUEST = (b"POST /api/v1/orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: applicatio\x0b/json\r\n"
                        b"Content-Length: 2\r\n\r\n{}")    # http: ValueError inside twisted.web
EXACT_LIMIT_FRAME_LENGTH = 512                       # mllp: the target's limit; the frame is that long

FINDINGS = {
    "header": b"\x00" + element(0x0008, 0x0005, NUL_CHARSET) + ct_data_set(),
    "qr": b"\x00" + keyword_element("QueryRetrieveLevel", b"STUDY") + keyword_element("ModalitiesInStudy", BACKSLASHES),
    "rules": MODE_LIST.encode(),
    "http": VERTICAL_TAB_REQUEST,
    "mllp": b"\x0b" + b"M" * EXACT_LIMIT_FRAME_LENGTH + b"\x1c\r",
}

