"""A client by protocol name: ``dicomweb`` (DICOM PS3.18) or ``dimse`` (DICOM PS3.7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medseg.pacs.client import PacsClient
    from medseg.pacs.settings import PacsSettings


def connect(settings: PacsSettings, protocol: str) -> PacsClient:
    """A client of ``protocol`` (``dicomweb`` or ``dimse``) for ``settings``.

    Raises:
        ConfigError: the settings lack what the protocol needs (URL, or host and port).
        MissingDependencyError: ``dicomweb-client``/``pynetdicom`` is not installed.
    """
    from medseg.errors import ConfigError

    if protocol == "dicomweb":
        from medseg.pacs.dicomweb import DicomwebClient

        return DicomwebClient(settings)
    if protocol == "dimse":
        from medseg.pacs.dimse import DimseClient

        return DimseClient(settings)
    raise ConfigError(f"unknown PACS protocol {protocol!r}", hint="use dicomweb or dimse")
