"""Screenshot of the editor with a real edit (headless Chromium + Selenium), for the report.

    python packages/hairsynth/reproduce/editor_screenshot.py --out reports/hairsynth/editor.png [--data DIR]

Serves a held-out celeb1k-hair test photo with its hair mask as the initial region and the shipped model,
draws three copper guide strokes in the page, presses *synthesize* and saves a screenshot of the page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time

import numpy as np
from PIL import Image


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="reports/hairsynth/editor.png")
    p.add_argument("--data", default=os.environ.get("SHARED_DATA", "/work/shared/data"))
    p.add_argument("--photo", default="28402")
    args = p.parse_args()
    import torch
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from hairsynth import Synthesizer
    from hairsynth.editor import make_server

    torch.set_num_threads(1)
    root = os.path.join(args.data, "celeb1k-hair", "test")
    photo = Image.open(os.path.join(root, "images", f"{args.photo}.jpg")).convert("RGB")
    mask = Image.fromarray(
        (
            (np.asarray(Image.open(os.path.join(root, "masks", f"{args.photo}.png")).convert("L")) > 127)
            * 255
        ).astype(np.uint8)
    )
    server = make_server(Synthesizer.pretrained(), photo, mask, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1000,560",
    ):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        drv.get(f"http://127.0.0.1:{server.server_address[1]}/")
        WebDriverWait(drv, 30).until(
            lambda d: d.execute_script("return document.getElementById('mask').width") == photo.width
        )
        time.sleep(1.0)  # the initial region image is drawn on the canvas
        drv.execute_script("document.body.style.userSelect = 'none'")  # drags must not select the page
        canvas = drv.find_element(By.ID, "strokes")
        drv.find_element(By.CSS_SELECTOR, "input[name=mode][value=stroke]").click()
        drv.execute_script("document.getElementById('color').value = '#c0501e'")
        drv.execute_script("document.getElementById('width').value = '4'")
        hm = np.asarray(mask) > 0
        _ys, xs = np.nonzero(hm)
        cx, cy = photo.width / 2, photo.height / 2
        for k in range(3):  # three strokes down through the hair, left, middle, right
            x = float(np.percentile(xs, 20 + 30 * k))
            col = hm[:, int(x)]
            rows = np.nonzero(col)[0]
            if len(rows) < 10:
                continue
            y0, y1 = rows.min() + 5, rows.max() - 5
            act = (
                ActionChains(drv)
                .move_to_element_with_offset(canvas, int(x - cx), int(y0 - cy))
                .click_and_hold()
            )
            for t in np.linspace(0, 1, 12)[1:]:
                act = act.move_to_element_with_offset(
                    canvas, int(x - cx + 6 * np.sin(3 * t)), int(y0 + t * (y1 - y0) - cy)
                )
            act.release().perform()
            print("stroke", k, "->", drv.execute_script("return strokes.length"), "strokes on the page")
        n = drv.execute_script("return strokes.length")
        if n == 0:
            raise SystemExit("no stroke was drawn on the page")
        drv.find_element(By.ID, "run").click()
        WebDriverWait(drv, 120).until(lambda d: "done" in d.find_element(By.ID, "status").text)
        time.sleep(0.5)
        drv.execute_script("window.getSelection().removeAllRanges()")
        drv.save_screenshot(args.out)
        print("saved", args.out, n, "strokes;", drv.find_element(By.ID, "status").text)
    finally:
        drv.quit()
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
