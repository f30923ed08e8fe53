"""The editor page in a real headless browser (Debian chromium + chromium-driver, driven by Selenium).

Skipped, with the reason, when selenium, chromium or chromedriver is missing
(``apt-get install chromium chromium-driver``; ``pip install selenium``).
"""

from __future__ import annotations

import base64
import io
import shutil
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from hairsynth import Synthesizer, create_model
from hairsynth.editor import make_server

selenium = pytest.importorskip("selenium", reason="needs selenium (the test extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason=f"needs a headless browser: chromium={CHROMIUM}, chromedriver={DRIVER} "
    "(Debian: apt-get install chromium chromium-driver)",
)


def _decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=900,600",
    ):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def test_draw_region_and_stroke_then_synthesize(browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    torch.manual_seed(0)
    yy, xx = np.mgrid[0:128, 0:128]
    photo = np.stack([xx * 2, yy * 2, 255 - xx], -1).astype(np.uint8)  # a smooth colour ramp
    syn = Synthesizer(create_model("hairsynth_tiny", feather_radius=2))
    server = make_server(syn, photo, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        WebDriverWait(browser, 20).until(
            lambda d: d.execute_script("return document.getElementById('mask').width") == 128
        )
        canvas = browser.find_element(By.ID, "strokes")
        # paint the region: a brush drag across the middle (offsets are from the canvas centre)
        act = ActionChains(browser).move_to_element_with_offset(canvas, -30, -10).click_and_hold()
        for dx in range(-30, 31, 5):
            act = act.move_to_element_with_offset(canvas, dx, 10 if dx % 10 else -10)
        act.release().perform()
        # a red guide stroke inside the region
        browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=stroke]").click()
        browser.execute_script("document.getElementById('color').value = '#d02020'")
        act = ActionChains(browser).move_to_element_with_offset(canvas, -25, 0).click_and_hold()
        for dx in range(-20, 26, 5):
            act = act.move_to_element_with_offset(canvas, dx, 0)
        act.release().perform()
        n_strokes = browser.execute_script("return strokes.length")
        assert n_strokes == 1
        browser.find_element(By.ID, "run").click()
        WebDriverWait(browser, 60).until(lambda d: "done" in d.find_element(By.ID, "status").text)
        out = _decode(browser.find_element(By.ID, "out").get_attribute("src"))
        region = (
            _decode(browser.execute_script("return document.getElementById('mask').toDataURL('image/png')"))[
                ..., 3
            ]
            > 0
        )
    finally:
        server.shutdown()
        server.server_close()
    assert out.shape == photo.shape
    assert 1500 < region.sum() < 128 * 128 // 2  # the painted band, not the whole canvas
    changed = np.abs(out.astype(int) - photo.astype(int)).max(-1) > 0
    assert changed.any() and not (changed & ~region).any()  # it changed, and only inside the painted region
