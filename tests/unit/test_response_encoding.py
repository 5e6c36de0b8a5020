"""The plain-text identifier writer must produce exactly pydicom's bytes, or refuse (NotPlain)."""
from __future__ import annotations

import pytest
from pydicom.charset import python_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from engine.dicom.wire.pending_responses import encode_identifier
from engine.dicom.wire.response_encoding import Element, NotPlain, encode_elements
from engine.dicom.services.worklist import WorklistResponse, _dataset_of


def tag(keyword: str) -> int:
    return tag_for_keyword(keyword)


ASCII_ITEM: list[Element] = [
    (tag("PatientName"), "PN", "DOE^JANE"),
    (tag("PatientID"), "LO", "P1"),                   # even length
    (tag("AccessionNumber"), "SH", "ACC1234"),        # odd: space padded
    (tag("StudyInstanceUID"), "UI", "1.2.3.45"),      # odd UI: NUL padded
    (tag("PatientSex"), "CS", None),                  # zero length
    (tag("OtherPatientIDs"), "LO", ["A1", "B22"]),   # multi-valued
    (tag("ScheduledProcedureStepSequence"), "SQ", [[
        (tag("ScheduledStationAETitle"), "AE", "CT1"),
        (tag("ScheduledProcedureStepStartDate"), "DA", "20250304"),
        (tag("ScheduledProtocolCodeSequence"), "SQ", [
            [(tag("CodeValue"), "SH", "P1"), (tag("CodeMeaning"), "LO", "Protocol one")],
            [(tag("CodeValue"), "SH", "P22")]]),
        (tag("Modality"), "CS", "CT"),                # out of tag order: written sorted
    ]]),
    (tag("ReferencedStudySequence"), "SQ", []),       # empty sequence
    (tag("RequestedProcedureDescription"), "LO", "X" * 63),
]


def pydicom_bytes(elements: list[Element], transfer_syntax) -> bytes:
    """What pydicom writes for the same elements (the Specific Character Set element included)."""
    return encode_identifier(_dataset_of(elements), transfer_syntax)


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_ascii_response_matches_pydicom(transfer_syntax) -> None:
    ours = encode_elements(ASCII_ITEM, not transfer_syntax.is_implicit_VR, "latin_1")
    assert ours == pydicom_bytes(ASCII_ITEM, transfer_syntax)


@pytest.mark.parametrize("charset, name", [("ISO_IR 100", "MÜLLER^JÖRG"), ("ISO_IR 192", "ИВАНОВА^ОЛЬГА"),
                                           ("ISO_IR 192", "山田^太郎"), ("ISO_IR 144", "ИВАНОВА^ОЛЬГА")])
@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_non_ascii_response_matches_pydicom(transfer_syntax, charset: str, name: str) -> None:
    elements = ASCII_ITEM + [(tag("SpecificCharacterSet"), "CS", charset), (tag("PatientComments"), "LT", name + "!")]
    elements[0] = (tag("PatientName"), "PN", name)
    ours = encode_elements(elements, not transfer_syntax.is_implicit_VR, python_encoding[charset])
    assert ours == pydicom_bytes(elements, transfer_syntax)
    assert name.encode(python_encoding[charset]) in ours
    assert WorklistResponse(elements, charset, []).encode(transfer_syntax) == ours


def test_what_the_writer_does_not_handle_is_refused() -> None:
    with pytest.raises(NotPlain):
        encode_elements([(tag("PatientWeight"), "DS", 70.5)], True, "latin_1")      # not a str
    with pytest.raises(NotPlain):
        encode_elements([(tag("PatientName"), "PN", "MÜLLER")], True, "ascii")       # not in the codec
    with pytest.raises(NotPlain):
        encode_elements([(tag("PatientComments"), "LT", "x" * 70000)], True, "latin_1")  # over 2-byte length


def test_refused_responses_are_encoded_by_pydicom() -> None:
    elements = [(tag("PatientWeight"), "DS", "70.5"), (tag("PatientName"), "PN", "A^B")]
    response = WorklistResponse(elements, "", [])
    assert response.encode(ExplicitVRLittleEndian) == pydicom_bytes(elements, ExplicitVRLittleEndian)


# -- the worklist's fast path (PlainResponse) against the general one (WorklistResponse) -------------------
def _general(plan, item, charset: str = "ISO_IR 192"):
    """What the general path answers for the item: _answer + the checks, never the fast path."""
    from engine.dicom.services import worklist as mwl

    values = dict(item.attributes)
    values[mwl.SPS_SEQUENCE] = [item.step]
    elements = mwl._answer(plan.keys, values)
    return mwl.WorklistResponse(elements, "", mwl._lacks_type1(elements))


def _identifier():
    from pydicom.dataset import Dataset

    ds = Dataset()
    for keyword in ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID",
                    "OtherPatientIDs", "PatientWeight"):
        setattr(ds, keyword, None)
    step = Dataset()
    for keyword in ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "Modality", "ScheduledProcedureStepID"):
        setattr(step, keyword, None)
    protocol = Dataset()
    protocol.CodeValue = None
    step.ScheduledProtocolCodeSequence = [protocol]
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _item(**attributes):
    from engine.workflow.worklist import WorklistItem

    top = {"PatientName": "DOE^JANE", "PatientID": "P1", "AccessionNumber": "ACC1234", "StudyInstanceUID": "1.2.3.456",
           "RequestedProcedureID": "RP1", "OtherPatientIDs": ["A1", "B22"]}
    step = {"ScheduledStationAETitle": "CT1", "ScheduledProcedureStepStartDate": "20250304", "Modality": "CT",
            "ScheduledProcedureStepID": "SPS1", "ScheduledProtocolCodeSequence": [{"CodeValue": "P1"}, {"CodeValue": "P22"}]}
    step.update(attributes.pop("step", {}))
    top.update(attributes)
    return WorklistItem(top, step, top["AccessionNumber"])


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_ascii_items_take_the_fast_path_with_the_general_paths_bytes(transfer_syntax) -> None:
    from engine.dicom.services.worklist import PlainResponse, ResponsePlan

    plan = ResponsePlan(_identifier())
    for item in (_item(), _item(AccessionNumber="ACC12", OtherPatientIDs=[]), _item(RequestedProcedureID={"x": 1}),
                 _item(step={"ScheduledProtocolCodeSequence": []})):
        fast = plan.response(item, "ISO_IR 192")
        general = _general(plan, item)
        if general.missing:
            assert not isinstance(fast, PlainResponse) and fast.missing == general.missing
            continue
        assert isinstance(fast, PlainResponse)
        assert fast.encode(transfer_syntax) == general.encode(transfer_syntax) == pydicom_bytes(general.elements,
                                                                                                transfer_syntax)
        assert fast.dataset() == general.dataset()


def test_items_the_fast_path_does_not_handle_take_the_general_one() -> None:
    from engine.dicom.services.worklist import PlainResponse, ResponsePlan

    plan = ResponsePlan(_identifier())
    for item in (_item(PatientName="MÜLLER^JÖRG"), _item(PatientWeight="70.5"), _item(PatientID=""),
                 _item(step={"Modality": ""}), _item(step={"ScheduledProtocolCodeSequence": [{"CodeValue": "Ü"}]})):
        response = plan.response(item, "ISO_IR 192")
        assert not isinstance(response, PlainResponse)
        general = _general(plan, item)
        assert response.missing == general.missing
        if not response.missing and response.charset == "":
            assert response.encode(ExplicitVRLittleEndian) == general.encode(ExplicitVRLittleEndian)
