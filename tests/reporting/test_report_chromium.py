"""The HTML report in a real browser: headless Chromium, offline, no console errors, every image decodes.

A checking script is inserted at the top of a copy of the report. It records uncaught
errors, failed resource loads and console.error calls, and after the load event writes
into the page, as JSON: the errors, each image's naturalWidth, and the order of the
per-case table after clicking its Dice header once and twice (the sortable table works).
Chromium dumps the DOM (``--dump-dom``) and the test parses that JSON. Chromium runs with
every network request sent to a dead proxy, so anything fetched from the network fails
and is reported.

CI: ``apt-get update && apt-get install -y chromium`` (Debian package ``chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from medseg.reporting.report import build_report

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_CHECK = """<script>
(function(){
  var errors = [];
  window.addEventListener('error', function(e){
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) {
      errors.push('failed to load ' + (t.src || t.href).slice(0, 80));
    }
    else { errors.push(String(e.message)); }
  }, true);
  window.addEventListener('unhandledrejection', function(e){
    errors.push('unhandled rejection ' + e.reason);
  });
  var original = console.error;
  console.error = function(){
    errors.push([].join.call(arguments, ' '));
    original.apply(console, arguments);
  };
  function column(table, index){
    return Array.prototype.map.call(table.tBodies[0].rows, function(r){
      return parseFloat(r.cells[index].getAttribute('data-v'));
    });
  }
  window.addEventListener('load', function(){
    var result = {errors: errors, images: [], sorted: null};
    Array.prototype.forEach.call(document.images, function(img){
      result.images.push({complete: img.complete, width: img.naturalWidth, height: img.naturalHeight});
    });
    var table = document.getElementById('cases');
    if (table) {
      var th = table.tHead.rows[0].cells[2];
      th.click();
      var up = column(table, 2);
      th.click();
      var down = column(table, 2);
      result.sorted = {header: th.textContent, ascending: up, descending: down};
    }
    var out = document.createElement('pre');
    out.id = 'medseg-check';
    out.textContent = JSON.stringify(result);
    document.body.appendChild(out);
  });
})();
</script>"""


def _browser() -> str:
    for name in _BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "no Chromium binary found (looked for chromium, chromium-browser, google-chrome); "
        "install it with: apt-get update && apt-get install -y chromium"
    )


def _load(html_file: Path, tmp_path: Path, check: str = _CHECK) -> dict:
    """Open ``html_file`` (with the checking script ``check``) in headless Chromium; return the
    JSON the script leaves in ``<pre id="medseg-check">``.

    WebGL2 (the report's NiiVue viewer) runs on SwiftShader, Chromium's software renderer.
    """
    text = html_file.read_text(encoding="utf-8")
    checked = tmp_path / f"checked_{html_file.name}"
    checked.write_text(text.replace("<head>", "<head>" + check, 1), encoding="utf-8")
    command = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--use-gl=angle",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--proxy-server=127.0.0.1:9",  # any network request goes to a closed port
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=30000",
        "--dump-dom",
        checked.resolve().as_uri(),
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=90)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Chromium could not run here: {exc}")
    match = re.search(r'<pre id="medseg-check">(.*?)</pre>', proc.stdout, re.S)
    if match is None:
        if "error while loading shared libraries" in proc.stderr or "Missing X server" in proc.stderr:
            pytest.skip(f"Chromium is installed but cannot start: {proc.stderr.strip()[:300]}")
        pytest.fail(f"the page did not finish loading (rc {proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    # console messages Chromium logged itself (e.g. errors raised before the checking script ran)
    result["console"] = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return result


@pytest.mark.slow
def test_report_loads_offline_without_errors_and_every_image_decodes(evaluation_dir, tmp_path):
    report = build_report(evaluation_dir, tmp_path / "report.html")
    result = _load(report, tmp_path)
    assert result["errors"] == [] and result["console"] == []
    assert len(result["images"]) == 7  # 6 overlays + the error against distance
    assert all(img["complete"] and img["width"] > 0 and img["height"] > 0 for img in result["images"])
    sorted_ = result["sorted"]
    assert sorted_["header"].startswith("Dice")
    assert sorted_["ascending"] == sorted(sorted_["ascending"]) and len(sorted_["ascending"]) == 14
    assert sorted_["descending"] == sorted(sorted_["ascending"], reverse=True)


@pytest.mark.slow
def test_the_check_catches_errors_broken_images_and_network_use(tmp_path):
    """The same check on a faulty page reports each fault (so the test above can fail)."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="data:image/png;base64,iVBORw0KGgoAAAAN">'  # truncated PNG
        '<img src="https://cdn.example.org/logo.png">'  # needs the network
        "<script>undefinedFunction();</script>"
        "<script>console.error('boom');</script></body></html>",
        encoding="utf-8",
    )
    result = _load(bad, tmp_path)
    assert [img["width"] for img in result["images"]] == [0, 0]
    text = " ".join(result["errors"])
    assert "undefinedFunction" in text and "boom" in text and "cdn.example.org" in text


def test_skips_with_a_clear_reason_without_chromium(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _browser()
