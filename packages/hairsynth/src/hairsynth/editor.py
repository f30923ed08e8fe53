"""A minimal interactive editor: a local web page where the user paints the region and draws coloured strokes.

Only the standard library's ``http.server`` is used; the page talks to ``127.0.0.1`` and nothing is
fetched from the internet. Start it with ``python -m hairsynth editor --image face.jpg --weights ck.pt``
or :func:`serve`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from .strokes import Stroke
from .synthesizer import Synthesizer

logger = logging.getLogger(__name__)

__all__ = ["make_server", "serve"]

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>hairsynth editor</title>
<style>body{font-family:sans-serif;margin:12px}#wrap{position:relative;display:inline-block}
canvas{position:absolute;left:0;top:0}#img{position:static}#out{margin-left:16px;vertical-align:top}
.bar>*{margin-right:8px}</style></head>
<body>
<div class="bar">
 <label><input type="radio" name="mode" value="mask" checked> paint region</label>
 <label><input type="radio" name="mode" value="erase"> erase region</label>
 <label><input type="radio" name="mode" value="stroke"> guide stroke</label>
 colour <input type="color" id="color" value="#3b2a1e">
 width <input type="range" id="width" min="1" max="12" value="3">
 brush <input type="range" id="brush" min="2" max="40" value="12">
 <button id="undo">undo stroke</button><button id="clear">clear</button>
 <button id="run">synthesize</button><span id="status"></span>
</div>
<div id="wrap"><img id="img" src="/image.png"><canvas id="mask"></canvas><canvas id="strokes"></canvas></div>
<img id="out">
<script>
const img=document.getElementById('img'),mc=document.getElementById('mask'),sc=document.getElementById('strokes');
const mx=mc.getContext('2d'),sx=sc.getContext('2d');let strokes=[],cur=null,down=false;
img.onload=()=>{for(const c of [mc,sc]){c.width=img.naturalWidth;c.height=img.naturalHeight;}
 const m=new Image();m.onload=()=>{mx.drawImage(m,0,0);};m.src='/mask.png';};
function mode(){return document.querySelector('input[name=mode]:checked').value}
function pos(e){const r=sc.getBoundingClientRect();return [(e.clientX-r.left)*sc.width/r.width,(e.clientY-r.top)*sc.height/r.height]}
function payload(){return {mask:mc.toDataURL('image/png'),strokes:strokes.map(s=>({points:s.points.map(p=>[p[0]-0.5,p[1]-0.5]),color:s.color,width:s.width}))}}
function hex(h){return [1,3,5].map(i=>parseInt(h.substr(i,2),16)/255)}
function redraw(){sx.clearRect(0,0,sc.width,sc.height);for(const s of strokes.concat(cur?[cur]:[])){
 sx.strokeStyle='rgb('+s.color.map(v=>Math.round(v*255)).join(',')+')';sx.lineWidth=s.width;sx.lineCap='round';sx.lineJoin='round';
 sx.beginPath();s.points.forEach((p,i)=>i?sx.lineTo(p[0],p[1]):sx.moveTo(p[0],p[1]));sx.stroke();}}
function paint(p){mx.globalCompositeOperation=mode()=='erase'?'destination-out':'source-over';mx.fillStyle='rgba(255,0,0,0.35)';
 mx.beginPath();mx.arc(p[0],p[1],+document.getElementById('brush').value,0,7);mx.fill();}
sc.onmousedown=e=>{down=true;const p=pos(e);if(mode()=='stroke'){cur={points:[p],color:hex(document.getElementById('color').value),width:+document.getElementById('width').value}}else paint(p);redraw()};
sc.onmousemove=e=>{if(!down)return;const p=pos(e);if(cur)cur.points.push(p);else paint(p);redraw()};
window.onmouseup=()=>{if(cur&&cur.points.length)strokes.push(cur);cur=null;down=false;redraw()};
document.getElementById('undo').onclick=()=>{strokes.pop();redraw()};
document.getElementById('clear').onclick=()=>{strokes=[];mx.clearRect(0,0,mc.width,mc.height);redraw()};
document.getElementById('run').onclick=async()=>{const st=document.getElementById('status');st.textContent=' running...';
 const r=await fetch('/synthesize',{method:'POST',headers:{'Content-Type':'application/json'},
  body:JSON.stringify(payload())});let j;try{j=await r.json()}catch(e){j={error:'HTTP '+r.status}}
 if(j.error){st.textContent=' error: '+j.error;return}document.getElementById('out').src=j.image;st.textContent=' done in '+j.seconds.toFixed(2)+' s'};
</script></body></html>
"""


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _decode_mask(data_url: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if not isinstance(data_url, str) or not data_url.startswith("data:image/png;base64,"):
        raise ValueError("editor: 'mask' must be a PNG data URL ('data:image/png;base64,...')")
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
        im = Image.open(io.BytesIO(raw)).convert("RGBA")
    except (binascii.Error, OSError) as exc:
        raise ValueError(f"editor: 'mask' is not a readable PNG ({exc})") from exc
    if im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return (np.asarray(im)[..., 3] > 0).astype(np.float32)


def make_server(
    synthesizer: Synthesizer,
    image: Any,
    mask: Any = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> ThreadingHTTPServer:
    """Build (but do not start) the editor's HTTP server.

    Routes: ``GET /`` (the page), ``GET /image.png``, ``GET /mask.png`` (initial region),
    ``POST /synthesize`` with JSON ``{"mask": <PNG data URL, alpha > 0 = region>, "strokes":
    [{"points", "color", "width"}, ...]}`` answering ``{"image": <PNG data URL>, "seconds": t}``, or
    status 400 with ``{"error": <message>}`` for a malformed request (the page shows the message).

    Convention: the mask PNG has the image's size (a different size is resized, nearest); stroke
    points are image pixels with pixel centres at integers, as for :class:`~hairsynth.Stroke` (the page
    converts its canvas coordinates, whose pixel centres sit at ``+0.5``); colours are RGB in ``[0, 1]``.

    Args:
        synthesizer: the :class:`~hairsynth.Synthesizer`.
        image: a PIL image or ``(H, W, 3)`` uint8 array.
        mask: optional initial region (PIL or ``(H, W)`` array, nonzero = region).
        host: interface to bind (keep the default ``127.0.0.1`` for a local tool).
        port: TCP port (0 picks a free one).

    Returns:
        The server; call ``serve_forever()`` and ``shutdown()``.

    Raises:
        TypeError: ``synthesizer`` is not a :class:`~hairsynth.Synthesizer` or ``image`` not a PIL image
            or array.
        ValueError: an array image that is not ``(H, W, 3)`` uint8, or a mask of another size.
    """
    from PIL import Image

    if not isinstance(synthesizer, Synthesizer):
        raise TypeError(f"make_server: 'synthesizer' must be a Synthesizer; got {type(synthesizer).__name__}")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"make_server: an array 'image' must be (H, W, 3) uint8; got {image.shape} {image.dtype}"
            )
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"make_server: 'image' must be a PIL image or uint8 array; got {type(image).__name__}"
        )
    image = image.convert("RGB")
    w, h = image.size
    init = np.zeros((h, w, 4), np.uint8)
    if mask is not None:
        m = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask) > 0
        if m.shape != (h, w):
            raise ValueError(f"make_server: 'mask' must have shape ({h}, {w}); got {m.shape}")
        init[m] = (255, 0, 0, 90)
    image_png, mask_png = _png_bytes(np.asarray(image)), _png_bytes(init)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("editor: " + format, *args)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path in ("/", "/index.html"):
                self._send(200, _PAGE.encode(), "text/html; charset=utf-8")
            elif self.path == "/image.png":
                self._send(200, image_png, "image/png")
            elif self.path == "/mask.png":
                self._send(200, mask_png, "image/png")
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            import time

            if self.path != "/synthesize":
                self._send(404, b"not found", "text/plain")
                return
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if not isinstance(req, dict) or "mask" not in req:
                    raise ValueError("editor: the request must be a JSON object with 'mask' and 'strokes'")
                m = _decode_mask(req["mask"], (h, w))
                items = req.get("strokes", [])
                if not isinstance(items, list) or not all(isinstance(d, dict) for d in items):
                    raise ValueError("editor: 'strokes' must be a list of {points, color, width} objects")
                strokes = [Stroke.from_dict(d) for d in items]
                t0 = time.perf_counter()
                with lock:
                    out = synthesizer.synthesize(image, m, strokes)
                dt = time.perf_counter() - t0
                url = "data:image/png;base64," + base64.b64encode(_png_bytes(np.asarray(out))).decode()
                self._send(200, json.dumps({"image": url, "seconds": dt}).encode(), "application/json")
            except (ValueError, TypeError, KeyError) as exc:
                self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")

    return ThreadingHTTPServer((host, port), Handler)


def serve(
    synthesizer: Synthesizer,
    image: Any,
    mask: Any = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> None:
    """Run the editor until interrupted (Ctrl-C); open ``http://host:port/`` in a browser.

    Args:
        synthesizer: the :class:`~hairsynth.Synthesizer`.
        image: a PIL image or ``(H, W, 3)`` uint8 array.
        mask: optional initial region.
        host: interface to bind.
        port: TCP port.
    """
    server = make_server(synthesizer, image, mask, host=host, port=port)
    logger.info("hairsynth editor on http://%s:%d/", host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
