"""The matching-key forms of DICOM values that the store keeps beside them (SWF.md 5.1, 5.8): a PN
upper-cased and accent-folded, a date and time as one string whose order is time order.  Used when
orders, patients and instances are written and when a query key is compared with them."""
from __future__ import annotations

import unicodedata


# Letters whose diacritic is not a combining mark (NFKD leaves them alone): fold them by hand.
_STROKE_LETTERS = str.maketrans("ØøŁłĐđĦħ", "OoLlDdHh")


def normalise_name(pn: str) -> str:
    """Upper-cased, accent-folded alphabetic group of a PN: the column PN matching compares."""
    alphabetic = pn.split("=")[0].rstrip("^")
    if alphabetic.isascii():
        return alphabetic.upper()  # nothing to fold: NFKD leaves ASCII as it is
    folded = unicodedata.normalize("NFKD", alphabetic.translate(_STROKE_LETTERS))
    return "".join(ch for ch in folded if not unicodedata.combining(ch)).upper()


def sortable_datetime(date: str, time: str) -> str:
    """``YYYYMMDDHHMMSS.ffffff`` (time padded with zeros) so that string order is time order."""
    if not date:
        return ""
    whole, _, fraction = time.partition(".")
    return f"{date}{whole.ljust(6, '0')}.{fraction.ljust(6, '0')[:6]}"
