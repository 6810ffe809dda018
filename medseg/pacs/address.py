"""``dicomweb://`` and ``dimse://`` addresses: where a PACS is and which studies to take.

- ``dicomweb://HOST:PORT/PATH?KEY=VALUE&…`` is the DICOMweb service at ``http://HOST:PORT/PATH``
  (``dicomwebs://`` for HTTPS), searched with QIDO-RS (DICOM PS3.18 §10.6);
- ``dimse://AET@HOST:PORT?KEY=VALUE&…`` is a DIMSE peer with the called AE title ``AET``,
  searched with C-FIND (DICOM PS3.4 Annex C) at the study level.

Query keys: ``StudyInstanceUID``, ``PatientID``, ``AccessionNumber``, ``Modality``,
``StudyDate`` (``YYYYMMDD`` or a range ``YYYYMMDD-YYYYMMDD``, PS3.4 §C.2.2.2.5) and
``SeriesInstanceUID``. Credentials are refused in an address: a password on the command line
is visible to every user of the machine (``ps``) and lands in shell histories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from medseg.errors import ConfigError
from medseg.pacs.errors import PacsError

QUERY_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "AccessionNumber",
    "Modality",
    "StudyDate",
    "SeriesInstanceUID",
)
SCHEMES = ("dicomweb", "dicomwebs", "dimse")
_DATE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: A UID as DICOM PS3.5 §9.1 defines it: components of digits without a leading zero (a lone
#: ``0`` is allowed), separated by dots, at most 64 characters.
_STRICT_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def check_uid(value: object, what: str) -> str:
    """``value`` when it is a valid DICOM UID (PS3.5 §9.1), else a one-line :class:`PacsError`.

    Every UID that a PACS sends back is checked with this before it names a file or a folder:
    an untrusted server must not be able to write outside the output folder (``../..``).
    """
    text = "" if value is None else str(value)
    if len(text) > 64 or not _STRICT_UID.match(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise PacsError(
            f"the PACS sent a bad {what} {shown!r}",
            hint="a UID is at most 64 digits and dots (DICOM PS3.5 §9.1); this object was left out",
        )
    return text


@dataclass(frozen=True)
class PacsQuery:
    """Which studies (and optionally which series) to take from a PACS."""

    keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in self.keys.items():
            if key not in QUERY_KEYS:
                raise ConfigError(
                    f"unknown PACS query key {key!r}", hint=f"use one of {', '.join(QUERY_KEYS)}"
                )
            if key == "StudyDate" and (not _DATE.match(value) or value == "-"):
                raise ConfigError(f"bad StudyDate {value!r}", hint="use YYYYMMDD or YYYYMMDD-YYYYMMDD")
            if key.endswith("InstanceUID") and not _UID.match(value):
                raise ConfigError(f"bad {key} {value!r}", hint="a UID is digits separated by dots")

    @property
    def modality(self) -> str | None:
        return self.keys.get("Modality")

    @property
    def series_uid(self) -> str | None:
        return self.keys.get("SeriesInstanceUID")

    def study_keys(self) -> dict[str, str]:
        """Study-level matching keys (PS3.4 C.6.2.1.2); Modality becomes ModalitiesInStudy."""
        out = {k: v for k, v in self.keys.items() if k not in ("Modality", "SeriesInstanceUID")}
        if self.modality:
            out["ModalitiesInStudy"] = self.modality
        return out

    def describe(self) -> str:
        return "&".join(f"{k}={v}" for k, v in self.keys.items()) or "(all studies)"


@dataclass(frozen=True)
class PacsAddress:
    """A parsed address: the protocol, settings it implies and the query."""

    protocol: str  # "dicomweb" or "dimse"
    overrides: dict[str, Any]
    query: PacsQuery


def is_pacs_address(text: str) -> bool:
    """Whether ``text`` is a ``dicomweb://``/``dicomwebs://``/``dimse://`` address."""
    return any(str(text).startswith(f"{s}://") for s in SCHEMES)


def parse_query(text: str) -> PacsQuery:
    """``KEY=VALUE&…`` (a URL query string) into a :class:`PacsQuery`."""
    pairs = parse_qsl(text, keep_blank_values=False, strict_parsing=False)
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"PACS query key {key!r} given twice")
        seen[key] = value
    return PacsQuery(seen)


def parse_address(text: str) -> PacsAddress:
    """Split a PACS address into protocol, connection overrides and query.

    Raises:
        ConfigError: an unknown scheme, a missing host or port, credentials in the address,
            an unknown query key or a malformed value.
    """
    parts = urlsplit(text)
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"not a PACS address: {text!r}", hint="use dicomweb://HOST:PORT/PATH?… or dimse://AET@HOST:PORT?…"
        )
    if parts.password is not None or (parts.scheme != "dimse" and parts.username):
        raise ConfigError(
            "credentials are not accepted in a PACS address",
            hint="set MEDSEG_PACS_USER/MEDSEG_PACS_PASSWORD (or _TOKEN) or use --pacs-config",
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad port in PACS address {parts.netloc!r}") from None
    if not parts.hostname:
        raise ConfigError(f"no host in PACS address {text!r}")
    query = parse_query(parts.query)
    if parts.scheme == "dimse":
        if port is None:
            raise ConfigError(f"no port in DIMSE address {text!r}", hint="dimse://AET@HOST:PORT")
        overrides: dict[str, Any] = {"host": parts.hostname, "port": port}
        if parts.username:
            overrides["called_aet"] = parts.username
        return PacsAddress("dimse", overrides, query)
    http = "https" if parts.scheme == "dicomwebs" else "http"
    netloc = parts.hostname + (f":{port}" if port else "")
    url = f"{http}://{netloc}{parts.path.rstrip('/')}"
    return PacsAddress("dicomweb", {"url": url}, query)
