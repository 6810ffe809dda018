"""A medseg DICOM SEG in the real OHIF viewer, drawn over the right pixels.

The end-to-end check (marked slow) stores an MR series written by medseg and a SEG exported by
medseg (one rectangle on one slice, see :mod:`tests.viewers.ohif_data`) into a real Orthanc over
its REST API, serves OHIF's built ``dist/`` and Orthanc's DICOMweb from one origin
(:mod:`tests.viewers.ohif_server`), and drives headless Chromium with SwiftShader WebGL
(``ohif_check.js``, playwright-core). In the browser, the SEG is opened by double-clicking its
entry in the study browser, the viewport goes to the mask's slice, and two screenshots are taken,
with the segment shown and hidden. Then:

- OHIF's own segmentation state holds one segment, named as in the SEG, with exactly the SEG's
  labelled voxel count;
- the viewport shows the slice at the mask's ImagePositionPatient;
- the pixels that differ between the two screenshots fill the mask's rectangle as projected on
  the canvas (predicted here from the canvas size and the image geometry, with cornerstone's
  fit-to-viewport rule) and nothing outside it, and they moved towards the segment's colour.

Needs Orthanc with its DICOMweb plugin, Chromium, Node.js and OHIF plus playwright-core installed
by ``.ci/run`` into ``.cache/ohif`` (or ``$MEDSEG_OHIF_DIR``); skips with the reason otherwise.
With ``MEDSEG_KEEP_ARTIFACTS`` set, the screenshots and the browser's report are copied into
``tests/viewers/artifacts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tests.viewers.ohif_server import OhifServer, app_config

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OHIF_DIR = Path(os.environ.get("MEDSEG_OHIF_DIR", REPO / ".cache" / "ohif"))
DIST = OHIF_DIR / "app" / "dist"
NODE_MODULES = OHIF_DIR / "node_modules"
ARTIFACTS = HERE / "artifacts"


def _chromium() -> str | None:
    env = os.environ.get("MEDSEG_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing() -> str | None:
    """Why the browser check cannot run here, or None."""
    from tests.fixtures.orthanc import orthanc_available

    reason = orthanc_available()
    if reason:
        return reason
    if _chromium() is None:
        return "Chromium is not installed (apt-get install chromium, or set MEDSEG_CHROMIUM)"
    if shutil.which("node") is None:
        return "Node.js is not installed (needed to drive Chromium with playwright-core)"
    if not (DIST / "index.html").is_file():
        return f"OHIF is not installed at {DIST} (.ci/run: npm pack @ohif/app@3.13 into .cache/ohif/app)"
    if not (NODE_MODULES / "playwright-core").is_dir():
        return f"playwright-core is not in {NODE_MODULES} (npm install --prefix {OHIF_DIR} playwright-core)"
    return None


# -- pixel geometry (pure functions, unit-tested below) ------------------------------------------


def expected_box(
    canvas: tuple[float, float],
    image: tuple[int, int],
    spacing: tuple[float, float],
    col_range: tuple[int, int],
    row_range: tuple[int, int],
) -> tuple[float, float, float, float]:
    """Where a stack viewport draws image pixels ``[col_range) x [row_range)``, in canvas pixels.

    Cornerstone's stack viewport shows an image as stored (column 0 on the left, row 0 on top),
    scaled to fit the canvas and centred. Returns ``(x0, y0, x1, y1)``, edges of the pixels.

    Args:
        canvas: (width, height) of the canvas in CSS pixels.
        image: (columns, rows) of the image.
        spacing: (between columns, between rows) in mm.
        col_range, row_range: Half-open pixel ranges of the mask.
    """
    (cw, ch), (cols, rows), (sx, sy) = canvas, image, spacing
    scale = min(cw / (cols * sx), ch / (rows * sy))  # canvas pixels per mm
    x_origin = cw / 2 - cols * sx * scale / 2
    y_origin = ch / 2 - rows * sy * scale / 2
    return (
        x_origin + col_range[0] * sx * scale,
        y_origin + row_range[0] * sy * scale,
        x_origin + col_range[1] * sx * scale,
        y_origin + row_range[1] * sy * scale,
    )


def changed_box(shown: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """The pixels that differ between two RGB screenshots, and their bounding box (x0, y0, x1, y1)
    as pixel edges (half-open), or None when nothing differs."""
    changed = np.abs(shown.astype(int) - hidden.astype(int)).max(axis=-1) > 0
    ys, xs = np.nonzero(changed)
    if not len(xs):
        return changed, None
    return changed, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def check_overlay(
    shown: np.ndarray,
    hidden: np.ndarray,
    box: tuple[float, float, float, float],
    tolerance: float,
    color: tuple[int, int, int] | None = None,
) -> list[str]:
    """Problems with an overlay expected to fill ``box`` exactly (empty list: none).

    The differing pixels' bounding box must match ``box`` within ``tolerance`` pixels on each edge,
    at most 0.05% of the pixels outside ``box`` (grown by ``tolerance``) may differ, at least 98%
    of the pixels inside it (shrunk by ``tolerance``) must, and with ``color`` given those inside
    pixels must have moved towards it.
    """
    problems = []
    changed, found = changed_box(shown, hidden)
    if found is None:
        return ["no pixel changes when the segmentation is hidden: the overlay is not drawn"]
    if max(abs(a - b) for a, b in zip(found, box, strict=True)) > tolerance:
        problems.append(f"overlay bounding box {found} is not the expected {tuple(round(v, 1) for v in box)}")
    h, w = changed.shape
    x0, y0, x1, y1 = box
    grown = np.zeros_like(changed)
    grown[
        max(0, int(np.floor(y0 - tolerance))) : int(np.ceil(y1 + tolerance)),
        max(0, int(np.floor(x0 - tolerance))) : int(np.ceil(x1 + tolerance)),
    ] = True
    outside = int((changed & ~grown).sum())
    if outside > 0.0005 * h * w:
        problems.append(f"{outside} pixels outside the expected rectangle changed")
    inner = (
        slice(int(np.ceil(y0 + tolerance)), int(np.floor(y1 - tolerance))),
        slice(int(np.ceil(x0 + tolerance)), int(np.floor(x1 - tolerance))),
    )
    inside = changed[inner]
    filled = float(inside.mean()) if inside.size else 0.0
    if filled < 0.98:
        problems.append(f"only {filled:.1%} of the pixels inside the rectangle changed")
    if color is not None and inside.size:
        target = np.asarray(color[:3], dtype=float)
        before = np.linalg.norm(hidden[inner].astype(float) - target, axis=-1)
        after = np.linalg.norm(shown[inner].astype(float) - target, axis=-1)
        towards = float((after < before).mean())
        if towards < 0.95:
            problems.append(f"only {towards:.1%} of the overlay pixels moved towards segment colour {color}")
    return problems


def dicom_lab_to_rgb(lab: tuple[int, int, int]) -> tuple[int, int, int]:
    """sRGB (0-255) of a DICOM CIELab triplet (PS3.3 C.10.7.1.1: L* 0-100 and a*, b* -128-127
    scaled to 0-65535), through CIE XYZ with the D65 white point."""
    light = lab[0] / 65535 * 100
    a, b = (v / 65535 * 255 - 128 for v in lab[1:])
    fy = (light + 16) / 116
    f = [fy + a / 500, fy, fy - b / 200]
    xyz = [
        w * (t**3 if t**3 > 216 / 24389 else (116 * t - 16) / (24389 / 27))
        for w, t in zip((0.95047, 1.0, 1.08883), f, strict=True)
    ]
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    linear = np.clip(m @ np.array(xyz), 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return tuple(int(round(255 * v)) for v in srgb)


# -- the end-to-end run ----------------------------------------------------------------------------


@dataclass
class OhifRun:
    case: Any
    result: dict[str, Any]
    out: Path
    spacing: tuple[float, float]  # (between columns, between rows)
    image_position: list[float]
    upstream_errors: list[tuple[str, str, int]]


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def ohif_run(tmp_path_factory: pytest.TempPathFactory) -> OhifRun:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    import pydicom

    from tests.fixtures.orthanc import start_or_skip
    from tests.viewers.ohif_data import build_case

    root = tmp_path_factory.mktemp("ohif")
    case = build_case(root / "case")
    first = pydicom.dcmread(case.files[case.slice_index], stop_before_pixels=True)
    position = np.array([float(v) for v in first.ImagePositionPatient])
    orientation = np.array([float(v) for v in first.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)

    def world(col: float, row: float) -> list[float]:
        return (position + col * col_spacing * orientation[:3] + row * row_spacing * orientation[3:]).tolist()

    (c0, c1), (r0, r1) = case.col_range, case.row_range
    corners = [world(c0 - 0.5, r0 - 0.5), world(c1 - 0.5, r1 - 0.5)]  # outer edges of the mask

    orthanc = start_or_skip(root / "orthanc")
    try:
        for path in [*case.files, case.seg_path]:
            orthanc.upload(path)
        assert len(orthanc.series_of_modality("SEG")) == 1
        with OhifServer(DIST, orthanc.url, orthanc.user, orthanc.password) as server:
            out = root / "browser"
            out.mkdir()
            job = {
                "url": server.url,
                "studyUid": case.study_uid,
                "segSeriesUid": case.seg_series_uid,
                "imagePosition": position.tolist(),
                "worldCorners": corners,
                "out": str(out),
                "chromium": _chromium(),
                "timeoutMs": 120_000,
            }
            (out / "job.json").write_text(json.dumps(job, indent=2))
            env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
            proc = subprocess.Popen(
                ["node", str(HERE / "ohif_check.js"), str(out / "job.json")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group: Chromium goes with it on a timeout
            )
            try:
                _, stderr = proc.communicate(timeout=400)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, stderr = proc.communicate()
                stderr = "the browser run took more than 400 s and was killed\n" + stderr
            upstream_errors = list(server.upstream_errors)
    finally:
        orthanc.close()
    result_path = out / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if os.environ.get("MEDSEG_KEEP_ARTIFACTS"):
        ARTIFACTS.mkdir(exist_ok=True)
        for name in ("study.png", "seg_shown.png", "seg_hidden.png", "failure.png", "result.json"):
            if (out / name).is_file():
                shutil.copy2(out / name, ARTIFACTS / f"ohif_{name}")
    if proc.returncode != 0 or not result.get("ok"):
        pytest.fail(
            f"the browser run failed (node exit {proc.returncode}) after steps {result.get('steps')}:\n"
            f"{result.get('error') or stderr[-3000:]}\n"
            f"console: {result.get('console')}\npage errors: {result.get('pageErrors')}\n"
            f"failed requests: {result.get('failedRequests')}\nscreenshots in {out}"
        )
    return OhifRun(case, result, out, (col_spacing, row_spacing), position.tolist(), upstream_errors)


@pytest.mark.slow
def test_ohif_lists_and_loads_the_seg(ohif_run: OhifRun) -> None:
    r = ohif_run.result
    modalities = sorted(t.split("\n")[0].strip() for t in r["thumbnails"])
    assert modalities == ["MR", "SEG"], r["thumbnails"]
    seg = r["segmentation"]
    assert seg["segments"] == [{"index": 1, "label": "target"}]
    # OHIF's labelmap holds exactly the SEG's voxels (196 = 14 x 14 on one slice).
    assert seg["counts"] == {"1": ohif_run.case.voxels}
    assert {"type": "Labelmap", "visible": True} in seg["representations"]
    # OHIF draws the segment in the SEG's RecommendedDisplayCIELabValue.
    import pydicom

    lab = pydicom.dcmread(ohif_run.case.seg_path).SegmentSequence[0].RecommendedDisplayCIELabValue
    assert seg["color"][:3] == pytest.approx(dicom_lab_to_rgb(tuple(lab)), abs=2)
    assert not r["pageErrors"], r["pageErrors"]
    assert not r["failedRequests"], r["failedRequests"]
    assert not ohif_run.upstream_errors, ohif_run.upstream_errors


@pytest.mark.slow
def test_ohif_shows_the_mask_slice(ohif_run: OhifRun) -> None:
    nav = ohif_run.result["navigation"]
    assert nav["distance"] == pytest.approx(0.0, abs=1e-3)
    assert nav["shownPosition"] == pytest.approx(ohif_run.image_position, abs=1e-3)


@pytest.mark.slow
def test_ohif_draws_the_overlay_over_the_mask(ohif_run: OhifRun) -> None:
    r, case = ohif_run.result, ohif_run.case
    geo = r["geometry"]
    assert geo["devicePixelRatio"] == 1
    # The camera did not move between the two screenshots.
    assert r["geometryAfter"]["camera"] == geo["camera"]
    rect = geo["canvasRect"]
    canvas = (rect["width"], rect["height"])
    box = expected_box(canvas, (case.cols, case.rows), ohif_run.spacing, case.col_range, case.row_range)
    # The prediction agrees with cornerstone's own world-to-canvas mapping of the mask's corners.
    (ax, ay), (bx, by) = geo["cornersOnCanvas"]
    assert (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)) == pytest.approx(box, abs=1.0)

    x, y = round(rect["x"]), round(rect["y"])
    w, h = round(rect["width"]), round(rect["height"])
    shown = _load_png(ohif_run.out / "seg_shown.png")[y : y + h, x : x + w]
    hidden = _load_png(ohif_run.out / "seg_hidden.png")[y : y + h, x : x + w]
    scale = h / (case.rows * ohif_run.spacing[1])
    tolerance = max(2.0, 0.25 * scale)  # a quarter of a voxel on screen, at least 2 pixels
    problems = check_overlay(shown, hidden, box, tolerance, r["segmentation"]["color"])
    assert not problems, f"{problems}; screenshots in {ohif_run.out}"


# -- fast checks: the pixel rules can fail, and the server ---------------------------------------


def _synthetic(box: tuple[int, int, int, int], shape=(100, 120)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 200, size=shape, dtype=np.uint8)
    hidden = np.repeat(gray[..., None], 3, axis=-1)
    shown = hidden.copy()
    x0, y0, x1, y1 = box
    shown[y0:y1, x0:x1] = (0.5 * shown[y0:y1, x0:x1] + 0.5 * np.array([230, 25, 75])).astype(np.uint8)
    return shown, hidden


def test_check_overlay_accepts_the_right_rectangle() -> None:
    shown, hidden = _synthetic((20, 30, 60, 70))
    assert check_overlay(shown, hidden, (20.3, 29.8, 60.2, 70.4), 2.0, (230, 25, 75)) == []


@pytest.mark.parametrize(
    "drawn",
    [
        (60, 30, 100, 70),  # mirrored left-right
        (20, 0, 60, 40),  # shifted up
        (20, 30, 40, 70),  # half of it
    ],
)
def test_check_overlay_rejects_a_misplaced_overlay(drawn: tuple[int, int, int, int]) -> None:
    shown, hidden = _synthetic(drawn)
    assert check_overlay(shown, hidden, (20, 30, 60, 70), 2.0, (230, 25, 75))


def test_check_overlay_rejects_no_overlay_and_the_wrong_colour() -> None:
    shown, hidden = _synthetic((20, 30, 60, 70))
    assert check_overlay(hidden, hidden, (20, 30, 60, 70), 2.0)
    assert any("colour" in p for p in check_overlay(shown, hidden, (20, 30, 60, 70), 2.0, (0, 255, 0)))


def test_dicom_lab_to_rgb() -> None:
    # white, black, and highdicom's encoding of sRGB (230, 25, 75)
    assert dicom_lab_to_rgb((65535, 32896, 32896)) == pytest.approx((255, 255, 255), abs=1)
    assert dicom_lab_to_rgb((0, 32896, 32896)) == (0, 0, 0)
    assert dicom_lab_to_rgb((32458, 51749, 40111)) == pytest.approx((230, 25, 75), abs=1)


def test_expected_box_fits_the_image_into_the_canvas() -> None:
    # 42 x 51 pixels of 1 mm in a 955 x 742 canvas: the height fits, 742/51 pixels per mm.
    x0, y0, x1, y1 = expected_box((955, 742), (42, 51), (1.0, 1.0), (0, 42), (0, 51))
    assert (y0, y1) == pytest.approx((0, 742))
    assert (x0 + x1) / 2 == pytest.approx(955 / 2)
    assert x1 - x0 == pytest.approx(42 * 742 / 51)
    # A wide canvas: the width fits.
    x0, y0, x1, y1 = expected_box((100, 1000), (50, 50), (2.0, 2.0), (0, 50), (0, 25))
    assert (x0, x1, y0, y1) == pytest.approx((0, 100, 450, 500))


class _Upstream(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        _Upstream.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        status = 200 if self.path.startswith("/dicom-web/studies") else 404
        body = b"[]" if status == 200 else b"nope"
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_server_serves_the_app_config_and_proxies_with_credentials(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html>ohif</html>")
    (dist / "app.bundle.js").write_text("console.log(1)")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    _Upstream.seen.clear()
    try:
        with OhifServer(dist, f"http://127.0.0.1:{upstream.server_address[1]}", "u", "p") as server:

            def get(path: str) -> tuple[int, bytes, str]:
                try:
                    with urllib.request.urlopen(server.url + path, timeout=10) as resp:
                        return resp.status, resp.read(), resp.headers.get("Content-Type", "")
                except urllib.error.HTTPError as err:
                    return err.code, err.read(), err.headers.get("Content-Type", "")

            assert get("/viewer?StudyInstanceUIDs=1.2.3")[1] == b"<html>ohif</html>"  # SPA route
            assert get("/app.bundle.js")[2].startswith("text/javascript")
            assert get("/missing.js")[0] == 404
            assert get("/%2e%2e/%2e%2e/etc/passwd")[0] == 404
            status, body, _ = get("/app-config.js")
            assert status == 200 and b"window.location.origin" in body and b'"/dicom-web"' in body
            status, body, ctype = get("/dicom-web/studies?PatientID=X&limit=5")
            assert (status, body, ctype) == (200, b"[]", "application/dicom+json")
            assert get("/dicom-web/nothing")[0] == 404
            assert server.upstream_errors == [("GET", "/dicom-web/nothing", 404)]
    finally:
        upstream.shutdown()
        upstream.server_close()
    first = _Upstream.seen[0]
    assert first["path"] == "/dicom-web/studies?PatientID=X&limit=5"
    assert first["authorization"] == "Basic dTpw"  # base64("u:p")
    assert "cookie" not in first


def test_app_config_points_the_data_source_at_the_proxy() -> None:
    text = app_config("/dicom-web")
    config = json.loads(text.split("window.config = ", 1)[1].split(";\n", 1)[0])
    assert config["defaultDataSourceName"] == config["dataSources"][0]["sourceName"]
    assert config["disableConfirmationPrompts"] is True
    assert "c.qidoRoot = c.wadoRoot = c.wadoUriRoot = root" in text
