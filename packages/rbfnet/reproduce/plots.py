"""Tiny PIL line/scatter plots (no matplotlib dependency)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

COLORS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
]


def _axes(draw: ImageDraw.ImageDraw, box, xr, yr, xlabel, ylabel, title, logx=False):  # type: ignore[no-untyped-def]
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0, 8), title, fill=(0, 0, 0))
    draw.text(((x0 + x1) // 2 - 40, y1 + 22), xlabel, fill=(0, 0, 0))
    draw.text((4, y0 - 14), ylabel, fill=(0, 0, 0))
    for i in range(5):
        v = yr[0] + (yr[1] - yr[0]) * i / 4
        y = y1 - (y1 - y0) * i / 4
        draw.line((x0 - 4, y, x0, y), fill=(0, 0, 0))
        draw.text((4, y - 6), f"{v:.2f}", fill=(0, 0, 0))
        xv = xr[0] + (xr[1] - xr[0]) * i / 4
        x = x0 + (x1 - x0) * i / 4
        draw.line((x, y1, x, y1 + 4), fill=(0, 0, 0))
        label = f"{10**xv:.2g}" if logx else f"{xv:.3g}"
        draw.text((x - 12, y1 + 6), label, fill=(0, 0, 0))


def _map(v, r, a, b):  # type: ignore[no-untyped-def]
    return a + (b - a) * (v - r[0]) / max(r[1] - r[0], 1e-12)


def line_plot(
    path: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> None:
    """Write a PNG with one line per series ``name -> (xs, ys)``."""
    w, h = 640, 420
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    box = (60, 30, w - 170, h - 50)
    xs = [x for s in series.values() for x in s[0]] or [0, 1]
    ys = [y for s in series.values() for y in s[1]] or [0, 1]
    xr = (min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1)
    yr = (max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.02))
    _axes(d, box, xr, yr, xlabel, ylabel, title)
    for i, (name, (sx, sy)) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        pts = [(_map(x, xr, box[0], box[2]), _map(y, yr, box[3], box[1])) for x, y in zip(sx, sy)]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        for p in pts:
            d.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=c)
        d.text((w - 160, 40 + 16 * i), name, fill=c)
    img.save(path)


def scatter_plot(
    path: str,
    points: dict[str, tuple[float, float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> None:
    """Write a PNG scatter ``name -> (x, y)`` with a log10 x axis."""
    import math

    w, h = 640, 420
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    box = (60, 30, w - 170, h - 50)
    lx = [math.log10(max(p[0], 1.0)) for p in points.values()] or [0.0, 1.0]
    ys = [p[1] for p in points.values()] or [0.0, 1.0]
    xr = (min(lx) - 0.1, max(lx) + 0.1)
    yr = (max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.05))
    _axes(d, box, xr, yr, xlabel, ylabel, title, logx=True)
    for i, (name, (x, y)) in enumerate(points.items()):
        c = COLORS[i % len(COLORS)]
        px, py = _map(math.log10(max(x, 1.0)), xr, box[0], box[2]), _map(y, yr, box[3], box[1])
        d.ellipse((px - 5, py - 5, px + 5, py + 5), fill=c)
        d.text((w - 160, 40 + 16 * i), name, fill=c)
    img.save(path)
