"""The report's NiiVue viewer in headless Chromium (WebGL2 on SwiftShader), offline.

The checking script waits for the viewer's first case, then reads the canvas back
(``gl.readPixels`` right after ``drawScene``) while it toggles the layer checkboxes the
way a reader would: everything on, the prediction alone, nothing, the prediction again,
the reference alone.
It counts, per state, the pixels that are not background and the pixels in the colour
of each class of the prediction and of the reference layer. Then it switches the case.
"""

from __future__ import annotations

import json

import pytest

from medseg.reporting.overlay import class_colors
from medseg.reporting.report import build_report
from tests.reporting.test_report_chromium import _load

_VIEWER_CHECK = """<script>
(function(){
  var errors = [];
  window.addEventListener('error', function(e){
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) {
      errors.push('failed to load ' + (t.src || t.href).slice(0, 80));
    } else { errors.push(String(e.message)); }
  }, true);
  window.addEventListener('unhandledrejection', function(e){
    errors.push('unhandled rejection ' + e.reason);
  });
  var original = console.error;
  console.error = function(){
    errors.push([].join.call(arguments, ' '));
    original.apply(console, arguments);
  };
  function rgb(hex){ return [1, 3, 5].map(function(i){ return parseInt(hex.slice(i, i + 2), 16); }); }
  function grab(v, colors){
    v.nv.drawScene();
    var gl = v.nv.gl, w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
    var px = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    var out = {width: w, height: h, foreground: 0, colors: {}};
    var targets = Object.keys(colors).map(function(k){ return [k, rgb(colors[k])]; });
    targets.forEach(function(t){ out.colors[t[0]] = 0; });
    for (var i = 0; i < px.length; i += 4) {
      if (px[i] + px[i + 1] + px[i + 2] > 24) { out.foreground++; }
      targets.forEach(function(t){
        var c = t[1];  // the class colour at the layer's opacity, over black
        var a = v.data.opacity[t[0].split(':')[0]];
        if (Math.abs(px[i] - c[0] * a) < 24 && Math.abs(px[i + 1] - c[1] * a) < 24
            && Math.abs(px[i + 2] - c[2] * a) < 24) { out.colors[t[0]]++; }
      });
    }
    return out;
  }
  function toggle(key){ document.getElementById('medseg-nv-' + key).click(); }
  window.addEventListener('load', async function(){
    var result = {errors: errors};
    try {
      var v = window.medsegViewer, colors = COLORS;
      await v.ready;
      result.volumes = v.nv.volumes.length;
      result.layers = v.layers.slice();
      result.sliceType = v.nv.opts.sliceType;
      result.all = grab(v, colors);
      toggle('scan'); toggle('reference');
      result.prediction = grab(v, colors);
      toggle('prediction');
      result.none = grab(v, colors);
      result.opacityOff = v.nv.volumes.map(function(x){ return x.opacity; });
      toggle('prediction');
      result.again = grab(v, colors);
      result.opacityOn = v.nv.volumes.map(function(x){ return x.opacity; });
      toggle('prediction'); toggle('reference');
      result.reference = grab(v, colors);
      var select = document.getElementById('medseg-nv-case');
      result.options = select.options.length;
      select.value = '1';
      select.dispatchEvent(new Event('change'));
      await v.ready;
      result.second = {volumes: v.nv.volumes.length, frame: grab(v, colors),
        note: document.getElementById('medseg-nv-note').textContent};
    } catch (e) { errors.push('check failed: ' + e); }
    var out = document.createElement('pre');
    out.id = 'medseg-check';
    out.textContent = JSON.stringify(result);
    document.body.appendChild(out);
  });
})();
</script>"""


def _check_script() -> str:
    labels = {1: "head", 2: "tail"}
    colors = {}
    for label, (ref, pred) in class_colors(labels).items():
        colors[f"reference:{labels[label]}"] = ref
        colors[f"prediction:{labels[label]}"] = pred
    return _VIEWER_CHECK.replace("COLORS", json.dumps(colors))


@pytest.mark.slow
def test_viewer_draws_the_scan_and_toggles_the_prediction_layer(evaluation_dir, tmp_path):
    report = build_report(evaluation_dir, tmp_path / "report.html")
    result = _load(report, tmp_path, check=_check_script())
    assert result["errors"] == [] and result["console"] == []
    assert result["volumes"] == 3 and result["layers"] == ["scan", "reference", "prediction"]
    assert result["options"] == 7  # every case of the small evaluation
    everything, prediction, none, again = (result[k] for k in ("all", "prediction", "none", "again"))
    # the canvas drew: most of the multiplanar view shows the scan
    assert everything["foreground"] > 0.05 * everything["width"] * everything["height"]
    # the prediction alone: its two class colours, nothing of the reference's
    for name in ("head", "tail"):
        assert prediction["colors"][f"prediction:{name}"] > 200, prediction
        assert prediction["colors"][f"reference:{name}"] < 20, prediction
    # every layer off: nothing but the crosshair and the orientation letters; the prediction back on:
    # the same picture as before
    assert none["foreground"] < 0.25 * prediction["foreground"]
    assert sum(none["colors"].values()) < 20
    assert again == prediction
    # the reference alone, in its own colours
    for name in ("head", "tail"):
        assert result["reference"]["colors"][f"reference:{name}"] > 200, result["reference"]
        assert result["reference"]["colors"][f"prediction:{name}"] < 20, result["reference"]
    assert result["opacityOff"][2] == 0 and result["opacityOn"][2] == pytest.approx(0.6)
    second = result["second"]
    assert second["volumes"] == 3 and second["note"].startswith("case_")
    # another case keeps the reader's layer choice (the reference alone)
    assert second["frame"]["colors"]["reference:head"] > 200
    assert second["frame"]["colors"]["prediction:head"] < 20


@pytest.mark.slow
def test_the_viewer_check_can_fail_on_a_page_without_a_viewer(tmp_path):
    """On a page where NiiVue never starts, the check reports it (so the test above can fail)."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><title>x</title></head><body><p>no viewer</p></body></html>")
    result = _load(bad, tmp_path, check=_check_script())
    assert any("check failed" in e for e in result["errors"])
    assert "volumes" not in result
