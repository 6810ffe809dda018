"""DIMSE client (DICOM PS3.7, PS3.4): C-FIND, C-GET and C-STORE through ``pynetdicom``.

- C-FIND with the Study Root Query/Retrieve Information Model (PS3.4 §C.4.1), at STUDY and
  SERIES level;
- C-GET (PS3.4 §C.4.3): the PACS sends the instances back over the same association, as
  C-STORE sub-operations for which medseg takes the SCP role (PS3.7 §D.3.3.4);
- C-STORE (PS3.4 Annex B) of result files (SEG, RTSTRUCT).

An association that cannot be established or that breaks is retried with back-off
(:func:`~medseg.pacs.client.with_retries`); one that the PACS rejects (an unknown calling AE
title, PS3.8 §7.1.1.9) raises :class:`~medseg.pacs.errors.PacsAuthError`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from medseg.errors import ConfigError, MissingDependencyError
from medseg.pacs.address import PacsQuery, check_uid
from medseg.pacs.client import SeriesInfo, StudyInfo, TransientError, with_retries
from medseg.pacs.errors import PacsAuthError, PacsError, PacsNotFoundError
from medseg.pacs.settings import PacsSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Storage SOP classes medseg accepts in a C-GET (all transfer syntaxes offered for each).
GET_STORAGE_CLASSES = (
    "CTImageStorage",
    "EnhancedCTImageStorage",
    "LegacyConvertedEnhancedCTImageStorage",
    "MRImageStorage",
    "EnhancedMRImageStorage",
    "LegacyConvertedEnhancedMRImageStorage",
    "PositronEmissionTomographyImageStorage",
    "EnhancedPETImageStorage",
    "NuclearMedicineImageStorage",
    "SecondaryCaptureImageStorage",
    "UltrasoundImageStorage",
    "DigitalXRayImageStorageForPresentation",
    "SegmentationStorage",
    "RTStructureSetStorage",
)
#: Transfer syntaxes offered in a C-GET: the uncompressed ones share a presentation context;
#: each compressed one gets a context of its own so that the PACS can send an instance as
#: stored, without transcoding (which it may not support, PS3.7 §D.3.3.4). 14 classes x 8
#: contexts + the C-GET model stay under the 128 contexts of an association (PS3.8 §9.3.2).
UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")
COMPRESSED = (
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.1.99",  # Deflated explicit VR little endian
)
_PENDING = (0xFF00, 0xFF01)


def _status_of(status: Any) -> int | None:
    """The Status (0000,0900) of a DIMSE response, or None when the association broke."""
    return int(status.Status) if status is not None and "Status" in status else None


class DimseClient:
    """A DIMSE peer; see :class:`~medseg.pacs.client.PacsClient`."""

    protocol = "dimse"

    def __init__(self, settings: PacsSettings) -> None:
        if not settings.host or not settings.port:
            raise ConfigError(
                "no DIMSE host and port", hint="pass dimse://AET@HOST:PORT, or host:/port: in --pacs-config"
            )
        try:
            import pynetdicom  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "DIMSE needs the package 'pynetdicom'", hint="pip install 'medseg[pacs]'"
            ) from None
        self.settings = settings

    def describe(self) -> str:
        return self.settings.describe_dimse()

    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.settings.aet)
        t = self.settings.timeout
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = t
        return ae

    def _tls(self) -> tuple[Any, str] | None:
        if not self.settings.dimse_tls:
            return None
        import ssl

        verify = self.settings.verify
        ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.settings.cert:
            ctx.load_cert_chain(self.settings.cert)
        return ctx, str(self.settings.host)

    @contextmanager
    def _association(self, ae: Any, what: str, **kwargs: Any) -> Iterator[Any]:
        """An established association; rejection -> PacsAuthError, failure -> TransientError.

        ``assoc.peer_aborted`` (a list) gets an item when the peer sends an A-ABORT PDU (PS3.8
        §9.3.8): a PACS that refuses a command for our AE title aborts, a crashed one just drops
        the connection.
        """
        from pynetdicom import evt

        s = self.settings
        aborted: list[bool] = []

        def on_pdu(event: Any) -> None:
            if type(event.pdu).__name__ == "A_ABORT_RQ":
                aborted.append(True)

        handlers = [*kwargs.pop("evt_handlers", []), (evt.EVT_PDU_RECV, on_pdu)]
        assoc = ae.associate(
            s.host, s.port, ae_title=s.called_aet, tls_args=self._tls(), evt_handlers=handlers, **kwargs
        )
        assoc.peer_aborted = aborted
        if assoc.is_rejected:
            raise PacsAuthError(
                f"{what}: {self.describe()} rejected the association for AE title {s.aet!r}",
                hint="ask the PACS administrator to register this AE title (aet: in --pacs-config)",
            )
        if not assoc.is_established:
            raise TransientError("association not established (connection refused or aborted)")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _broken(self, assoc: Any, what: str, answered: bool) -> Exception:
        """The error for an association that ended without a response."""
        if assoc.peer_aborted and not answered:
            return PacsAuthError(
                f"{what}: {self.describe()} aborted the association at the first request from AE title "
                f"{self.settings.aet!r}",
                hint="the PACS probably does not know this AE title: ask its administrator to register it",
            )
        if assoc.peer_aborted:
            return PacsError(f"{what}: {self.describe()} aborted the association")
        return TransientError(f"connection lost during {what}")

    def _require_context(self, assoc: Any, what: str, sop_class: str, syntax: str | None = None) -> None:
        """The PACS must have accepted a presentation context for ``sop_class`` (and
        ``syntax``) before a request of it is sent (PS3.8 §9.3.2.2): pynetdicom would raise
        a ValueError instead."""
        for ctx in assoc.accepted_contexts:
            if str(ctx.abstract_syntax) != str(sop_class):
                continue
            if syntax is None or str(syntax) in [str(t) for t in ctx.transfer_syntax]:
                return
        from pydicom.uid import UID

        name = UID(str(sop_class)).name or str(sop_class)
        suffix = f" in transfer syntax {UID(str(syntax)).name or syntax}" if syntax else ""
        raise PacsError(
            f"{what}: {self.describe()} accepted no presentation context for {name}{suffix}",
            hint="the PACS does not support this service or object type for our AE title: "
            "ask its administrator, or use the other protocol",
        )

    def _call(self, what: str, call: Callable[[], T]) -> T:
        return with_retries(self.settings, what, self.describe(), call)

    def _find(self, identifier: Any, what: str) -> list[Any]:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FindModel

        def attempt() -> list[Any]:
            ae = self._ae()
            ae.add_requested_context(FindModel)
            found = []
            with self._association(ae, what) as assoc:
                self._require_context(assoc, what, FindModel)
                for status, answer in assoc.send_c_find(identifier, FindModel):
                    code = _status_of(status)
                    if code is None:
                        raise self._broken(assoc, what, bool(found))
                    if code in _PENDING and answer is not None:
                        found.append(answer)
                    elif code != 0x0000:
                        raise PacsError(f"{what}: {self.describe()} answered C-FIND status 0x{code:04X}")
            return found

        return self._call(what, attempt)

    def find_studies(self, query: PacsQuery) -> list[StudyInfo]:
        """C-FIND at STUDY level with the query's matching keys."""
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for key in ("StudyInstanceUID", "PatientID", "StudyDate", "ModalitiesInStudy", "StudyDescription"):
            setattr(ds, key, "")
        for key, value in query.study_keys().items():
            setattr(ds, key, value)
        out = []
        for a in self._find(ds, "C-FIND study search"):
            mods = a.get("ModalitiesInStudy", "")
            mods = tuple(mods) if not isinstance(mods, str) else tuple(m for m in mods.split("\\") if m)
            out.append(
                StudyInfo(
                    str(a.get("StudyInstanceUID", "")),
                    str(a.get("PatientID", "")),
                    str(a.get("StudyDate", "")),
                    mods,
                    str(a.get("StudyDescription", "")),
                )
            )
        return out

    def find_series(self, study_uid: str, modality: str | None = None) -> list[SeriesInfo]:
        """C-FIND at SERIES level inside one study."""
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = ""
        ds.Modality = modality or ""
        ds.SeriesDescription = ""
        ds.NumberOfSeriesRelatedInstances = ""
        out = []
        for a in self._find(ds, "C-FIND series search"):
            n = a.get("NumberOfSeriesRelatedInstances", "")
            out.append(
                SeriesInfo(
                    study_uid,
                    str(a.get("SeriesInstanceUID", "")),
                    str(a.get("Modality", "")),
                    str(a.get("SeriesDescription", "")),
                    int(n) if str(n).strip() else None,
                )
            )
        return out

    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
        """C-GET at SERIES level; the instances land in ``folder`` (written whole, then renamed)."""
        partial = folder.with_name(folder.name + ".partial")

        def attempt() -> list[Path]:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            self._get(study_uid, series_uid, partial)
            return sorted(partial.glob("*.dcm"))

        files = self._call("C-GET retrieve", attempt)
        if not files:
            shutil.rmtree(partial, ignore_errors=True)
            raise PacsNotFoundError(
                f"series {series_uid} of study {study_uid} has no instances on {self.describe()}"
            )
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
        return sorted(folder.glob("*.dcm"))

    def _get(self, study_uid: str, series_uid: str, into: Path) -> None:
        from pydicom.dataset import Dataset
        from pynetdicom import build_role, evt, sop_class
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GetModel

        bad: list[PacsError] = []

        def on_store(event: Any) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            try:
                uid = check_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
            except PacsError as exc:
                bad.append(exc)
                return 0xC000  # Cannot understand (PS3.4 §B.2.3): the instance is not kept
            ds.save_as(into / f"{uid}.dcm", enforce_file_format=True)
            return 0x0000

        ae = self._ae()
        ae.add_requested_context(GetModel)
        roles = []
        for name in GET_STORAGE_CLASSES:
            uid = getattr(sop_class, name)
            ae.add_requested_context(uid, list(UNCOMPRESSED))
            for syntax in COMPRESSED:
                ae.add_requested_context(uid, syntax)
            roles.append(build_role(uid, scp_role=True))
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        with self._association(
            ae, "C-GET retrieve", ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]
        ) as assoc:
            self._require_context(assoc, "C-GET retrieve", GetModel)
            answered = False
            for status, _ in assoc.send_c_get(ds, GetModel):
                code = _status_of(status)
                if code is None:
                    raise self._broken(assoc, "C-GET", answered)
                answered = True
                if code not in _PENDING and code != 0x0000:
                    if bad:  # the failed sub-operations are ours
                        raise bad[0]
                    raise PacsError(
                        f"C-GET of series {series_uid}: {self.describe()} answered status 0x{code:04X}",
                        hint="a warning status (0xB000) means some instances could not be sent",
                    )
        if bad:
            raise bad[0]

    def store(self, files: list[Path]) -> list[str]:
        """C-STORE each file over one association (contexts of the files' classes and syntaxes)."""
        import pydicom

        datasets = [pydicom.dcmread(str(f)) for f in files]

        def attempt() -> list[str]:
            ae = self._ae()
            for ctx in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
                ae.add_requested_context(*ctx)
            with self._association(ae, "C-STORE") as assoc:
                for ds in datasets:
                    self._require_context(assoc, "C-STORE", ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
                for ds in datasets:
                    code = _status_of(assoc.send_c_store(ds))
                    if code is None:
                        raise self._broken(assoc, "C-STORE", ds is not datasets[0])
                    if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:
                        raise PacsError(
                            f"C-STORE of {ds.SOPInstanceUID}: {self.describe()} answered status 0x{code:04X}"
                        )
            return [str(d.SOPInstanceUID) for d in datasets]

        return self._call("C-STORE", attempt)
