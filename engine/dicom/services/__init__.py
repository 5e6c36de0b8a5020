"""One module per DICOM service; each defines ``create(context) -> Service`` (see engine/dicom/ae.py)."""
