"""Analytic test scenes (meshes whose projections are known in closed form)."""

from __future__ import annotations

import math

import torch


def plane_mesh(
    n: int = 16, half: float = 12.0, tilt: tuple[float, float] = (0.0, 0.0), *, dtype=torch.float64
):
    """A grid on the plane z = tilt[0] * x + tilt[1] * y (head frame), returns (V, 3), (F, 3)."""
    lin = torch.linspace(-half, half, n + 1, dtype=dtype)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    zz = tilt[0] * xx + tilt[1] * yy
    v = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
    idx = torch.arange((n + 1) ** 2).view(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    f = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([a, c, d], -1).reshape(-1, 3)])
    return v, f


def sphere_mesh(radius: float = 8.0, n_lat: int = 24, n_lon: int = 48, *, dtype=torch.float64):
    """A UV sphere centred at the origin."""
    verts = [[0.0, 0.0, radius]]
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append(
                [
                    radius * math.sin(th) * math.cos(ph),
                    radius * math.sin(th) * math.sin(ph),
                    radius * math.cos(th),
                ]
            )
    verts.append([0.0, 0.0, -radius])
    faces = []
    for j in range(n_lon):
        faces.append([0, 1 + j, 1 + (j + 1) % n_lon])
    for i in range(n_lat - 2):
        r0, r1 = 1 + i * n_lon, 1 + (i + 1) * n_lon
        for j in range(n_lon):
            j1 = (j + 1) % n_lon
            faces.append([r0 + j, r1 + j, r1 + j1])
            faces.append([r0 + j, r1 + j1, r0 + j1])
    last = len(verts) - 1
    base = 1 + (n_lat - 2) * n_lon
    for j in range(n_lon):
        faces.append([base + j, last, base + (j + 1) % n_lon])
    return torch.tensor(verts, dtype=dtype), torch.tensor(faces)
