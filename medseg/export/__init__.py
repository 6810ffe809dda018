"""Clinical export and import: DICOM SEG and RTSTRUCT on the source series."""
