// Drive OHIF in headless Chromium (playwright-core): open a study, load its SEG the way a user
// does (double-click the SEG thumbnail), go to one slice, and take two screenshots of the
// viewport, with the segmentation shown and hidden. Everything the Python test checks is written
// to <out>/result.json; the pixels are checked in Python (tests/viewers/test_ohif.py).
//
// Usage: NODE_PATH=<dir>/node_modules node ohif_check.js <job.json>
// job.json: {url, studyUid, segSeriesUid, imagePosition: [x, y, z] (LPS, of the slice to show),
//            worldCorners: [[x, y, z], ...] (the mask's outline in LPS), out, chromium, timeoutMs}
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const result = { console: [], pageErrors: [], failedRequests: [], steps: [] };
const write = () => fs.writeFileSync(path.join(job.out, 'result.json'), JSON.stringify(result, null, 2));
const step = name => {
  result.steps.push(name);
  write();
};

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'medseg-ohif-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: job.chromium,
    headless: true,
    viewport: { width: 1280, height: 800 },
    deviceScaleFactor: 1,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--use-gl=angle',
      '--use-angle=swiftshader',
      '--enable-unsafe-swiftshader',
    ],
  });
  const timeout = job.timeoutMs || 120000;
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(timeout);
    page.on('console', m => {
      if (m.type() === 'error' || m.type() === 'warning') result.console.push(`${m.type()}: ${m.text()}`.slice(0, 500));
    });
    page.on('pageerror', e => result.pageErrors.push(String(e).slice(0, 500)));
    page.on('requestfailed', r => result.failedRequests.push(`${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', r => {
      if (r.status() >= 400) result.failedRequests.push(`${r.request().method()} ${r.url()} -> ${r.status()}`);
    });

    await page.goto(`${job.url}/viewer?StudyInstanceUIDs=${job.studyUid}`);
    step('opened viewer');
    // The first viewport shows an image (OHIF's hanging protocol puts the MR there).
    await page.waitForFunction(() => {
      const re = window.cornerstone?.getRenderingEngines?.()?.[0];
      const vp = re?.getViewports?.()?.[0];
      return !!(vp && vp.getImageData && vp.getImageData());
    });
    result.webgl = await page.evaluate(() => {
      const gl = document.createElement('canvas').getContext('webgl2');
      const ext = gl && gl.getExtension('WEBGL_debug_renderer_info');
      return {
        webgl2: !!gl,
        renderer: gl ? gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER) : null,
        cpuRendering: window.cornerstone.getShouldUseCPURendering?.() ?? null,
      };
    });
    step('image rendered');
    await page.screenshot({ path: path.join(job.out, 'study.png') });

    // OHIF's first-visit tour (shepherd.js) covers the page with a modal: close it.
    for (let i = 0; i < 5; i++) {
      const tour = page.locator('.shepherd-element');
      if (!(await tour.count()) || !(await tour.first().isVisible())) break;
      const cancel = page.locator('.shepherd-cancel-icon');
      if (await cancel.count()) await cancel.first().click();
      else await page.keyboard.press('Escape');
      await page.waitForTimeout(300);
      if (i === 0) step('closed the onboarding tour');
    }

    // Load the SEG as a user does: double-click its entry in the study browser (a SEG has no
    // image, so its entry is 'study-browser-thumbnail-no-image'); the first word is the modality.
    const segThumb = () =>
      page.evaluate(() => {
        const all = [...document.querySelectorAll('[data-cy^="study-browser-thumbnail"]')];
        const hit = all.find(t => t.innerText.trim().split('\n')[0].trim() === 'SEG');
        return { texts: all.map(t => t.innerText), id: hit ? hit.id : null };
      });
    await page.waitForFunction(() =>
      [...document.querySelectorAll('[data-cy^="study-browser-thumbnail"]')].some(
        t => t.innerText.trim().split('\n')[0].trim() === 'SEG'
      )
    );
    const found = await segThumb();
    result.thumbnails = found.texts;
    await page.locator(`[id="${found.id}"]`).dblclick();
    step('double-clicked SEG thumbnail');
    await page.waitForFunction(() => {
      const s = window.services.segmentationService;
      return s.getSegmentations().length > 0;
    });
    step('segmentation loaded');
    // Let OHIF finish putting the SEG on the viewport (it may swap the viewport's data).
    await page.waitForFunction(() => {
      const { segmentationService, viewportGridService } = window.services;
      const vpId = viewportGridService.getActiveViewportId();
      const reps = segmentationService.getSegmentationRepresentations(vpId) || [];
      const re = window.cornerstone.getRenderingEngines()[0];
      const vp = re.getViewport(vpId);
      return reps.length > 0 && vp && vp.getImageData && !!vp.getImageData();
    });
    step('segmentation on viewport');
    await page.waitForTimeout(1500);

    // The segmentation as OHIF holds it: segments and labelled voxels per segment.
    result.segmentation = await page.evaluate(() => {
      const { segmentationService, viewportGridService } = window.services;
      const vpId = viewportGridService.getActiveViewportId();
      const [s] = segmentationService.getSegmentations();
      const labelmap = s.representationData.Labelmap || {};
      const counts = {};
      const add = data => {
        for (let i = 0; i < data.length; i++) if (data[i]) counts[data[i]] = (counts[data[i]] || 0) + 1;
      };
      const cs = window.cornerstone;
      if (labelmap.volumeId && cs.cache.getVolume(labelmap.volumeId)) {
        add(cs.cache.getVolume(labelmap.volumeId).voxelManager.getCompleteScalarDataArray());
      } else {
        for (const id of labelmap.imageIds || []) {
          const img = cs.cache.getImage(id);
          if (img) add(img.voxelManager ? img.voxelManager.getScalarData() : img.getPixelData());
        }
      }
      const color = segmentationService.getSegmentColor
        ? segmentationService.getSegmentColor(vpId, s.segmentationId, 1)
        : null;
      return {
        id: s.segmentationId,
        color: color ? Array.from(color) : null,
        label: s.label,
        segments: Object.values(s.segments)
          .filter(Boolean)
          .map(g => ({ index: g.segmentIndex, label: g.label })),
        counts,
        viewportId: vpId,
        viewportType: cs.getRenderingEngines()[0].getViewport(vpId).type,
        representations: (segmentationService.getSegmentationRepresentations(vpId) || []).map(r => ({
          type: r.type,
          visible: r.visible,
        })),
      };
    });
    step('read segmentation state');

    // Go to the slice whose image position is job.imagePosition.
    result.navigation = await page.evaluate(async pos => {
      const cs = window.cornerstone;
      const vpId = window.services.viewportGridService.getActiveViewportId();
      const vp = cs.getRenderingEngines()[0].getViewport(vpId);
      const ids = vp.getImageIds();
      const near = id => {
        const p = cs.metaData.get('imagePlaneModule', id)?.imagePositionPatient || [1e9, 1e9, 1e9];
        return Math.hypot(p[0] - pos[0], p[1] - pos[1], p[2] - pos[2]);
      };
      let index = 0;
      ids.forEach((id, i) => {
        if (near(id) < near(ids[index])) index = i;
      });
      await cs.utilities.jumpToSlice(vp.element, { imageIndex: index });
      vp.render();
      await new Promise(r => setTimeout(r, 1000));
      const current = vp.getCurrentImageId();
      return {
        imageIndex: index,
        distance: near(ids[index]),
        shownPosition: cs.metaData.get('imagePlaneModule', current)?.imagePositionPatient,
        sliceIndex: vp.getSliceIndex ? vp.getSliceIndex() : null,
      };
    }, job.imagePosition);
    step('navigated to slice');

    // Where the viewport draws the mask's corners (cornerstone's own world-to-canvas mapping),
    // the canvas's place on the page, and its camera.
    const geometry = () =>
      page.evaluate(corners => {
        const cs = window.cornerstone;
        const vpId = window.services.viewportGridService.getActiveViewportId();
        const vp = cs.getRenderingEngines()[0].getViewport(vpId);
        const r = vp.canvas.getBoundingClientRect();
        const cam = vp.getCamera();
        return {
          canvasRect: { x: r.x, y: r.y, width: r.width, height: r.height },
          canvasPixels: { width: vp.canvas.width, height: vp.canvas.height },
          devicePixelRatio: window.devicePixelRatio,
          camera: { parallelScale: cam.parallelScale, focalPoint: cam.focalPoint, viewUp: cam.viewUp, viewPlaneNormal: cam.viewPlaneNormal },
          cornersOnCanvas: corners.map(c => vp.worldToCanvas(c)),
        };
      }, job.worldCorners);
    result.geometry = await geometry();

    const setVisible = visible =>
      page.evaluate(async v => {
        const { segmentationService, viewportGridService } = window.services;
        const vpId = viewportGridService.getActiveViewportId();
        const [s] = segmentationService.getSegmentations();
        for (const g of Object.values(s.segments).filter(Boolean)) {
          segmentationService.setSegmentVisibility(vpId, s.segmentationId, g.segmentIndex, v);
        }
        window.cornerstone.getRenderingEngines()[0].getViewport(vpId).render();
        await new Promise(r => setTimeout(r, 1000));
      }, visible);
    await setVisible(true);
    await page.screenshot({ path: path.join(job.out, 'seg_shown.png') });
    await setVisible(false);
    await page.screenshot({ path: path.join(job.out, 'seg_hidden.png') });
    await setVisible(true);
    result.geometryAfter = await geometry();
    step('screenshots taken');
    result.ok = true;
  } catch (e) {
    result.error = String(e && e.stack ? e.stack : e).slice(0, 3000);
    try {
      const page = context.pages()[0];
      if (page) await page.screenshot({ path: path.join(job.out, 'failure.png') });
    } catch (_) {
      // no screenshot of a dead page
    }
  } finally {
    write();
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch(e => {
  result.error = String(e);
  write();
  process.exit(1);
});
