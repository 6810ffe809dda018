"""An interactive 3D viewer in the HTML report: NiiVue, inlined, with the cases as NIfTI data URLs.

NiiVue (``assets/niivue.umd.min.js``, BSD-2-Clause, see ``assets/README.md``) is inlined
once into the page, so the viewer works offline from the one HTML file. Each case goes
into the page as gzip NIfTI data URLs: the scan (windowed to 0-255 like the overlay
PNGs), the reference and the prediction (label colour tables in the overlay colours).
Volumes above :data:`VOXEL_BUDGET` voxels are downsampled for the page (block mean for
the scan, nearest neighbour for the masks) and the factor is printed next to the viewer;
metrics and PNG overlays always use the full-resolution volumes.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.errors import MedsegError
from medseg.evaluation.results import EvaluationResult
from medseg.io.formats import format_named
from medseg.reporting.html import esc

log = logging.getLogger(__name__)

__all__ = [
    "MAX_VIEWER_CASES",
    "NIIVUE_VERSION",
    "VOXEL_BUDGET",
    "ViewerCase",
    "downsample",
    "downsample_factors",
    "niivue_script",
    "viewer_case",
    "viewer_section",
]

#: Version of the vendored NiiVue browser bundle.
NIIVUE_VERSION = "0.69.0"
#: Most voxels of one volume in the page; larger volumes are downsampled.
VOXEL_BUDGET = 2_000_000
#: Evaluations with more cases put only the worst and best ones into the viewer.
MAX_VIEWER_CASES = 12
_ASSETS = Path(__file__).resolve().parent / "assets"
_LAYERS = ("scan", "reference", "prediction")
_MASK_OPACITY = 0.6

_VIEWER_JS = """
(function(){
  var data = JSON.parse(document.getElementById('medseg-viewer-data').textContent);
  var api = {nv: null, layers: [], data: data, ready: null};
  window.medsegViewer = api;
  function box(key){ return document.getElementById('medseg-nv-' + key); }
  function apply(){
    api.layers.forEach(function(key, index){
      var on = box(key) ? box(key).checked : true;
      api.nv.setOpacity(index, on ? data.opacity[key] : 0);
    });
  }
  async function show(index){
    var c = data.cases[index], nv = api.nv;
    while (nv.volumes.length) { nv.removeVolume(nv.volumes[nv.volumes.length - 1]); }
    var keys = data.layers.filter(function(key){ return c.layers[key]; });
    var images = await Promise.all(keys.map(function(key){
      var url = c.layers[key];
      return niivue.NVImage.loadFromBase64({base64: url.slice(url.indexOf(',') + 1), name: key + data.suffix,
        colormap: 'gray', opacity: data.opacity[key]});
    }));
    images.forEach(function(img, n){
      if (data.luts[keys[n]]) { img.setColormapLabel(data.luts[keys[n]]); }
      nv.addVolume(img);
    });
    api.layers = keys;
    data.layers.forEach(function(key){ if (box(key)) { box(key).disabled = !c.layers[key]; } });
    document.getElementById('medseg-nv-note').textContent = c.note;
    apply();
    nv.setSliceType(nv.sliceTypeMultiplanar);
    nv.updateGLVolume();
  }
  api.show = function(index){ api.ready = show(index); return api.ready; };
  api.nv = new niivue.Niivue({backColor: [0, 0, 0, 1], logLevel: 'error', isColorbar: false,
    multiplanarShowRender: 0, multiplanarLayout: 3, dragAndDropEnabled: false, show3Dcrosshair: false,
    crosshairWidth: 0.3, crosshairColor: [1, 1, 1, 0.5]});
  api.ready = api.nv.attachTo('medseg-nv-canvas').then(function(){ return show(0); });
  document.getElementById('medseg-nv-case').addEventListener('change', function(e){
    api.show(parseInt(e.target.value, 10));
  });
  data.layers.forEach(function(key){
    if (box(key)) { box(key).addEventListener('change', apply); }
  });
})();
"""


@functools.lru_cache(maxsize=1)
def niivue_script() -> str:
    """The vendored NiiVue browser bundle (exposes ``window.niivue``), safe inside ``<script>``.

    Raises:
        MedsegError: the asset is missing from the installation.
    """
    path = _ASSETS / "niivue.umd.min.js"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MedsegError(
            f"the report viewer's script {path} is missing: {exc}", hint="reinstall medseg"
        ) from None
    return text.replace("</script", "<\\/script")


def downsample_factors(shape: Sequence[int], budget: int = VOXEL_BUDGET) -> tuple[int, ...]:
    """Integer factors per axis, raised on the currently largest axis until the volume fits ``budget``."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    factors = [1] * len(shape)

    def size(axis: int) -> int:
        return -(-int(shape[axis]) // factors[axis])

    while int(np.prod([size(a) for a in range(len(shape))])) > budget:
        axis = max(range(len(shape)), key=lambda a: (size(a), -a))
        factors[axis] += 1
    return tuple(factors)


def downsample(array: np.ndarray, factors: Sequence[int], labels: bool) -> np.ndarray:
    """``array`` reduced by ``factors``: for labels the voxel nearest each block's centre,
    else the block mean. Edge blocks of a shape the factors do not divide are padded with edge values.
    """
    if all(f == 1 for f in factors):
        return array
    if labels:
        index = tuple(slice(f // 2, None, f) for f in factors)
        padded = np.pad(array, [(0, (-n) % f) for n, f in zip(array.shape, factors)], mode="edge")
        return np.ascontiguousarray(padded[index])
    padded = np.pad(
        array.astype(np.float32), [(0, (-n) % f) for n, f in zip(array.shape, factors)], mode="edge"
    )
    blocks = padded.reshape([v for n, f in zip(padded.shape, factors) for v in (n // f, f)])
    return blocks.mean(axis=tuple(range(1, 2 * len(factors), 2)))


def _downsampled_affine(affine: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """The affine of the block grid: voxel ``i`` sits at the centre ``i*f + (f-1)/2`` of its block."""
    scale = np.diag([*[float(f) for f in factors], 1.0])
    scale[:3, 3] = [(f - 1) / 2.0 for f in factors]
    return np.asarray(affine, dtype=np.float64) @ scale


def _nifti_data_url(array: np.ndarray, affine: np.ndarray, intensity: bool) -> str:
    """A gzip NIfTI-1 as a base64 data URL (scans carry cal_min/cal_max 0..255)."""
    import nibabel

    image = nibabel.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    if intensity:
        image.header["cal_min"], image.header["cal_max"] = 0.0, 255.0
    data = gzip.compress(image.to_bytes(), compresslevel=9, mtime=0)
    return "data:application/gzip;base64," + base64.b64encode(data).decode("ascii")


@dataclass
class ViewerCase:
    """One case of the viewer: its layers as data URLs and what was done to fit the page."""

    case: str
    caption: str
    layers: dict[str, str | None] = field(default_factory=dict)
    factors: tuple[int, ...] = (1, 1, 1)
    shape: tuple[int, ...] = ()

    @property
    def note(self) -> str:
        """What the viewer shows of this case (resolution, missing scan)."""
        grid = " x ".join(str(n) for n in self.shape)
        if any(f > 1 for f in self.factors):
            text = (
                f"{self.caption}. Downsampled by {' x '.join(str(f) for f in self.factors)} for the report "
                f"(from {grid} voxels; budget {VOXEL_BUDGET:,} voxels per volume; masks nearest neighbour) "
                "- metrics and PNG figures use the full resolution."
            )
        else:
            text = f"{self.caption}. Full resolution ({grid} voxels)."
        return (
            text if self.layers.get("scan") else text + " No scan: the evaluation recorded no image folder."
        )


def viewer_case(
    result: EvaluationResult, case: str, window: object | None = "auto", budget: int = VOXEL_BUDGET
) -> ViewerCase:
    """The scan, reference and prediction of ``case`` on the reference grid, downsampled to ``budget``.

    Raises:
        KeyError: ``case`` is not in the evaluation.
        MedsegError: a file that cannot be read any more.
    """
    from medseg.reporting.cases import case_title, load_case
    from medseg.reporting.overlay import scaled_intensities

    image, ref, pred = load_case(result, case)
    shape = tuple(int(n) for n in ref.spatial_shape)
    factors = downsample_factors(shape, budget)
    affine = _downsampled_affine(ref.affine, factors)
    layers: dict[str, str | None] = {"scan": None}
    if image is not None:
        gray = downsample(scaled_intensities(image, window), factors, labels=False)
        layers["scan"] = _nifti_data_url(np.rint(gray * 255.0).astype(np.uint8), affine, intensity=True)
    for key, volume in (("reference", ref), ("prediction", pred)):
        array = np.asarray(volume.array[..., 0] if volume.array.ndim == 4 else volume.array)
        small = downsample(array, factors, labels=True)  # in the mask's own dtype: no full-size copy
        dtype = np.uint8 if small.size == 0 or (small.min() >= 0 and small.max() < 256) else np.int16
        layers[key] = _nifti_data_url(small.astype(dtype), affine, intensity=False)
    return ViewerCase(case, case_title(result, case), layers, factors, shape)


def _lut(labels: Mapping[int, str], which: int) -> dict[str, list]:
    """A NiiVue label colour table: background transparent, classes in the overlay colours."""
    from medseg.reporting.overlay import class_colors

    colors = class_colors(labels)
    lut: dict[str, list] = {"R": [0], "G": [0], "B": [0], "A": [0], "I": [0], "labels": ["background"]}
    for label, name in sorted(labels.items()):
        hex_color = colors[label][which]
        for key, offset in (("R", 1), ("G", 3), ("B", 5)):
            lut[key].append(int(hex_color[offset : offset + 2], 16))
        lut["A"].append(255)
        lut["I"].append(int(label))
        lut["labels"].append(str(name))
    return lut


def _legend(labels: Mapping[int, str]) -> str:
    from medseg.reporting.overlay import class_colors

    colors = class_colors(labels)
    items = []
    for label, name in sorted(labels.items()):
        ref, pred = colors[label]
        items.append(
            f'<span class="swatch" style="background:{esc(ref)}"></span>/'
            f'<span class="swatch" style="background:{esc(pred)}"></span> {esc(name)}'
        )
    return " &nbsp; ".join(items)


def viewer_section(
    result: EvaluationResult,
    cases: Sequence[str],
    window: object | None = "auto",
    budget: int = VOXEL_BUDGET,
) -> str:
    """HTML of the viewer (NiiVue inlined once) for ``cases``; empty when none can be read."""
    entries = []
    for case in cases:
        try:
            entry = viewer_case(result, case, window, budget)
        except MedsegError as exc:
            log.warning("%s is left out of the viewer: %s", case, exc)
            continue
        entries.append(entry)
    if not entries:
        return ""
    data = {
        "layers": list(_LAYERS),
        "suffix": format_named("nifti").suffixes[0],  # tells NiiVue the layers are gzipped NIfTI
        "opacity": {"scan": 1.0, "reference": _MASK_OPACITY, "prediction": _MASK_OPACITY},
        "luts": {"reference": _lut(result.labels, 0), "prediction": _lut(result.labels, 1)},
        "cases": [{"case": e.case, "note": e.note, "layers": e.layers} for e in entries],
    }
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    options = "".join(f'<option value="{n}">{esc(e.caption)}</option>' for n, e in enumerate(entries))
    boxes = "".join(
        f'<label><input type="checkbox" id="medseg-nv-{key}" checked> {key}</label>' for key in _LAYERS
    )
    scope = "every case" if len(entries) == len(result.cases) else "the worst and best cases"
    return (
        "<h2>Viewer</h2>"
        f'<p class="meta">{len(entries)} cases ({scope}) in three planes: scroll to move through the '
        "slices, click to move the crosshair, right-drag to change the contrast. Reference and prediction "
        f"are label layers (reference/prediction colour per class: {_legend(result.labels)}). "
        f"Viewer: NiiVue {NIIVUE_VERSION} (BSD-2-Clause), inlined; the page needs no network.</p>"
        f'<div class="viewer-bar"><label>case <select id="medseg-nv-case">{options}</select></label>'
        f"{boxes}</div>"
        '<div class="viewer"><canvas id="medseg-nv-canvas"></canvas></div>'
        f'<p class="meta" id="medseg-nv-note">{esc(entries[0].note)}</p>'
        f'<script type="application/json" id="medseg-viewer-data">{payload}</script>'
        f"<script>{niivue_script()}</script><script>{_VIEWER_JS}</script>"
    )
