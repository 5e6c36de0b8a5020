"""The time stamp every stored row carries: local time with its UTC offset, millisecond precision."""
from __future__ import annotations

import time

_last_second: tuple[int, str, str] = (-1, "", "")   # (second, "YYYY-MM-DDTHH:MM:SS", "+HH:MM")
_last_stamp: tuple[int, str] = (-1, "")             # (millisecond, its stamp)


def now_iso() -> str:
    """Local time with offset, ms precision.  A message writes several rows within one millisecond,
    and a busy engine stamps hundreds each second: the stamp is built once per millisecond, its date,
    time and offset once per second.  (Each cache is read once: the reactor thread stamps too.)"""
    global _last_second, _last_stamp
    millis = int(time.time() * 1000)
    stamp = _last_stamp
    if stamp[0] == millis:
        return stamp[1]
    second = millis // 1000
    cached = _last_second
    if cached[0] != second:
        local = time.localtime(second)
        offset = local.tm_gmtoff // 60
        sign = "+" if offset >= 0 else "-"
        cached = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", local),
                                 f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}")
    text = f"{cached[1]}.{millis % 1000:03d}{cached[2]}"
    _last_stamp = (millis, text)
    return text
