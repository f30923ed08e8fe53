"""The web editor's page-to-server contract, without a browser.

Three levels:

1. The served HTML: every element the script looks up exists, with the type the script expects; every
   URL the script loads is served.
2. The POST payload the page builds (mask canvas as an RGBA PNG data URL, alpha > 0 = region; strokes in
   canvas coordinates shifted to pixel centres; colours from the colour picker), built here in Python the
   way the script builds it, and answered; malformed requests are answered with 400 + ``{"error"}``,
   which is what the page's error branch reads.
3. The page's own JavaScript, run in Node.js (skipped when ``node`` is not on PATH) against a minimal DOM
   stub and the live server: mouse events on the stroke canvas, the colour/width inputs, undo, paint
   mode, the ``synthesize`` button (real ``fetch``), the status line and the output image, and the error
   branch.

Untested (needs a real browser): the canvas pixels themselves (brush painting with ``arc``/``fill``, the
erase compositing ``destination-out``, drawing ``/mask.png`` into the canvas, ``toDataURL`` encoding: the
stub returns a PNG made here), CSS layout (the two canvases overlaying the photo), real mouse-event
dispatch and browser differences.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from hairsynth import Synthesizer, create_model
from hairsynth.editor import make_server

H, W = 40, 48


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, tuple[str, dict[str, str | None]]] = {}
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if d.get("id"):
            self.by_id[str(d["id"])] = (tag, d)
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def _png_url(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _region_png() -> tuple[np.ndarray, str]:
    rgba = np.zeros((H, W, 4), np.uint8)
    # the page paints with fillStyle rgba(255,0,0,0.35): alpha round(0.35 * 255) = 89; erased pixels: alpha 0
    rgba[10:30, 12:36] = (255, 0, 0, 89)
    return rgba, _png_url(rgba)


@pytest.fixture
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((H, W, 3)) * 255).astype(np.uint8)


@pytest.fixture
def editor(photo: np.ndarray, device) -> Iterator[str]:
    init = np.zeros((H, W), np.uint8)
    init[4:12, 6:20] = 1  # initial region served as /mask.png
    syn = Synthesizer(create_model("hairsynth_tiny", feather_radius=2), device=device)
    server = make_server(syn, photo, init, port=0)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _page(base: str) -> tuple[_Elements, str]:
    html = urllib.request.urlopen(base + "/").read().decode()
    p = _Elements()
    p.feed(html)
    assert len(p.scripts) == 1
    return p, p.scripts[0]


def _post(base: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(base + "/synthesize", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_page_elements_match_the_script(editor):
    p, js = _page(editor)
    # every element the script looks up exists, with the tag the script uses it as
    looked_up = set(re.findall(r"getElementById\('([a-z]+)'\)", js))
    assert looked_up == {
        "img",
        "mask",
        "strokes",
        "color",
        "width",
        "brush",
        "undo",
        "clear",
        "run",
        "status",
        "out",
    }
    assert looked_up <= set(p.by_id)
    tags = {k: v[0] for k, v in p.by_id.items()}
    assert tags["mask"] == tags["strokes"] == "canvas" and tags["img"] == tags["out"] == "img"
    assert {tags[k] for k in ("undo", "clear", "run")} == {"button"}
    assert p.by_id["color"][1]["type"] == "color" and p.by_id["width"][1]["type"] == "range"
    assert p.by_id["img"][1]["src"] == "/image.png"
    # the mode radios the script reads with querySelector('input[name=mode]:checked')
    assert "input[name=mode]:checked" in js and {"mask", "erase", "stroke"} <= set(
        re.findall(r'value="(\w+)"', _raw(editor))
    )
    # every URL the script loads is served: the initial mask (GET) and the synthesis (POST, JSON)
    assert set(re.findall(r"'(/[a-z.]+)'", js)) == {"/mask.png", "/synthesize"}
    for url in ("/image.png", "/mask.png"):
        with urllib.request.urlopen(editor + url) as r:
            assert r.headers["Content-Type"] == "image/png" and r.read()[:4] == b"\x89PNG"
    assert "method:'POST'" in js and "'Content-Type':'application/json'" in js
    # the fields of the answer the script reads
    assert {"j.error", "j.image", "j.seconds"} <= set(re.findall(r"j\.\w+", js))


def _raw(base: str) -> str:
    return urllib.request.urlopen(base + "/").read().decode()


def test_initial_mask_sent_back_unchanged(editor, photo):
    """The page draws /mask.png into its mask canvas; sent back untouched, it is the initial region."""
    init_png = urllib.request.urlopen(editor + "/mask.png").read()
    rgba = np.asarray(Image.open(io.BytesIO(init_png)))
    assert rgba.shape == (H, W, 4) and (rgba[..., 3] > 0).sum() == 8 * 14
    body = {"mask": "data:image/png;base64," + base64.b64encode(init_png).decode(), "strokes": []}
    code, res = _post(editor, json.dumps(body).encode())
    assert code == 200
    out = _decode(res["image"])
    changed = np.argwhere((out != photo).any(-1))
    # only pixels within the feather radius (2) of the initial region [4:12, 6:20] may change
    assert len(changed) > 0
    assert (
        changed[:, 0].min() >= 2
        and changed[:, 0].max() <= 13
        and changed[:, 1].min() >= 4
        and changed[:, 1].max() <= 21
    )


def test_payload_as_the_page_builds_it(editor, photo):
    rgba, url = _region_png()
    # strokes as the page sends them: canvas coordinates (pixel centres at +0.5) minus 0.5, so
    # fractional values are normal; the colour is the picker's '#3b2a1e' parsed as hex / 255
    color = [0x3B / 255, 0x2A / 255, 0x1E / 255]
    strokes = [{"points": [[14.0, 12.0], [21.25, 18.75], [30.0, 26.0]], "color": color, "width": 3}]
    code, res = _post(editor, json.dumps({"mask": url, "strokes": strokes}).encode())
    assert code == 200 and isinstance(res["seconds"], float) and res["seconds"] >= 0
    out = _decode(res["image"])
    assert out.shape == photo.shape and out.dtype == np.uint8
    far = np.ones((H, W), bool)
    far[8:32, 10:38] = False  # region [10:30, 12:36] dilated by the feather radius 2
    assert np.array_equal(out[far], photo[far]) and not np.array_equal(out[12:28, 14:34], photo[12:28, 14:34])
    # a mask canvas of another size (a scaled page) is resized to the image (nearest)
    big = np.repeat(np.repeat(rgba, 2, 0), 2, 1)
    code, res2 = _post(editor, json.dumps({"mask": _png_url(big), "strokes": strokes}).encode())
    assert code == 200 and np.array_equal(_decode(res2["image"]), out)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", r"Expecting value"),
        (b"[1, 2]", r"editor: the request must be a JSON object with 'mask' and 'strokes'"),
        (json.dumps({"strokes": []}).encode(), r"editor: the request must be a JSON object with 'mask'"),
        (json.dumps({"mask": "/mask.png"}).encode(), r"editor: 'mask' must be a PNG data URL"),
        (
            json.dumps({"mask": "data:image/png;base64,AAAA"}).encode(),
            r"editor: 'mask' is not a readable PNG",
        ),
        (json.dumps({"mask": "data:image/png;base64,%%"}).encode(), r"editor: 'mask' is not a readable PNG"),
        (json.dumps({"mask": _region_png()[1], "strokes": {}}).encode(), r"editor: 'strokes' must be a list"),
        (
            json.dumps({"mask": _region_png()[1], "strokes": [[1, 2]]}).encode(),
            r"editor: 'strokes' must be a list",
        ),
        (
            json.dumps({"mask": _region_png()[1], "strokes": [{"points": [[1, 2, 3]]}]}).encode(),
            r"Stroke: 'points' must have shape",
        ),
    ],
)
def test_malformed_requests_answer_json_errors(editor, body, message):
    """The page shows ``j.error``: every bad request must still be answered with a JSON error."""
    code, res = _post(editor, body)
    assert code == 400 and re.search(message, res["error"]), res


# A minimal DOM for the page's script: elements by id, a 2-D context that records calls, an Image that
# records what it loads, and fetch wrapped to record the request before the real HTTP call.
_PRELUDE = r"""
const [BASE, MASKFILE] = process.argv.slice(2);
let MASK = require('fs').readFileSync(MASKFILE, 'utf8');
const SCALE = 2, LEFT = 10, TOP = 20;  // the canvas is shown at twice its size, offset on the page
const calls = [], loaded = [], sent = [];
function ctx2d(name) {
  const state = {};
  return new Proxy(state, {
    get(t, k) { return k in t ? t[k] : (...a) => calls.push([name, String(k), t.globalCompositeOperation || '']); },
    set(t, k, v) { t[k] = v; return true; },
  });
}
function el(id, extra) { return Object.assign({id, textContent: '', src: '', value: '', onclick: null}, extra); }
function canvas(id) {
  let ctx = null;
  return el(id, {width: 300, height: 150,
    getContext() { return ctx || (ctx = ctx2d(id)); },
    getBoundingClientRect() { return {left: LEFT, top: TOP, width: this.width * SCALE, height: this.height * SCALE}; },
    toDataURL(type) { if (type !== 'image/png') throw new Error(type); return id === 'mask' ? MASK : 'data:,'; }});
}
const E = {img: el('img', {naturalWidth: %(W)d, naturalHeight: %(H)d}), mask: canvas('mask'), strokes: canvas('strokes'),
  out: el('out'), color: el('color', {value: '#3b2a1e'}), width: el('width', {value: '3'}),
  brush: el('brush', {value: '12'}), undo: el('undo'), clear: el('clear'), run: el('run'), status: el('status')};
let MODE = 'mask';
globalThis.document = {
  getElementById(id) { if (!(id in E)) throw new Error('no element #' + id); return E[id]; },
  querySelector(q) { if (q !== 'input[name=mode]:checked') throw new Error(q); return {value: MODE}; },
};
globalThis.window = globalThis;
globalThis.Image = class { set src(v) { this._s = v; loaded.push(v); } get src() { return this._s; } };
const realFetch = globalThis.fetch;
globalThis.fetch = (url, opts) => {
  sent.push({url, method: opts.method, headers: opts.headers, body: JSON.parse(opts.body)});
  return realFetch(new URL(url, BASE), opts);
};
"""

_DRIVER = r"""
(async () => {
  E.img.onload();  // the photo has loaded: canvases take its size and the initial mask is requested
  const at = (x, y) => ({clientX: LEFT + x * SCALE, clientY: TOP + y * SCALE});  // canvas pixel (x, y)
  const sc = E.strokes;
  MODE = 'stroke';
  sc.onmousedown(at(14.5, 12.5)); sc.onmousemove(at(22.5, 19.5)); sc.onmousemove(at(30.5, 26.5)); window.onmouseup();
  sc.onmousemove(at(1, 1));  // button up: ignored
  E.color.value = '#ff8000'; E.width.value = '5';
  sc.onmousedown(at(5, 5)); sc.onmousemove(at(8, 8)); window.onmouseup();
  E.undo.onclick();  // removes the orange stroke
  MODE = 'mask'; sc.onmousedown(at(20, 20)); window.onmouseup();  // paints the region, adds no stroke
  MODE = 'erase'; sc.onmousedown(at(21, 21)); window.onmouseup();
  await E.run.onclick();
  const ok = {status: E.status.textContent, out: E.out.src};
  MASK = 'data:image/png;base64,AAAA';  // a broken canvas export: the server's error is shown
  E.out.src = '';
  await E.run.onclick();
  const err = {status: E.status.textContent, out: E.out.src};
  E.clear.onclick();
  MASK = process.argv[4];
  await E.run.onclick();
  process.stdout.write(JSON.stringify({ok, err, cleared: sent[2].body.strokes, sent: sent.slice(0, 2), loaded, calls,
    sizes: [E.mask.width, E.mask.height, E.strokes.width, E.strokes.height]}));
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
"""


@pytest.mark.skipif(
    shutil.which("node") is None, reason="needs Node.js (node on PATH) to run the page's script"
)
def test_page_script_in_node(editor, photo, tmp_path):
    _, js = _page(editor)
    _, url = _region_png()
    (tmp_path / "mask.txt").write_text(url)
    src = tmp_path / "page.js"
    src.write_text(_PRELUDE % {"W": W, "H": H} + js + _DRIVER)
    proc = subprocess.run(
        ["node", str(src), editor, str(tmp_path / "mask.txt"), url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["sizes"] == [W, H, W, H] and res["loaded"] == ["/mask.png"]
    first = res["sent"][0]
    assert first["url"] == "/synthesize" and first["method"] == "POST"
    assert first["headers"] == {"Content-Type": "application/json"} and first["body"]["mask"] == url
    # one stroke (the second was undone, painting adds none); canvas (14.5, 12.5) is pixel (14, 12); the
    # colour is '#3b2a1e' / 255, exactly as Python computes it (both IEEE doubles); the width slider's 3
    assert first["body"]["strokes"] == [
        {"points": [[14, 12], [22, 19], [30, 26]], "color": [0x3B / 255, 0x2A / 255, 0x1E / 255], "width": 3}
    ]
    assert re.fullmatch(r" done in \d+\.\d\d s", res["ok"]["status"])
    out = _decode(res["ok"]["out"])
    far = np.ones((H, W), bool)
    far[8:32, 10:38] = False
    assert np.array_equal(out[far], photo[far]) and not np.array_equal(out[12:28, 14:34], photo[12:28, 14:34])
    assert (
        res["err"]["status"].startswith(" error: editor: 'mask' is not a readable PNG")
        and res["err"]["out"] == ""
    )
    assert res["cleared"] == []
    # painting drew a filled brush disc on the mask canvas; erasing drew with destination-out
    mask_calls = [(k, op) for name, k, op in res["calls"] if name == "mask"]
    assert ("arc", "source-over") in mask_calls and ("fill", "destination-out") in mask_calls
    assert "clearRect" in {k for k, _ in mask_calls}  # "clear" empties the mask canvas
