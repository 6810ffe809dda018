"""Errors of PACS exchanges (DICOMweb, DICOM PS3.18; DIMSE, DICOM PS3.7).

Each is one line with a hint and its own exit code (``docs/troubleshooting.md``). Messages
name the server by URL or ``AET@host:port`` and never carry a password or token.
"""

from __future__ import annotations

from medseg.errors import MedsegError


class PacsError(MedsegError):
    """A PACS refused or failed a request (an HTTP 4xx, a DIMSE failure status)."""

    exit_code = 20  # unique per class: docs/troubleshooting.md


class PacsUnreachableError(PacsError):
    """No connection to the PACS after the retries (refused, timed out, HTTP 5xx, association rejected)."""

    exit_code = 21


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401/403, DIMSE association rejected for the AE title)."""

    exit_code = 22


class PacsNotFoundError(PacsError):
    """A query matched nothing, or a study/series asked for is not on the PACS."""

    exit_code = 23


class PacsValidationError(PacsError):
    """A result failed its check before a push (a SEG that does not read back to its mask)."""

    exit_code = 24
