"""The UID syntax check every DICOM path applies before a UID names a file, a row or a condition."""
import pytest

from engine.domain.uid import uid_problem


@pytest.mark.parametrize("value", ["1.2.840.10008.5.1.4.1.1.2", "2.25.1234567890", "0", "1.0.2", "9" * 64])
def test_uids_pass(value: str) -> None:
    assert uid_problem(value) == ""


@pytest.mark.parametrize("value", ["1.2.03.4", "01.2", "1.2.00"])
def test_a_leading_zero_is_refused_unless_the_site_tolerates_it(value: str) -> None:
    assert uid_problem(value) == f"UID {value!r} has a component with a leading zero (PS3.5 9.1)"
    assert uid_problem(value, leading_zeros=True) == ""


@pytest.mark.parametrize("value, reason", [
    ("", "empty UID"), ("1" * 65, "UID of 65 characters (at most 64)"), ("1..2", "malformed UID '1..2'"),
    ("1.2.", "malformed UID '1.2.'"), ("../etc", "malformed UID '../etc'"), ("1.2.\xe9", "malformed UID '1.2.\xe9'"),
])
def test_non_uids_are_refused_with_their_reason(value: str, reason: str) -> None:
    assert uid_problem(value) == reason
