"""The inputs ``make fuzz`` found problems with: tests/fuzz/test_findings.py runs each through its target
in-process, tests/integration/test_fuzz_findings.py sends the same over the wire."""
from __future__ import annotations

import base64
import zlib

from .datasets import keyword_element
from .dicom_bytes import ct_data_set, element

NUL_CHARSET = b"ISO_IR\x00100"                       # header: pydicom's codec lookup raised ValueError
BACKSLASHES = b"\\\\"                                # qr: ModalitiesInStudy of separators only -> "AND ()"
MODE_LIST = "rules:\n  - name: x\n    when: {MSH-3: RIS}\n    mode: []\n"   # rules: unhashable 'mode'
VERTICAL_TAB_REQUEST = (b"POST /api/v1/orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: applicatio\x0b/json\r\n"
                        b"Content-Length: 2\r\n\r\n{}")    # http: ValueError inside twisted.web
# mpps: an N-CREATE attribute list nested 50 levels deep (as the mpps target produced it, zlib + base64):
# pydicom's writer doubled its error text at each level (gigabytes, minutes) before the nesting limit
DEEP_MPPS = zlib.decompress(base64.b64decode(
    "eNrtlDFPwkAUx1+PYqoR0zg63ScgbdEEt6vSAEZp02Kii/IRHBkZnYwfw5GRkdGR0YWkoyMji9S76z+GhKKGsJh4y+vv/v/37vV6"
    "V042ZXIsMkpV5HRAO0R0FjavE77IKqkEWmRTHQWRMSkrpvS1nPMYPAIPwS/g5eqKB9D7a/QIegu6ANfX+G3o1ho9NXP9zSzSKyv+"
    "Z/gf4R+A+2Zx/Z/YRr6FfALPS8X1JiXsL/QxeFTabP1t85Dh+7Lf9dOD/wb+J3DrK//j23yCf27k/pmR87ux2X4MkN83trOfM0I/"
    "MlpUpj0Z20l43465e+qpmSM4DvUNarBlh+NY1FOvSOddm7g6HBT5XdeW99KSz40wuLvwO4GgB1ZHHUevFOks3xX5EaM4crmgXT2b"
    "uJwqOt+tetVaVSk+U3wVNvzLdvdW9aHYc7wTp+YcCwqYuveyITkEJUx3EiWyfsz2VccdHsVhMw6S1f/CP/9t/gQl45FP"))
EXACT_LIMIT_FRAME_LENGTH = 512                       # mllp: the target's limit; the frame is that long

FINDINGS = {
    "header": b"\x00" + element(0x0008, 0x0005, NUL_CHARSET) + ct_data_set(),
    "qr": b"\x00" + keyword_element("QueryRetrieveLevel", b"STUDY") + keyword_element("ModalitiesInStudy", BACKSLASHES),
    "rules": MODE_LIST.encode(),
    "http": VERTICAL_TAB_REQUEST,
    "mpps": DEEP_MPPS,
    "mllp": b"\x0b" + b"M" * EXACT_LIMIT_FRAME_LENGTH + b"\x1c\r",
}

