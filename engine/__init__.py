"""swf-engine: HL7 v2 / DICOM integration engine for the IHE Radiology Scheduled Workflow."""
