"""What every PACS client offers, whatever the protocol, and the shared retry policy.

Both clients (:mod:`medseg.pacs.dicomweb`, :mod:`medseg.pacs.dimse`) implement
:class:`PacsClient`: a study-level search, a series-level search, the retrieval of one series
into a folder and the storage of files. Transient failures (a refused or dropped connection, a
time-out, HTTP 5xx, a DIMSE association that could not be established) are retried with
exponential back-off by :func:`with_retries`; after the last try they raise
:class:`~medseg.pacs.errors.PacsUnreachableError`. Refused credentials and missing objects are
not retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from medseg.pacs.errors import PacsUnreachableError

if TYPE_CHECKING:
    from medseg.pacs.address import PacsQuery
    from medseg.pacs.settings import PacsSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Modalities of derived objects, never pulled as input images.
NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "DOC"}
)


class TransientError(Exception):
    """A failure worth retrying (raised inside a client, never seen by a user)."""


@dataclass(frozen=True)
class StudyInfo:
    """One study found by a search."""

    study_uid: str
    patient_id: str = ""
    study_date: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class SeriesInfo:
    """One series found by a search."""

    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    instances: int | None = None

    @property
    def is_image(self) -> bool:
        return self.modality.upper() not in NON_IMAGE_MODALITIES


class PacsClient(Protocol):
    """A connection to a PACS by one protocol."""

    settings: PacsSettings
    protocol: str

    def describe(self) -> str:
        """Where the PACS is (URL or ``AET@host:port``), without credentials."""
        ...

    def find_studies(self, query: PacsQuery) -> list[StudyInfo]:
        """Studies matching ``query`` (QIDO-RS SearchForStudies / C-FIND STUDY level)."""
        ...

    def find_series(self, study_uid: str, modality: str | None = None) -> list[SeriesInfo]:
        """Series of a study (QIDO-RS SearchForSeries / C-FIND SERIES level)."""
        ...

    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
        """Write every instance of a series into ``folder`` (WADO-RS / C-GET); returns the files."""
        ...

    def store(self, files: list[Path]) -> list[str]:
        """Store DICOM files (STOW-RS / C-STORE); returns their SOPInstanceUIDs."""
        ...


def with_retries(settings: PacsSettings, what: str, where: str, call: Callable[[], T]) -> T:
    """``call()``, retried on :class:`TransientError` ``settings.retries`` times with back-off.

    The waits are ``backoff``, ``2*backoff``, ``4*backoff``… capped at ``backoff_max``.

    Raises:
        PacsUnreachableError: the last try failed too.
    """
    attempts = settings.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except TransientError as exc:
            if attempt == attempts:
                raise PacsUnreachableError(
                    f"{what} failed at {where} after {attempts} tries: {exc}",
                    hint="check that the PACS is up and reachable, then rerun (done studies are skipped)",
                ) from None
            wait = min(settings.backoff * 2 ** (attempt - 1), settings.backoff_max)
            log.warning(
                "%s at %s failed (%s); try %d of %d in %.1f s", what, where, exc, attempt + 1, attempts, wait
            )
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
