"""``medseg pacs query|pull|push``: one PACS step at a time (DICOMweb PS3.18 or DIMSE PS3.7).

The PACS is named by an address (``dicomweb://HOST:PORT/PATH?KEY=VALUE…`` or
``dimse://AET@HOST:PORT?KEY=VALUE…``), or by ``--protocol`` with the connection taken from
``--pacs-config`` and ``MEDSEG_PACS_*`` variables. Credentials come only from the config file or
the environment, never from the command line. :func:`add_connection_options` and
:func:`client_and_query` are shared with ``medseg predict --input dicomweb://…``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from medseg.pacs.address import PacsQuery
    from medseg.pacs.client import PacsClient

#: Export formats whose results ``--push`` stores (DICOM objects).
PUSHABLE_FORMATS = ("dicom-seg", "rtstruct")

ADDRESS_HELP = (
    "dicomweb://HOST:PORT/PATH?KEY=VALUE&… (dicomwebs:// for HTTPS) or dimse://AET@HOST:PORT?KEY=VALUE&…; "
    "keys: StudyInstanceUID, PatientID, AccessionNumber, Modality, StudyDate (YYYYMMDD[-YYYYMMDD]), "
    "SeriesInstanceUID"
)


def add_connection_options(p: argparse.ArgumentParser) -> None:
    """``--pacs-config`` (and, for ``medseg pacs``, ``--protocol``/``--query``)."""
    p.add_argument(
        "--pacs-config",
        metavar="FILE",
        help="YAML/JSON PACS settings (url, aet, called_aet, host, port, timeout, verify, cert, dimse_tls, "
        "auth, user, password, token, retries, backoff, backoff_max); MEDSEG_PACS_* variables override it "
        "(docs/pacs.md)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pacs",
        help="query a PACS, pull series from it, push DICOM files to it (DICOMweb or DIMSE)",
        description="One PACS step at a time. Credentials come from --pacs-config or MEDSEG_PACS_USER/"
        "MEDSEG_PACS_PASSWORD/MEDSEG_PACS_TOKEN, never from the command line. See docs/pacs.md.",
    )
    steps = p.add_subparsers(dest="pacs_step", metavar="STEP", required=True)
    for name, help_text in (
        ("query", "list the studies (and with --series their series) matching a query"),
        ("pull", "retrieve the image series of the matching studies into OUTPUT/<study>/<series>/"),
        ("push", "store DICOM files (e.g. SEG, RTSTRUCT) on the PACS"),
    ):
        s = steps.add_parser(name, help=help_text, description=help_text)
        s.add_argument("address", nargs="?", help=ADDRESS_HELP + " (default: from --pacs-config/environment)")
        s.add_argument(
            "--protocol", choices=["dicomweb", "dimse"], help="without an address (default dicomweb)"
        )
        s.add_argument(
            "--query", action="append", default=[], metavar="KEY=VALUE", help="a query key (repeat)"
        )
        add_connection_options(s)
        if name == "query":
            s.add_argument("--series", action="store_true", help="also list each study's series")
        if name == "pull":
            s.add_argument("--output", "-o", required=True, help="output folder")
        if name == "push":
            s.add_argument("files", nargs="+", help="DICOM files or folders of them")
        s.set_defaults(run=run)


def client_and_query(
    address: str | None,
    config: str | None,
    protocol: str | None = None,
    extra_query: list[str] | None = None,
) -> tuple[PacsClient, PacsQuery]:
    """The client and query an address (or the settings alone, with ``protocol``) name."""
    from medseg.errors import ConfigError
    from medseg.pacs.address import PacsQuery, parse_address, parse_query
    from medseg.pacs.connect import connect
    from medseg.pacs.settings import load_settings

    if address:
        parsed = parse_address(address)
        if protocol and protocol != parsed.protocol:
            raise ConfigError(f"--protocol {protocol} contradicts the address {parsed.protocol}://")
        protocol, overrides, keys = parsed.protocol, parsed.overrides, dict(parsed.query.keys)
    else:
        protocol, overrides, keys = protocol or "dicomweb", {}, {}
    for item in extra_query or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--query {item!r} is not KEY=VALUE")
        keys.update(parse_query(f"{key}={value}").keys)
    settings = load_settings(config, overrides)
    return connect(settings, protocol), PacsQuery(keys)


def run(args: argparse.Namespace) -> int:
    from medseg.pacs.address import is_pacs_address

    if args.pacs_step == "push":
        if args.address and not is_pacs_address(args.address):
            # ``push a.dcm b.dcm`` without an address: argparse gave the first file to ``address``.
            args.files = [args.address, *args.files]
            args.address = None
        files = push_files(args.files)  # before connecting: a bad folder fails at once
        client, query = client_and_query(args.address, args.pacs_config, args.protocol, args.query)
        return _push(client, files)
    client, query = client_and_query(args.address, args.pacs_config, args.protocol, args.query)
    step = {"query": _query, "pull": _pull}[args.pacs_step]
    return step(client, query, args)


def _query(client: PacsClient, query: PacsQuery, args: argparse.Namespace) -> int:
    from medseg.pacs.address import PacsQuery
    from medseg.pacs.workflow import image_series

    studies = client.find_studies(query)
    lines = ["| study | patient | date | modalities |", "|---|---|---|---|"]
    for st in studies:
        lines.append(f"| {st.study_uid} | {st.patient_id} | {st.study_date} | {','.join(st.modalities)} |")
        if args.series:
            lines.extend(
                f"|   series {se.series_uid} | {se.modality} | {se.instances or ''} | {se.description} |"
                for se in image_series(client, st.study_uid, PacsQuery({}))
            )
    lines.append(f"\n{len(studies)} studies on {client.describe()}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _pull(client: PacsClient, query: PacsQuery, args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from medseg.errors import EXIT_SOME_FAILED, MedsegError
    from medseg.pacs.address import check_uid
    from medseg.pacs.errors import PacsNotFoundError
    from medseg.pacs.workflow import pull_study

    studies = client.find_studies(query)
    if not studies:
        raise PacsNotFoundError(f"no study matches {query.describe()} on {client.describe()}")
    failed = 0
    for st in studies:
        try:
            study_dir = Path(args.output) / check_uid(st.study_uid, "StudyInstanceUID")
            folders = pull_study(client, st.study_uid, query, study_dir)
            sys.stdout.write(f"{st.study_uid}: {len(folders)} series\n")
        except MedsegError as exc:
            failed += 1
            sys.stdout.write(f"{st.study_uid}: failed: {exc}\n")
        except Exception as exc:  # an unforeseen library error: this study only, the rest goes on
            failed += 1
            reason = f"unexpected {type(exc).__name__}: {exc}".splitlines()[0]
            sys.stdout.write(f"{st.study_uid}: failed: {reason}\n")
            logging.getLogger(__name__).debug("traceback of study %s", st.study_uid, exc_info=True)
    sys.stdout.write(f"{len(studies) - failed} studies pulled, {failed} failed\n")
    return EXIT_SOME_FAILED if failed else 0


def _is_storable_dicom(path: Path) -> bool:
    """A DICOM Part 10 file with the meta information and UIDs a store needs."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return False
    meta = getattr(ds, "file_meta", None)
    return bool(
        meta is not None
        and meta.get("TransferSyntaxUID")
        and ds.get("SOPClassUID")
        and ds.get("SOPInstanceUID")
    )


def push_files(items: list[str]) -> list[Path]:
    """The DICOM files named, folders searched recursively; other files are left out with a
    warning (a ``.json``, a ``.nii.gz`` next to the results).

    Raises:
        InputNotFoundError: a name that does not exist, or no DICOM file at all.
    """
    import logging
    from pathlib import Path

    from medseg.errors import InputNotFoundError

    candidates: list[Path] = []
    for item in map(Path, items):
        if not item.exists():
            raise InputNotFoundError(f"no such file or folder: {item}")
        candidates.extend(sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item])
    files = [p for p in candidates if _is_storable_dicom(p)]
    skipped = len(candidates) - len(files)
    if skipped:
        logging.getLogger(__name__).warning(
            "left out %d file(s) that are not DICOM Part 10 files with file meta information (e.g. %s)",
            skipped,
            next(p for p in candidates if p not in files),
        )
    if not files:
        raise InputNotFoundError(
            f"no DICOM file to push in {', '.join(items)}",
            hint="give DICOM files (e.g. *.seg.dcm, *.rtstruct.dcm) or folders holding them",
        )
    return files


def _push(client: PacsClient, files: list[Path]) -> int:
    stored = client.store(files)
    sys.stdout.write(f"stored {len(stored)} instance(s) on {client.describe()}\n")
    return 0


def predict_from_pacs(
    args: argparse.Namespace,
    predictor: Any,
    formats: tuple[str, ...] | None,
    pacs: tuple[PacsClient, PacsQuery] | None = None,
    **options: Any,
) -> int:
    """``medseg predict --input dicomweb://…|dimse://…``: pull, predict, validate, ``--push``.

    ``pacs`` is the client and query of ``args.input`` when the caller made them already.
    """
    from pathlib import Path

    from medseg.pacs.workflow import PacsPredictJob

    client, query = pacs if pacs is not None else client_and_query(args.input, args.pacs_config)
    job = PacsPredictJob(
        predictor,
        client,
        query,
        Path(args.output),
        formats=formats or ("nifti", "dicom-seg"),
        push=args.push,
        overwrite=args.overwrite,
        predict_options=options,
    )
    result = job.run()
    sys.stdout.write(result.table() + "\n")
    return result.exit_code
