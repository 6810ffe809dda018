"""DICOMweb client (DICOM PS3.18): QIDO-RS search, WADO-RS retrieve, STOW-RS store.

Built on ``dicomweb-client`` with a :class:`requests.Session` that carries the credentials
(HTTP basic, or an ``Authorization: Bearer`` token), the TLS settings and the time-out. The
library's own retrying is switched off; :func:`~medseg.pacs.client.with_retries` retries
connection errors, time-outs and HTTP 5xx with exponential back-off. HTTP 401/403 raise
:class:`~medseg.pacs.errors.PacsAuthError` and 404 :class:`~medseg.pacs.errors.PacsNotFoundError`
at once.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from medseg.errors import ConfigError, MissingDependencyError
from medseg.pacs.address import PacsQuery, check_uid
from medseg.pacs.client import SeriesInfo, StudyInfo, TransientError, with_retries
from medseg.pacs.errors import PacsAuthError, PacsError, PacsNotFoundError
from medseg.pacs.settings import PacsSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: WADO-RS Accept: the instances as stored, whatever their transfer syntax (PS3.18 §8.7.3.5.2).
ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)
#: Results asked for per QIDO-RS request.
QIDO_PAGE = 500


def _value(item: dict[str, Any], tag: str, default: str = "") -> str:
    """First value of ``tag`` (8 hex digits) in a DICOM JSON object (PS3.18 Annex F)."""
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return default
    first = values[0]
    if isinstance(first, dict):  # PersonName
        return str(first.get("Alphabetic", ""))
    return str(first)


class _Bearer:
    """``Authorization: Bearer`` added when each request is prepared, like basic auth: it is
    never among the headers that ``dicomweb-client`` logs at DEBUG."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(**********)"


class _Basic:
    """HTTP basic authentication (RFC 7617) whose repr masks the password (a plain
    ``(user, password)`` tuple on ``session.auth`` would print it)."""

    def __init__(self, user: str, password: str) -> None:
        from requests.auth import HTTPBasicAuth

        self._auth = HTTPBasicAuth(user, password)
        self.user = user

    def __call__(self, request: Any) -> Any:
        return self._auth(request)

    def __repr__(self) -> str:
        return f"_Basic({self.user!r}, **********)"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Plain-http URLs already warned about (the warning is given once per URL and process).
_WARNED_PLAIN_HTTP: set[str] = set()


def _warn_plain_http(url: str) -> None:
    """Warn once that credentials go unencrypted to a host other than this machine."""
    parts = urlsplit(url)
    if parts.scheme != "http" or _is_loopback(parts.hostname) or url in _WARNED_PLAIN_HTTP:
        return
    _WARNED_PLAIN_HTTP.add(url)
    log.warning(
        "credentials are sent over plain http to %s: anyone on the network can read them; "
        "use dicomwebs:// (HTTPS)",
        url,
    )


class DicomwebClient:
    """A DICOMweb connection; see :class:`~medseg.pacs.client.PacsClient`."""

    protocol = "dicomweb"

    def __init__(self, settings: PacsSettings) -> None:
        if not settings.url:
            raise ConfigError(
                "no DICOMweb URL",
                hint="pass dicomweb://HOST:PORT/PATH, --url, url: in --pacs-config or MEDSEG_PACS_URL",
            )
        try:
            import requests
            from dicomweb_client.api import DICOMwebClient
        except ImportError as exc:
            raise MissingDependencyError(
                f"DICOMweb needs the package {exc.name!r}", hint="pip install 'medseg[pacs]'"
            ) from None
        self.settings = settings
        session = requests.Session()
        session.verify = settings.verify
        if settings.cert:
            session.cert = settings.cert
        mode = settings.auth_mode
        if mode == "basic":
            if not settings.user or settings.password is None:
                raise ConfigError(
                    "basic authentication needs a user and a password",
                    hint="set MEDSEG_PACS_USER and MEDSEG_PACS_PASSWORD",
                )
            session.auth = _Basic(settings.user, settings.password.get_secret_value())
        elif mode == "bearer":
            if settings.token is None:
                raise ConfigError("bearer authentication needs a token", hint="set MEDSEG_PACS_TOKEN")
            session.auth = _Bearer(settings.token.get_secret_value())
        if mode in ("basic", "bearer"):
            _warn_plain_http(settings.url)
        self._client = DICOMwebClient(settings.url, session=session, timeout=settings.timeout)
        self._client.set_http_retry_params(retry=False)

    def describe(self) -> str:
        return str(self.settings.url)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` with HTTP errors mapped to medseg's and transient ones retried."""
        import requests

        def attempt() -> T:
            try:
                return call()
            except requests.exceptions.SSLError:
                # Before ConnectionError, of which it is a subclass: retrying cannot help.
                raise PacsError(
                    f"{what}: the TLS handshake with {self.describe()} failed (certificate not trusted?)",
                    hint="give the PACS's CA bundle as verify: /path/ca.pem in --pacs-config "
                    "(verify: false only for a test server)",
                ) from None
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status >= 500 or status in (408, 429):
                    raise TransientError(f"HTTP {status}") from None
                if status in (401, 403):
                    raise PacsAuthError(
                        f"{what}: {self.describe()} refused the credentials (HTTP {status})",
                        hint="check MEDSEG_PACS_USER/MEDSEG_PACS_PASSWORD or MEDSEG_PACS_TOKEN",
                    ) from None
                if status == 404:
                    raise PacsNotFoundError(f"{what}: not found on {self.describe()} (HTTP 404)") from None
                raise PacsError(f"{what}: {self.describe()} answered HTTP {status}") from None
            except requests.RequestException as exc:
                # A connection error, a time-out, or an answer cut off or garbled in transit
                # (ChunkedEncodingError, ContentDecodingError): worth another try.
                raise TransientError(type(exc).__name__) from None

        return with_retries(self.settings, what, self.describe(), attempt)

    @staticmethod
    def _pages(search: Callable[..., list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """All results of a QIDO-RS search, ``limit``/``offset`` page by page (PS3.18 §8.3.4.4).

        Stops on a short page, and on a page that brings nothing new (a server that ignores
        ``offset`` would otherwise be asked forever).
        """
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        while True:
            page = search(limit=QIDO_PAGE, offset=len(results))
            new = [r for r in page if json.dumps(r, sort_keys=True) not in seen]
            seen.update(json.dumps(r, sort_keys=True) for r in new)
            results.extend(new)
            if len(page) < QIDO_PAGE or not new:
                return results

    def find_studies(self, query: PacsQuery) -> list[StudyInfo]:
        """QIDO-RS ``GET {base}/studies?…`` (PS3.18 §10.6), all pages."""
        found = self._call(
            "QIDO-RS study search",
            lambda: self._pages(
                lambda **kw: self._client.search_for_studies(search_filters=query.study_keys(), **kw)
            ),
        )
        return [
            StudyInfo(
                _value(s, "0020000D"),
                _value(s, "00100020"),
                _value(s, "00080020"),
                tuple(str(m) for m in s.get("00080061", {}).get("Value", [])),
                _value(s, "00081030"),
            )
            for s in found
        ]

    def find_series(self, study_uid: str, modality: str | None = None) -> list[SeriesInfo]:
        """QIDO-RS ``GET {base}/studies/{uid}/series`` (PS3.18 §10.6)."""
        filters = {"Modality": modality} if modality else {}
        found = self._call(
            "QIDO-RS series search",
            lambda: self._pages(
                lambda **kw: self._client.search_for_series(study_uid, search_filters=filters, **kw)
            ),
        )
        out = []
        for s in found:
            n = _value(s, "00201209")
            out.append(
                SeriesInfo(
                    study_uid,
                    _value(s, "0020000E"),
                    _value(s, "00080060"),
                    _value(s, "0008103E"),
                    int(n) if n else None,
                )
            )
        return out

    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
        """WADO-RS ``GET {base}/studies/{uid}/series/{uid}`` (PS3.18 §10.4) into ``folder``.

        The files are written into ``folder.partial`` and the folder renamed when complete, so
        a folder that exists holds the whole series.
        """
        datasets = self._call(
            "WADO-RS retrieve",
            lambda: self._client.retrieve_series(study_uid, series_uid, media_types=ANY_TRANSFER_SYNTAX),
        )
        if not datasets:
            raise PacsNotFoundError(
                f"series {series_uid} of study {study_uid} has no instances on {self.describe()}"
            )
        return _save_all(datasets, folder)

    def store(self, files: list[Path]) -> list[str]:
        """STOW-RS ``POST {base}/studies`` (PS3.18 §10.5); fails on any FailedSOPSequence item."""
        import pydicom

        datasets = [pydicom.dcmread(str(f)) for f in files]
        answer = self._call("STOW-RS store", lambda: self._client.store_instances(datasets))
        failed = getattr(answer, "FailedSOPSequence", None) or []
        if failed:
            uids = ", ".join(str(getattr(i, "ReferencedSOPInstanceUID", "?")) for i in failed)
            raise PacsError(f"STOW-RS: {self.describe()} refused {len(failed)} instance(s): {uids}")
        return [str(ds.SOPInstanceUID) for ds in datasets]


def _save_all(datasets: list[Any], folder: Path) -> list[Path]:
    """Write datasets as Part 10 files ``<SOPInstanceUID>.dcm`` into ``folder``, atomically."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for ds in datasets:
        uid = check_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
        ds.save_as(partial / f"{uid}.dcm", enforce_file_format=True)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return sorted(folder.glob("*.dcm"))
