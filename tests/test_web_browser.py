"""The page in a real browser: Debian's headless Chromium, driven by Playwright.

Uploads chelsea, explains it with Grad-CAM on the embedded EfficientNet-Lite0, checks
the class, moves the opacity slider (the overlay is redrawn in the browser) and
downloads the map; a screenshot of the page is written (``SALMAP_SCREENSHOT=path``
also keeps one, as the README's ``docs/web_page.png`` was made).
"""

from __future__ import annotations

import io
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image
from web_server import running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(default_model):
    from salmap.web import create_app

    app = create_app(default_model)
    with running_server(app) as url:
        yield url
    app.state.service.close()


# Mean absolute difference between the overlay and the photo canvases, in the page.
_DIFFERENCE = """(root) => {
  const read = (name) => {
    const canvas = document.querySelector(`${root} canvas.${name}`);
    return canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  };
  const [overlay, photo] = [read('overlay'), read('photo')];
  let total = 0;
  for (let i = 0; i < overlay.length; i++) total += Math.abs(overlay[i] - photo[i]);
  return total / overlay.length;
}"""


def _difference(page, root: str = "#results") -> float:
    return page.evaluate(_DIFFERENCE, root)


def test_upload_explain_with_grad_cam_adjust_and_download(browser, server, chelsea, tmp_path):
    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(np.round(chelsea * 255).astype(np.uint8)).save(photo, quality=95)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)

    page.set_input_files("#file", str(photo))
    page.uncheck("#methods input[value=vanilla]")
    page.check("#methods input[value=grad-cam]")
    page.click("#run")
    heading = page.wait_for_selector("#results .result h3", timeout=40_000)
    assert "grad-cam" in heading.inner_text()
    assert "Egyptian cat (285)" in heading.inner_text()
    assert page.inner_text("#predictions li.chosen").startswith("Egyptian cat (285)")

    # Opacity redraws in the browser: 0 shows the photo untouched, 100 the map strongly.
    page.fill("#opacity", "0")
    assert _difference(page) == 0.0
    page.fill("#opacity", "100")
    strong = _difference(page)
    page.fill("#opacity", "30")
    assert strong > 2.5 * _difference(page) > 0
    size = page.eval_on_selector("#results canvas.overlay", "c => [c.width, c.height]")
    assert size == [451, 300]

    with page.expect_download() as download:
        page.click("#results a.download-png")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "grad-cam_map.png"
    coloured = np.asarray(Image.open(saved).convert("RGB"), float)
    assert coloured.shape == (300, 451, 3)
    # Grad-CAM of "Egyptian cat" is hottest on the cat (the left two thirds of the
    # photo), not on the background to the right: inferno is bright where hot.
    brightness = coloured.sum(axis=2)
    y, x = np.unravel_index(np.argmax(brightness), brightness.shape)
    assert x < 330, (x, y)

    screenshot = tmp_path / "web_page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert Image.open(io.BytesIO(screenshot.read_bytes())).size[0] == 1400
    if os.environ.get("SALMAP_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["SALMAP_SCREENSHOT"])
    assert not errors
    context.close()


def test_static_scan_path_and_motion_video_tabs(browser, server, tmp_path):
    from salmap.io.video import VideoWriter
    from salmap.motion import synthetic_video

    clip = tmp_path / "clip.avi"
    with VideoWriter(clip, fps=10) as writer:
        for frame, _mask in synthetic_video(12, (160, 120), objects=1, speed=3.0, seed=2):
            writer.write(frame)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)

    page.click(".tab[data-tab=static]")
    page.select_option("#sample", "coffee")
    page.fill("#static-form input[name=fixations]", "3")
    page.click("#static-form button")
    heading = page.wait_for_selector("#static-results .result h3", timeout=40_000)
    assert heading.inner_text().startswith("itti")
    # The scan path is drawn over the photo: the photo canvas differs from the image.
    drawn = page.evaluate(
        """async () => {
          const canvas = document.querySelector('#static-results canvas.photo');
          const image = new Image();
          image.src = '/api/samples/coffee.png';
          await image.decode();
          const plain = document.createElement('canvas');
          [plain.width, plain.height] = [canvas.width, canvas.height];
          plain.getContext('2d').drawImage(image, 0, 0);
          const a = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          const b = plain.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let changed = 0;
          for (let i = 0; i < a.length; i += 4) changed += a[i] !== b[i] || a[i + 2] !== b[i + 2];
          return changed / (a.length / 4);
        }"""
    )
    assert 0.001 < drawn < 0.2  # circles, lines and numbers, not a wash over the photo

    page.click(".tab[data-tab=motion]")
    page.set_input_files("#video", str(clip))
    page.click("#motion-form button")
    page.wait_for_selector("#motion-results video", timeout=60_000)
    # (polled from here: wait_for_function evaluates strings, which the page's CSP forbids)
    ready = "v => v.readyState >= 2"
    deadline = time.monotonic() + 20
    while not page.eval_on_selector("#motion-results video", ready):
        assert time.monotonic() < deadline, "the overlay video does not play"
        page.wait_for_timeout(100)
    size = page.eval_on_selector("#motion-results video", "v => [v.videoWidth, v.videoHeight]")
    assert size == [160, 120]
    assert "12 frames" in page.inner_text("#motion-results")
    assert not errors
    page.close()
