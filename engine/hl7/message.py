"""Fast, correct read access to HL7 v2 messages.

The hot path (journal, routing, mapping) needs a few dozen fields per message; building a full hl7apy
tree costs ~9 ms per ORM.  This module splits the message once into segments and fields and decodes
components, escape sequences and character sets only for the fields that are actually read.
hl7apy stays in use where it earns its cost (structural validation on demand, see ``validate.py``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SEGMENT_SEPARATOR = "\r"
_NEWLINES = re.compile(r"\r\n|\n|\r")

# MSH-18 (HL7 table 0211) -> Python codec.  Unknown labels fall back to the partner default.
HL7_CHARSET_CODECS: dict[str, str] = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UTF-8": "utf-8",
    "ISO IR14": "shift_jis",
    "ISO IR87": "iso2022_jp",
    "KS X 1001": "euc_kr",
    "GB 18030-2000": "gb18030",
}


class HL7ParseError(ValueError):
    """The bytes are not an HL7 v2 message this engine can read (no or broken MSH)."""

    def __init__(self, reason: str, segment: str = "MSH", field: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.segment = segment
        self.field = field


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


@dataclass(frozen=True)
class FieldPath:
    """A parsed path such as ``PID-3.4.1`` or ``PID-3[2].1`` (repetitions counted from 1)."""

    segment: str
    field: int
    repetition: int = 1
    component: int = 0  # 0 = whole field / repetition
    subcomponent: int = 0

    _PATTERN = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d+)(?:\[(\d+)\])?(?:\.(\d+))?(?:\.(\d+))?$")

    @classmethod
    def parse(cls, text: str) -> "FieldPath":
        match = cls._PATTERN.match(text.strip())
        if not match:
            raise ValueError(f"not a field path: {text!r} (expected e.g. PID-3, PID-3.1, PID-3[2].4.1)")
        seg, fld, rep, comp, sub = match.groups()
        if any(part is not None and int(part) == 0 for part in (fld, rep, comp, sub)):
            raise ValueError(f"not a field path: {text!r} (field, repetition, component and subcomponent count from 1)")
        return cls(seg, int(fld), int(rep or 1), int(comp or 0), int(sub or 0))

    def __str__(self) -> str:
        text = f"{self.segment}-{self.field}"
        if self.repetition != 1:
            text += f"[{self.repetition}]"
        if self.component:
            text += f".{self.component}"
        if self.subcomponent:
            text += f".{self.subcomponent}"
        return text


_PATH_CACHE: dict[str, FieldPath] = {}


def field_path(text: str) -> FieldPath:
    path = _PATH_CACHE.get(text)
    if path is None:
        path = _PATH_CACHE[text] = FieldPath.parse(text)
    return path


def normalise_segments(text: str) -> str:
    """Turn ``\\n`` / ``\\r\\n`` segment ends into ``\\r`` and strip blank lines and trailing CRs."""
    # Without a newline only CR separates segments: str.split does what the regular expression would.
    lines = text.split(SEGMENT_SEPARATOR) if "\n" not in text else _NEWLINES.split(text)
    return SEGMENT_SEPARATOR.join([line for line in lines if line and not line.isspace()])


def _read_msh18(raw: bytes) -> str:
    """MSH-18 read from the raw bytes before the message charset is known (MSH is ASCII)."""
    head = raw.lstrip(b"\x0b\r\n").split(b"\r", 1)[0].split(b"\n", 1)[0]
    if len(head) < 8 or not head.startswith(b"MSH"):
        return ""
    sep, component, repetition = head[3:4], head[4:5], head[5:6]
    fields = head.split(sep)
    if len(fields) <= 17:
        return ""
    # fields[0] = 'MSH', fields[1] = MSH-2, so MSH-n = fields[n-1]; first repetition, first component
    label = fields[17].split(repetition)[0].split(component)[0]
    return label.decode("ascii", "replace").strip()


def decode_bytes(raw: bytes, default_charset: str = "ascii") -> tuple[str, str]:
    """Decode raw message bytes per MSH-18; returns (text, codec used).

    An absent or ``ASCII`` MSH-18 uses the partner's ``default_charset`` (many RIS send Latin-1 without
    saying so).  Bytes that do not decode are replaced, never dropped, so the message stays readable.
    """
    label = _read_msh18(raw).upper()
    codec = HL7_CHARSET_CODECS.get(label) if label and label != "ASCII" else None
    codec = codec or default_charset
    try:
        return raw.decode(codec), codec
    except UnicodeDecodeError:
        # A UTF-8 default that does not fit is most often Latin-1 in disguise.
        fallback = "latin-1" if codec in ("utf-8", "ascii") else codec
        return raw.decode(fallback, errors="replace"), fallback


def _usable_delimiter(char: str) -> bool:
    """Whether ``char`` can separate fields or components: not a letter or digit (which data holds), not a
    control character or blank (CR ends segments, 0x0B / 0x1C frame MLLP: an ACK echoing them is unreadable)."""
    return char.isprintable() and not char.isalnum() and not char.isspace()


class Message:
    """One HL7 v2 message, split into segments and fields; components decoded on access."""

    __slots__ = ("text", "delimiters", "segments", "_by_name", "codec", "_header_cache")

    def __init__(self, text: str, codec: str = "utf-8"):
        self.codec = codec  # charset the bytes were decoded with; hex escapes decode in it too
        self._header_cache: tuple[str, str, str, str] | None = None
        text = normalise_segments(text.lstrip("\x0b").rstrip("\x1c\r\n"))
        if not text.startswith("MSH"):
            raise HL7ParseError("message does not start with an MSH segment", "MSH", 0)
        if len(text) < 8:
            raise HL7ParseError("MSH segment too short to hold the delimiters", "MSH", 2)
        field_sep = text[3]
        enc = text[4:8]
        if len(set(enc + field_sep)) != 5 or not all(_usable_delimiter(c) for c in enc + field_sep):
            raise HL7ParseError(f"MSH-1/MSH-2 delimiters unusable: {text[3:8]!r}", "MSH", 2)
        self.delimiters = Delimiters(field_sep, enc[0], enc[1], enc[2], enc[3])
        self.text = text
        self.segments: list[list[str]] = []
        self._by_name: dict[str, list[int]] = {}
        for index, line in enumerate(text.split(SEGMENT_SEPARATOR)):
            fields = line.split(field_sep)
            name = fields[0].strip()
            if name == "MSH":
                # MSH-1 is the field separator itself: shift so that fields[n] is MSH-n.
                fields = ["MSH", field_sep] + fields[1:]
            self.segments.append(fields)
            self._by_name.setdefault(name, []).append(index)

    # -- navigation -------------------------------------------------------------------------
    def segment_names(self) -> list[str]:
        return [fields[0] for fields in self.segments]

    def segment_indexes(self, name: str) -> list[int]:
        return self._by_name.get(name, [])

    def has_segment(self, name: str) -> bool:
        return name in self._by_name

    def raw_field(self, segment_index: int, field: int) -> str:
        fields = self.segments[segment_index]
        return fields[field] if field < len(fields) else ""

    def get(self, path: str | FieldPath, segment_index: int | None = None) -> str:
        """Decoded value at ``path`` (first occurrence of the segment unless ``segment_index``)."""
        fp = field_path(path) if isinstance(path, str) else path
        if segment_index is None:
            indexes = self._by_name.get(fp.segment)
            if not indexes:
                return ""
            segment_index = indexes[0]
        return self.value_in(segment_index, fp)

    def value_in(self, segment_index: int, fp: FieldPath) -> str:
        raw = self.raw_field(segment_index, fp.field)
        if not raw:
            return ""
        d = self.delimiters
        if fp.segment == "MSH" and fp.field in (1, 2):
            return raw
        reps = raw.split(d.repetition)
        if fp.repetition > len(reps):
            return ""
        value = reps[fp.repetition - 1]
        if fp.component:
            comps = value.split(d.component)
            value = comps[fp.component - 1] if fp.component <= len(comps) else ""
            if fp.subcomponent:
                subs = value.split(d.subcomponent)
                value = subs[fp.subcomponent - 1] if fp.subcomponent <= len(subs) else ""
            elif d.subcomponent in value:
                value = value.split(d.subcomponent)[0]
        return self.unescape(value) if d.escape in value else value

    def repetitions(self, path: str, segment_index: int | None = None) -> list[str]:
        """Raw (still escaped) repetitions of a field; use ``components`` to split one."""
        fp = field_path(path)
        if segment_index is None:
            indexes = self._by_name.get(fp.segment)
            if not indexes:
                return []
            segment_index = indexes[0]
        return self.field_repetitions(segment_index, fp.field)

    def field_repetitions(self, segment_index: int, field: int) -> list[str]:
        """Raw repetitions of field number ``field`` in one segment (no path to parse)."""
        raw = self.raw_field(segment_index, field)
        return raw.split(self.delimiters.repetition) if raw else []

    def components(self, raw_value: str) -> list[str]:
        """Decoded components of one raw repetition (first subcomponent each)."""
        d = self.delimiters
        if d.escape not in raw_value and d.subcomponent not in raw_value:
            return raw_value.split(d.component)   # nothing to decode
        return [self.unescape(comp.split(d.subcomponent)[0]) for comp in raw_value.split(d.component)]

    def subcomponents(self, raw_component: str) -> list[str]:
        return [self.unescape(sub) for sub in raw_component.split(self.delimiters.subcomponent)]

    def set(self, path: str, value: str, segment_index: int | None = None) -> None:
        """Write ``value`` (escaped) at ``path``: in one occurrence of the segment, or in every one."""
        fp = field_path(path)
        indexes = [segment_index] if segment_index is not None else self._by_name.get(fp.segment, [])
        encoded = escape(value, self.delimiters)
        for index in indexes:
            self._write(index, fp, encoded)

    def _write(self, index: int, fp: FieldPath, encoded: str) -> None:
        d = self.delimiters
        fields = self.segments[index]
        fields.extend([""] * (fp.field + 1 - len(fields)))
        reps = fields[fp.field].split(d.repetition) if fields[fp.field] else [""]
        reps.extend([""] * (fp.repetition - len(reps)))
        if not fp.component:
            reps[fp.repetition - 1] = encoded
        else:
            comps = reps[fp.repetition - 1].split(d.component)
            comps.extend([""] * (fp.component - len(comps)))
            if fp.subcomponent:
                subs = comps[fp.component - 1].split(d.subcomponent)
                subs.extend([""] * (fp.subcomponent - len(subs)))
                subs[fp.subcomponent - 1] = encoded
                comps[fp.component - 1] = d.subcomponent.join(subs)
            else:
                comps[fp.component - 1] = encoded
            reps[fp.repetition - 1] = d.component.join(comps).rstrip(d.component)
        fields[fp.field] = d.repetition.join(reps)

    # -- escapes ----------------------------------------------------------------------------
    def unescape(self, value: str) -> str:
        """Decode ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh..\\``; unknown escapes are kept verbatim."""
        d = self.delimiters
        esc = d.escape
        if esc not in value:
            return value
        out: list[str] = []
        pos = 0
        while True:
            start = value.find(esc, pos)
            if start < 0:
                out.append(value[pos:])
                break
            end = value.find(esc, start + 1)
            if end < 0:
                out.append(value[pos:])
                break
            out.append(value[pos:start])
            code = value[start + 1:end]
            replacement = {
                "F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape,
                ".br": "\r\n",
            }.get(code)
            if replacement is None and code[:1] == "X" and len(code) > 1:
                replacement = _hex_escape(code[1:], self.codec)
            if replacement is None and code[:1] in ("H", "N"):
                replacement = ""  # highlighting on/off: formatting only
            out.append(replacement if replacement is not None else value[start:end + 1])
            pos = end + 1
        return "".join(out)

    # -- header shortcuts -------------------------------------------------------------------
    def _header(self) -> tuple[str, str, str, str]:
        """(MSH-10, MSH-12.1, MSH-9.1, MSH-9.2), read once: rules and logs ask for them many times."""
        header = self._header_cache
        if header is None:
            header = self._header_cache = (self.get("MSH-10"), self.get("MSH-12.1"), self.get("MSH-9.1"),
                                           self.get("MSH-9.2"))
        return header

    @property
    def control_id(self) -> str:
        return self._header()[0]

    @property
    def version(self) -> str:
        return self._header()[1]

    @property
    def message_type(self) -> str:
        return self._header()[2]

    @property
    def trigger_event(self) -> str:
        return self._header()[3]

    @property
    def message_code(self) -> str:
        """``ORM^O01`` style code used by rules and logs."""
        _, _, message_type, trigger = self._header()
        return f"{message_type}^{trigger}" if trigger else message_type


def _hex_escape(hex_digits: str, codec: str) -> str | None:
    try:
        return bytes.fromhex(hex_digits).decode(codec)
    except (ValueError, LookupError):
        return None


def escape(value: str, delimiters: Delimiters = Delimiters()) -> str:
    """Escape a text value for writing into an HL7 field."""
    d = delimiters
    if not any(c in value for c in (d.field, d.component, d.repetition, d.escape, d.subcomponent, "\r", "\n")):
        return value
    value = value.replace(d.escape, f"{d.escape}E{d.escape}")
    value = value.replace(d.field, f"{d.escape}F{d.escape}").replace(d.component, f"{d.escape}S{d.escape}")
    value = value.replace(d.subcomponent, f"{d.escape}T{d.escape}").replace(d.repetition, f"{d.escape}R{d.escape}")
    return value.replace("\r\n", f"{d.escape}.br{d.escape}").replace("\n", f"{d.escape}.br{d.escape}").replace(
        "\r", f"{d.escape}.br{d.escape}")


def parse(raw: bytes, default_charset: str = "ascii") -> Message:
    text, codec = decode_bytes(raw, default_charset)
    return Message(text, codec)
