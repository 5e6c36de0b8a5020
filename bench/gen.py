"""Synthetic inputs of the benchmarks, all invented and reproducible (same N and seed -> same data).

* ``make_items(n)``: N scheduled worklist items: patients (a patient may have several orders), stations,
  start dates/times, accession numbers, procedures.  The same items become OMI^O23 messages for the engine
  (``omi_message``: the station AE title travels in IPC-9, as a RIS that chose the room sends it, so the
  shipped routes keep it) and ``.wl`` files for DCMTK wlmscpfs / Orthanc (``write_worklist_files``).
* ``orm_message(seq)``: an ORM^O01 v2.3.1 new order (the HL7 ingest and loop benchmarks).
* ``write_images``: CT-like (512x512x16 bit, ~0.5 MB) and large CR-like (2048x1280x16 bit, ~5 MB) Part 10 files.

The .wl files are written by a small Explicit VR Little Endian encoder below (pydicom's writer costs
~1 ms a file; 100,000 items would take minutes); one file is read back with pydicom as a check.
"""
from __future__ import annotations

import array
import datetime as dt
import fnmatch
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAMILY = ["SMITH", "JOHNSON", "MARTIN", "GARCIA", "MULLER", "DUBOIS", "ROSSI", "NOVAK", "KOWALSKI", "NGUYEN",
          "TANAKA", "OKAFOR", "SILVA", "JANSEN", "LARSEN", "MORENO", "WALKER", "HUGHES", "PETERS", "BAKER",
          "FISCHER", "LAMBERT", "COSTA", "BERG", "SMITHERS", "JOHANSSON", "MARTINEZ", "GARNER", "WEBER", "KING",
          "ALVAREZ", "BECKER", "CARTER", "DIAZ", "EVANS", "FOSTER", "GRAHAM", "HOFFMANN", "IVANOV", "KELLY"]
GIVEN = ["JOHN", "PAUL", "AHMED", "LUCAS", "MATEO", "HIROSHI", "OLIVER", "PIOTR", "JAN", "LEO",
         "MARY", "ANNA", "SOFIA", "FATIMA", "EMMA", "YUKI", "CHIAMAKA", "LAURA", "INGRID", "ZOE"]
PROCEDURES = {
    "CT": [("CTHEADNC", "CT head without contrast"), ("CTCHESTC", "CT chest with contrast"),
           ("CTABDPEL", "CT abdomen and pelvis")],
    "MR": [("MRBRAIN", "MR brain"), ("MRKNEEL", "MR knee left"), ("MRLSPINE", "MR lumbar spine")],
    "US": [("USABD", "US abdomen complete"), ("USTHYR", "US thyroid")],
    "CR": [("XRCHEST2", "XR chest two views"), ("XRHANDR", "XR hand right")],
}
STATION_MODALITIES = ["CT", "MR", "US", "CR", "CT", "US", "CR", "MR", "CT"]
PRIORITIES = [("R", "ROUTINE")] * 7 + [("A", "HIGH")] * 2 + [("S", "STAT")]
START = dt.date(2025, 3, 1)
ISSUER = "BENCHHOSP"


@dataclass(frozen=True)
class Item:
    seq: int
    accession: str
    rp_id: str
    sps_id: str
    study_uid: str
    patient_id: str
    patient_name: str        # DICOM PN: FAMILY^GIVEN^MIDDLE
    birth_date: str
    sex: str
    modality: str
    station_ae: str
    station_name: str
    location: str
    date: str                # YYYYMMDD
    time: str                # HHMMSS
    code: str
    description: str
    priority: tuple[str, str]


def layout(n: int) -> tuple[int, int]:
    """(days, stations) for N items: ~4-10 items per station and day, as a real department schedules.

    1,000 items: 9 stations over 30 days; 10,000: 17 over 60; 100,000: 111 over 90 (an enterprise)."""
    days = 30 if n <= 2000 else 60 if n <= 20000 else 90
    return days, max(9, round(n / (days * 10)))


def make_items(n: int, seed: int = 1) -> list[Item]:
    rng = random.Random(seed)
    days, station_count = layout(n)
    stations = []
    for i in range(station_count):
        modality = STATION_MODALITIES[i % len(STATION_MODALITIES)]
        stations.append((modality, f"{modality}{i + 1:03d}", f"{modality}-ROOM-{i + 1:03d}", f"RAD {modality}{i + 1:03d}"))
    patients = []
    for i in range(max(1, n * 2 // 3)):
        sex = rng.choice("MMFFO")
        name = f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}^{rng.choice('ABJKMT')}"
        birth = START - dt.timedelta(days=rng.randrange(365, 90 * 365))
        patients.append((f"MRN{1000000 + i:07d}", name, birth.strftime("%Y%m%d"), sex))
    items = []
    for seq in range(1, n + 1):
        patient = rng.choice(patients)
        modality, station_ae, station_name, location = rng.choice(stations)
        code, description = rng.choice(PROCEDURES[modality])
        day = START + dt.timedelta(days=rng.randrange(days))
        minutes = 7 * 60 + 15 * rng.randrange(48)
        items.append(Item(seq, f"ACC{seq:08d}", f"RP{seq:08d}", f"SPS{seq:08d}", f"2.25.{rng.getrandbits(120)}",
                          patient[0], patient[1], patient[2], patient[3], modality, station_ae, station_name,
                          location, day.strftime("%Y%m%d"), f"{minutes // 60:02d}{minutes % 60:02d}00", code,
                          description, rng.choice(PRIORITIES)))
    return items


@dataclass
class Query:
    """One worklist query: its matching keys and the accession numbers it must return."""

    name: str
    top: dict[str, str]
    step: dict[str, str]
    expected: set[str]
    kind: str                # selective | wildcard | broad


def make_queries(items: list[Item]) -> list[Query]:
    first = items[0]
    by_station_day = {i.accession for i in items if i.station_ae == first.station_ae and i.date == first.date}
    middle = items[len(items) // 2]
    # the patient-name pattern whose match count is closest to ~300 ("hundreds" at every N)
    candidates = set()
    for item in items[:200]:
        family, given = item.patient_name.split("^")[:2]
        candidates.update({f"{family[:1]}*", f"{family[:2]}*", f"{family}*", f"{family}^{given}*"})
    counts = {p: sum(1 for i in items if fnmatch.fnmatchcase(i.patient_name, p)) for p in sorted(candidates)}
    pattern = min(counts, key=lambda p: (abs(counts[p] - 300), p))
    return [
        Query(f"station {first.station_ae} + date {first.date}", {},
              {"ScheduledStationAETitle": first.station_ae, "ScheduledProcedureStepStartDate": first.date},
              by_station_day, "selective"),
        Query(f"accession {middle.accession}", {"AccessionNumber": middle.accession}, {}, {middle.accession},
              "selective"),
        Query(f"patient name {pattern}", {"PatientName": pattern}, {},
              {i.accession for i in items if fnmatch.fnmatchcase(i.patient_name, pattern)}, "wildcard"),
        Query("broad: all items", {}, {}, {i.accession for i in items}, "broad"),
    ]


# -- HL7 ---------------------------------------------------------------------------------------------------
def segment(name: str, fields: dict[int, str]) -> str:
    """A segment from {field number: value}; MSH counts MSH-1 as the separator itself."""
    count = max(fields) if fields else 0
    values = [fields.get(i, "") for i in range(1, count + 1)]
    if name == "MSH":
        return "MSH|" + "|".join(values[1:])
    return "|".join([name, *values])


def omi_message(item: Item, control_prefix: str = "BWL") -> bytes:
    """RAD-4 style OMI^O23 (v2.5.1) scheduling the item on its station (IPC-9)."""
    family, given, middle = item.patient_name.split("^")
    code = f"{item.code}^{item.description}^99BENCH"
    segments = [
        segment("MSH", {2: "^~\\&", 3: "RIS", 4: ISSUER, 5: "SWF_ENGINE", 6: "RADIOLOGY", 7: "20250228120000",
                        9: "OMI^O23^OMI_O23", 10: f"{control_prefix}{item.seq:09d}", 11: "P", 12: "2.5.1"}),
        segment("PID", {1: "1", 3: f"{item.patient_id}^^^{ISSUER}^MR", 5: f"{family}^{given}^{middle}",
                        7: item.birth_date, 8: item.sex}),
        segment("PV1", {1: "1", 2: "O", 3: f"RAD^^^{ISSUER}"}),
        segment("ORC", {1: "NW", 2: f"PL{item.seq:08d}^RIS", 3: f"FI{item.seq:08d}^RIS", 5: "SC",
                        9: "20250228120000"}),
        segment("TQ1", {1: "1", 7: f"{item.date}{item.time}", 9: f"{item.priority[0]}^^HL70078"}),
        segment("OBR", {1: "1", 2: f"PL{item.seq:08d}^RIS", 3: f"FI{item.seq:08d}^RIS", 4: code, 24: item.modality}),
        segment("IPC", {1: item.accession, 2: item.rp_id, 3: item.study_uid, 4: item.sps_id,
                        5: f"{item.modality}^{item.modality}^DCM", 6: code, 7: item.station_name, 8: item.location,
                        9: item.station_ae}),
    ]
    return "\r".join(segments).encode("ascii")


ORM_PROCEDURES = [("CT", "CTHEADNC", "CT head without contrast"), ("CT", "CTCHESTC", "CT chest with contrast"),
                  ("MR", "MRBRAIN", "MR brain"), ("US", "USABD", "US abdomen complete"),
                  ("CR", "XRCHEST2", "XR chest two views")]


def orm_message(seq: int, prefix: str = "B", modality: str | None = None) -> tuple[bytes, str, str]:
    """ORM^O01 v2.3.1 new order (RAD-2, broker mode) -> (message, control ID, accession number).

    ``prefix`` keeps control IDs, accessions and UIDs of different runs apart (every message is a new order)."""
    rng = random.Random(f"{prefix}{seq}")
    choices = [p for p in ORM_PROCEDURES if modality is None or p[0] == modality]
    mod, code, text = rng.choice(choices)
    control_id, accession = f"{prefix}M{seq:09d}", f"{prefix}A{seq:09d}"
    if len(accession) > 16:
        raise ValueError(f"prefix {prefix!r} too long: accession numbers have at most 16 characters")
    when = (START + dt.timedelta(days=rng.randrange(30))).strftime("%Y%m%d") + f"{7 + rng.randrange(12):02d}1500"
    doctor = "1234^ROSS^DOUG^^^DR"
    segments = [
        segment("MSH", {2: "^~\\&", 3: "RIS", 4: ISSUER, 5: "SWF_ENGINE", 6: "RADIOLOGY", 7: "20250301080000",
                        9: "ORM^O01", 10: control_id, 11: "P", 12: "2.3.1", 18: "8859/1"}),
        segment("PID", {1: "1", 3: f"MRN{rng.randrange(10 ** 7):07d}^^^{ISSUER}^MR",
                        5: f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}^{rng.choice('ABJ')}",
                        7: f"{rng.randrange(1930, 2020)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
                        8: rng.choice("MF"), 11: f"{rng.randrange(1, 200)} HIGH ST^^SPRINGFIELD^^12345^USA"}),
        segment("PV1", {1: "1", 2: "O", 3: f"RAD^^^{ISSUER}", 8: doctor, 19: f"V{rng.randrange(10 ** 8):08d}"}),
        segment("ORC", {1: "NW", 2: f"{prefix}P{seq:09d}", 3: f"{prefix}F{seq:09d}", 5: "SC",
                        7: f"1^^^{when}^^R", 9: "20250301080000", 10: "CLERK^ALEX", 12: doctor}),
        segment("OBR", {1: "1", 2: f"{prefix}P{seq:09d}", 3: f"{prefix}F{seq:09d}", 4: f"{code}^{text}^99BENCH",
                        16: doctor, 18: accession, 19: f"{prefix}R{seq:09d}", 20: f"{prefix}S{seq:09d}", 24: mod,
                        27: f"1^^^{when}^^R"}),
        segment("ZDS", {1: f"2.25.{rng.getrandbits(120)}^RIS^Application^DICOM"}),
    ]
    return "\r".join(segments).encode("latin-1"), control_id, accession


# -- a minimal DICOM writer for .wl files ------------------------------------------------------------------
_LONG_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UC", "UR", "UT", "UN"}


def _element(tag: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in _LONG_VRS:
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def encode_dataset(values: dict[str, Any]) -> bytes:
    """Keyword -> str / list[dict] (sequence) as Explicit VR Little Endian, elements in tag order."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    encoded = []
    for keyword, value in values.items():
        tag = tag_for_keyword(keyword)
        vr = dictionary_VR(tag)
        if vr == "SQ":
            body = b""
            for item in value:
                content = encode_dataset(item)
                body += struct.pack("<HHI", 0xFFFE, 0xE000, len(content)) + content
            encoded.append((tag, _element(tag, vr, body)))
        else:
            encoded.append((tag, _element(tag, vr, str(value).encode("latin-1"))))
    return b"".join(data for _tag, data in sorted(encoded))


def wl_dataset(item: Item) -> dict[str, Any]:
    code = {"CodeValue": item.code, "CodingSchemeDesignator": "99BENCH", "CodeMeaning": item.description}
    return {
        "SpecificCharacterSet": "ISO_IR 100",
        "AccessionNumber": item.accession,
        "ReferringPhysicianName": "",
        "ReferencedStudySequence": [],       # type 2: present and empty (wlmscpfs warns otherwise)
        "ReferencedPatientSequence": [],
        "PatientName": item.patient_name,
        "PatientID": item.patient_id,
        "IssuerOfPatientID": ISSUER,
        "PatientBirthDate": item.birth_date,
        "PatientSex": item.sex,
        "StudyInstanceUID": item.study_uid,
        "RequestingPhysician": "",
        "RequestedProcedureDescription": item.description,
        "RequestedProcedureCodeSequence": [code],
        "RequestedProcedureID": item.rp_id,
        "RequestedProcedurePriority": item.priority[1],
        "ScheduledProcedureStepSequence": [{
            "Modality": item.modality,
            "ScheduledStationAETitle": item.station_ae,
            "ScheduledProcedureStepStartDate": item.date,
            "ScheduledProcedureStepStartTime": item.time,
            "ScheduledPerformingPhysicianName": "",
            "ScheduledProcedureStepDescription": item.description,
            "ScheduledProtocolCodeSequence": [code],
            "ScheduledProcedureStepID": item.sps_id,
            "ScheduledStationName": item.station_name,
            "ScheduledProcedureStepLocation": item.location,
            "ScheduledProcedureStepStatus": "SCHEDULED",
        }],
    }


def part10(dataset: bytes, sop_class: str, sop_instance: str) -> bytes:
    meta = (_element(0x00020001, "OB", b"\x00\x01") + _element(0x00020002, "UI", sop_class.encode())
            + _element(0x00020003, "UI", sop_instance.encode()) + _element(0x00020010, "UI", b"1.2.840.10008.1.2.1")
            + _element(0x00020012, "UI", b"1.2.826.0.1.3680043.9.7433.1.1"))
    return b"\x00" * 128 + b"DICM" + _element(0x00020000, "UL", struct.pack("<I", len(meta))) + meta + dataset


def write_worklist_files(items: list[Item], folder: Path) -> None:
    """``folder/lockfile`` + one ``.wl`` file per item (the layout wlmscpfs wants; Orthanc reads the same)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.wl"):
        old.unlink()
    (folder / "lockfile").touch()
    for item in items:
        data = part10(encode_dataset(wl_dataset(item)), "1.2.840.10008.5.1.4.31", f"{item.study_uid}.9")
        (folder / f"item-{item.seq:06d}.wl").write_bytes(data)
    from pydicom import dcmread   # the encoder's output must read back as what it was given

    first = dcmread(folder / f"item-{items[0].seq:06d}.wl")
    sps = first.ScheduledProcedureStepSequence[0]
    if (first.AccessionNumber, str(first.PatientName), sps.ScheduledStationAETitle, sps.ScheduledProcedureStepID) != (
            items[0].accession, items[0].patient_name, items[0].station_ae, items[0].sps_id):
        raise RuntimeError(f"worklist file writer check failed on {folder}")


# -- images --------------------------------------------------------------------------------------------
IMAGE_KINDS = {  # kind -> (SOP class, modality, rows, columns)
    "ct": ("1.2.840.10008.5.1.4.1.1.2", "CT", 512, 512),
    "large": ("1.2.840.10008.5.1.4.1.1.1", "CR", 1280, 2048),
}


def _phantom(rows: int, cols: int, seed: int) -> bytes:
    """A water disk in air with noise, 12 bits stored in 16: compresses like a real image, not like noise."""
    rng = random.Random(seed)
    noise = [rng.randrange(-20, 20) for _ in range(4096)]
    radius2 = (0.4 * min(rows, cols)) ** 2
    pixels = array.array("H")
    for y in range(rows):
        dy2 = (y - rows / 2) ** 2
        for x in range(cols):
            base = 1064 if dy2 + (x - cols / 2) ** 2 < radius2 else 24
            pixels.append(max(0, base + noise[(x * 31 + y * 17) % 4096]))
    return pixels.tobytes()


def write_images(kind: str, count: int, folder: Path, seed: int = 7) -> None:
    """``count`` Part 10 files of one study/series; pixel rows rolled per instance so each file differs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sop_class, modality, rows, cols = IMAGE_KINDS[kind]
    rng = random.Random(seed)
    uid = lambda: f"2.25.{rng.getrandbits(120)}"  # noqa: E731
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.dcm"):
        old.unlink()
    study, series = uid(), uid()
    base = _phantom(rows, cols, seed)
    row_bytes = cols * 2
    for i in range(1, count + 1):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = uid()
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20250301"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
        ds.AccessionNumber = f"IMG{seed:04d}"
        ds.Modality = modality
        ds.Manufacturer = "SWF-BENCH"
        ds.ReferringPhysicianName = ""
        ds.PatientName = "PHANTOM^BENCH"
        ds.PatientID = "MRN9000001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = i
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelSpacing = [0.5, 0.5]
        shift = (i * 7 % rows) * row_bytes
        ds.PixelData = base[shift:] + base[:shift]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"{kind}-{i:05d}.dcm", enforce_file_format=True)
