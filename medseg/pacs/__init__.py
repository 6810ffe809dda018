"""PACS input and output: DICOMweb (DICOM PS3.18) and DIMSE (DICOM PS3.4/PS3.7) clients.

- :mod:`medseg.pacs.settings`: :class:`~medseg.pacs.settings.PacsSettings` from a config file
  and ``MEDSEG_PACS_*`` variables;
- :mod:`medseg.pacs.address`: ``dicomweb://`` and ``dimse://`` addresses with their query;
- :mod:`medseg.pacs.dicomweb`, :mod:`medseg.pacs.dimse`: the two clients
  (:func:`medseg.pacs.connect.connect` picks one), with retries and back-off;
- :mod:`medseg.pacs.workflow`: pull, predict, validate and push, study by study.

Docs: ``docs/pacs.md``.
"""
