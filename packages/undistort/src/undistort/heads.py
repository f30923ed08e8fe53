"""Head sources for data synthesis: a linear morphable head model (e.g. ICT-FaceKit) or fixed meshes.

Nothing is bundled: users pass the path of their own model files. :func:`load_ict_facekit` reads the
compact ``.npz`` form of the ICT Face Model Light (``neutral``, ``identity_shapes``, ``expression_shapes``,
``faces``, ``expression_names``) as described in the project's data README.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._checks import check_floating, check_shape

logger = logging.getLogger(__name__)

__all__ = ["HeadModel", "head_colors", "load_ict_facekit", "toy_head", "triangulate"]

# ICT-FaceKit vertex ranges (data README): face, head+neck, mouth socket, eye sockets, gums+tongue,
# teeth, eyeballs. Later layers (lacrimal fluid, eye blend/occlusion, eyelashes) are see-through shells.
ICT_REGIONS = {
    "face": (0, 9409),
    "head": (9409, 11248),
    "mouth": (11248, 13294),
    "eye_sockets": (13294, 14062),
    "gums": (14062, 17039),
    "teeth": (17039, 21451),
    "eyeballs": (21451, 24591),
}


def triangulate(polygons: np.ndarray | Tensor) -> Tensor:
    """Split quads (and keep triangles padded with ``-1``) into triangles ``(a, b, c), (a, c, d)``.

    Args:
        polygons: ``(P, 3)`` or ``(P, 4)`` integer vertex indices, ``-1`` in the 4th column for triangles.

    Returns:
        ``(F, 3)`` int64 triangles.

    Raises:
        ValueError: not ``(P, 3)`` or ``(P, 4)``.

    Examples:
        >>> triangulate(np.array([[0, 1, 2, 3], [0, 2, 4, -1]])).tolist()
        [[0, 1, 2], [0, 2, 4], [0, 2, 3]]
    """
    p = torch.as_tensor(np.asarray(polygons)).long()
    if p.ndim != 2 or p.shape[1] not in (3, 4):
        raise ValueError(f"triangulate: 'polygons' must have shape (P, 3) or (P, 4); got {tuple(p.shape)}")
    first = p[:, :3]
    if p.shape[1] == 3:
        return first
    quads = p[p[:, 3] >= 0]
    second = torch.stack([quads[:, 0], quads[:, 2], quads[:, 3]], 1)
    return torch.cat([first, second], 0)


@dataclass
class HeadModel:
    """A linear head model ``v = neutral + sum_k a_k I_k + sum_j b_j E_j`` (or a fixed set of meshes).

    Attributes:
        neutral: ``(V, 3)`` mean head (mesh units, e.g. cm), origin = the camera anchor.
        identity_basis: ``(K, V, 3)`` identity deltas scaled so ``a ~ N(0, I)`` is plausible (``K`` may be 0).
        expression_basis: ``(E, V, 3)`` expression deltas, weights in [0, 1] (``E`` may be 0).
        faces: ``(F, 3)`` int64 triangles.
        region: ``(V,)`` int64 region label per vertex (0 skin, 1 eye, 2 teeth, 3 mouth interior).
        landmarks: ``(L,)`` landmark vertex indices (may be empty).
        expression_names: names of the expression deltas.
        meshes: optional ``(M, V, 3)`` fixed meshes; when given, :meth:`sample` draws one of them.
    """

    neutral: Tensor
    identity_basis: Tensor
    expression_basis: Tensor
    faces: Tensor
    region: Tensor
    landmarks: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    expression_names: list[str] = field(default_factory=list)
    meshes: Tensor | None = None

    def __post_init__(self) -> None:
        fn = "HeadModel"
        check_floating(self.neutral, "neutral", fn=fn)
        dims = check_shape(self.neutral, "V,3", "neutral", fn=fn)
        check_shape(self.identity_basis, "K,V,3", "identity_basis", fn=fn, dims=dims)
        check_shape(self.expression_basis, "E,V,3", "expression_basis", fn=fn, dims=dims)
        check_shape(self.faces, "F,3", "faces", fn=fn)
        check_shape(self.region, "V", "region", fn=fn, dims=dims)
        if self.meshes is not None:
            check_shape(self.meshes, "M,V,3", "meshes", fn=fn, dims=dims)

    @classmethod
    def from_meshes(cls, meshes: Tensor | np.ndarray, faces: Tensor | np.ndarray) -> HeadModel:
        """A head source that draws among fixed meshes (e.g. a morphable model's samples).

        Args:
            meshes: ``(M, V, 3)`` vertex positions, origin = the camera anchor.
            faces: ``(F, 3)`` triangles or ``(F, 4)`` quads/triangles padded with ``-1``.

        Returns:
            The head source (no identity/expression bases; every vertex counts as skin).

        Raises:
            ValueError: wrong shapes.
        """
        m = torch.as_tensor(np.asarray(meshes), dtype=torch.float32)
        if m.ndim != 3 or m.shape[-1] != 3 or m.shape[0] == 0:
            raise ValueError(
                f"HeadModel.from_meshes: 'meshes' must have shape (M, V, 3), M > 0; got {tuple(m.shape)}"
            )
        v = m.shape[1]
        return cls(
            neutral=m[0].clone(),
            identity_basis=m.new_zeros(0, v, 3),
            expression_basis=m.new_zeros(0, v, 3),
            faces=triangulate(faces),
            region=torch.zeros(v, dtype=torch.long),
            meshes=m,
        )

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike]) -> HeadModel:
        """A head source from mesh files with one topology (OBJ/PLY/..., read with trimesh, order kept).

        Args:
            paths: mesh files; every file must have the same vertex count and faces (e.g. samples of a
                morphable model), in the same unit, origin at the camera anchor.

        Returns:
            The head source (see :meth:`from_meshes`).

        Raises:
            ValueError: no paths, or meshes with different vertex counts.
        """
        if not paths:
            raise ValueError("HeadModel.from_files: 'paths' must be non-empty")
        verts: list[np.ndarray] = []
        faces: np.ndarray | None = None
        for p in paths:
            v, f = _read_mesh(os.fspath(p))
            verts.append(v)
            if faces is None:
                faces = f
            if verts[-1].shape != verts[0].shape:
                raise ValueError(
                    f"HeadModel.from_files: {os.fspath(p)!r} has {verts[-1].shape[0]} vertices; expected {verts[0].shape[0]}"
                )
        return cls.from_meshes(np.stack(verts), faces if faces is not None else np.zeros((0, 3), np.int64))

    @property
    def num_identities(self) -> int:
        """Number of identity modes ``K``."""
        return int(self.identity_basis.shape[0])

    def vertices(self, identity: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        """Vertices for identity coefficients ``a`` ``(K,)`` and expression weights ``b`` ``(E,)``.

        Args:
            identity: ``(K,)`` identity coefficients (default zeros).
            expression: ``(E,)`` expression weights (default zeros).

        Returns:
            ``(V, 3)`` vertices.

        Raises:
            ValueError: ``identity`` is not ``(K,)`` or ``expression`` is not ``(E,)``.
        """
        fn = "HeadModel.vertices"
        if identity is not None:
            check_shape(identity, str(self.num_identities), "identity", fn=fn)
        if expression is not None:
            check_shape(expression, str(self.expression_basis.shape[0]), "expression", fn=fn)
        v = self.neutral
        if identity is not None and self.identity_basis.shape[0]:
            v = v + torch.einsum("k,kvc->vc", identity.to(v), self.identity_basis)
        if expression is not None and self.expression_basis.shape[0]:
            v = v + torch.einsum("k,kvc->vc", expression.to(v), self.expression_basis)
        return v

    def sample(self, generator: torch.Generator, *, max_expressions: int = 3) -> tuple[Tensor, Tensor]:
        """Draw a random head: identity ``a ~ N(0, I)`` and up to ``max_expressions`` sparse expressions.

        Args:
            generator: a CPU ``torch.Generator`` (all randomness comes from it).
            max_expressions: maximum number of active expression shapes.

        Returns:
            ``(vertices (V, 3), identity coefficients (K,))``; for fixed meshes the second is the drawn
            mesh index as a one-element tensor.
        """
        if self.meshes is not None:
            i = int(torch.randint(self.meshes.shape[0], (1,), generator=generator))
            return self.meshes[i], torch.tensor([float(i)])
        a = torch.randn(self.num_identities, generator=generator)
        e = self.expression_basis.shape[0]
        b = torch.zeros(e)
        if e and max_expressions > 0:
            n = int(torch.randint(max_expressions + 1, (1,), generator=generator))
            allowed = [i for i, name in enumerate(self.expression_names) if name not in ("mouthClose",)]
            allowed = allowed or list(range(e))
            pick = torch.randperm(len(allowed), generator=generator)[:n]
            for j in pick.tolist():
                b[allowed[j]] = float(torch.rand((), generator=generator)) * 0.8
        return self.vertices(a, b), a


def _read_mesh(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of a mesh file, vertex order kept (OBJ parsed directly: UV seams must not
    split vertices; other formats through trimesh with ``process=False``)."""
    if path.lower().endswith(".obj"):
        vs, fs = [], []
        with open(path) as fh:
            for line in fh:
                if line.startswith("v "):
                    vs.append([float(x) for x in line.split()[1:4]])
                elif line.startswith("f "):
                    idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                    idx = [i - 1 if i > 0 else len(vs) + i for i in idx]
                    fs += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
        return np.asarray(vs, dtype=np.float32), np.asarray(fs, dtype=np.int64).reshape(-1, 3)
    import trimesh

    mesh: Any = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.int64)


def load_ict_facekit(
    path: str | os.PathLike,
    *,
    regions: tuple[str, ...] = ("face", "head", "mouth", "eye_sockets", "gums", "teeth", "eyeballs"),
    num_identities: int = 100,
    center: bool = True,
) -> HeadModel:
    """Load the ICT Face Model Light from its compact ``.npz`` (user-given path; nothing is downloaded).

    Args:
        path: the ``ict_facekit_shapes.npz`` file or the folder that holds it (and optionally
            ``FaceXModel/vertex_indices.json`` with the 68 landmark vertices).
        regions: vertex regions to keep (see ``ICT_REGIONS``); see-through shells are always dropped.
        num_identities: number of identity modes to keep.
        center: shift the mesh so the anchor (origin) is the centre of the neutral head's bounding box
            in ``x``/``y`` and ``z = 0`` (ICT's own origin, near the ears' axis).

    Returns:
        The :class:`HeadModel` (vertices renumbered to the kept regions).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: unknown region names or a malformed archive.
    """
    fn = "load_ict_facekit"
    p = os.fspath(path)
    folder = p if os.path.isdir(p) else os.path.dirname(p)
    npz = os.path.join(p, "ict_facekit_shapes.npz") if os.path.isdir(p) else p
    if not os.path.isfile(npz):
        raise FileNotFoundError(f"{fn}: no ICT-FaceKit archive at {npz!r}")
    bad = [r for r in regions if r not in ICT_REGIONS]
    if bad or not regions:
        raise ValueError(
            f"{fn}: 'regions' must be a non-empty subset of {sorted(ICT_REGIONS)}; got {regions!r}"
        )
    with np.load(npz) as z:
        missing = {"neutral", "identity_shapes", "expression_shapes", "faces"} - set(z.files)
        if missing:
            raise ValueError(f"{fn}: archive {npz!r} lacks {sorted(missing)}")
        neutral = z["neutral"].astype(np.float32)
        ids = z["identity_shapes"][:num_identities].astype(np.float32) - neutral
        exps = z["expression_shapes"].astype(np.float32) - neutral
        polys = z["faces"]
        names = [str(s) for s in z["expression_names"]] if "expression_names" in z.files else []
    v = neutral.shape[0]
    keep = np.zeros(v, dtype=bool)
    region = np.zeros(v, dtype=np.int64)
    for r in regions:
        lo, hi = ICT_REGIONS[r]
        keep[lo:hi] = True
    region[ICT_REGIONS["eyeballs"][0] : ICT_REGIONS["eyeballs"][1]] = 1
    region[ICT_REGIONS["teeth"][0] : ICT_REGIONS["teeth"][1]] = 2
    region[ICT_REGIONS["mouth"][0] : ICT_REGIONS["mouth"][1]] = 3
    region[ICT_REGIONS["gums"][0] : ICT_REGIONS["gums"][1]] = 3
    region[ICT_REGIONS["eye_sockets"][0] : ICT_REGIONS["eye_sockets"][1]] = 3
    tris = triangulate(polys).numpy()
    tris = tris[keep[tris].all(1)]
    new_index = -np.ones(v, dtype=np.int64)
    new_index[keep] = np.arange(int(keep.sum()))
    tris = new_index[tris]
    lms = np.zeros(0, dtype=np.int64)
    jpath = os.path.join(folder, "FaceXModel", "vertex_indices.json")
    if os.path.isfile(jpath):
        with open(jpath) as fh:
            lms = np.asarray(json.load(fh).get("idx_to_landmark_verts", []), dtype=np.int64)
        lms = new_index[lms] if lms.size else lms
        if lms.size and (lms < 0).any():
            logger.warning("%s: some landmark vertices lie in dropped regions; landmarks disabled", fn)
            lms = np.zeros(0, dtype=np.int64)
    neutral_k = neutral[keep]
    if center:
        lo, hi = neutral_k.min(0), neutral_k.max(0)
        shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0.0], dtype=np.float32)
        neutral_k = neutral_k - shift
    logger.info(
        "%s: %d vertices, %d triangles, %d identities, %d expressions",
        fn,
        keep.sum(),
        len(tris),
        len(ids),
        len(exps),
    )
    return HeadModel(
        neutral=torch.from_numpy(neutral_k),
        identity_basis=torch.from_numpy(np.ascontiguousarray(ids[:, keep])),
        expression_basis=torch.from_numpy(np.ascontiguousarray(exps[:, keep])),
        faces=torch.from_numpy(tris),
        region=torch.from_numpy(region[keep]),
        landmarks=torch.from_numpy(lms),
        expression_names=names,
    )


def head_colors(region: Tensor, generator: torch.Generator, *, vertices: Tensor | None = None) -> Tensor:
    """Per-vertex albedo: a random skin tone (with smooth low-frequency variation), white eyes, teeth, dark mouth.

    Args:
        region: ``(V,)`` region labels (0 skin, 1 eye, 2 teeth, 3 mouth interior).
        generator: CPU generator for the random tone.
        vertices: ``(V, 3)`` positions; when given, the skin tone varies smoothly over the head.

    Returns:
        ``(V, 3)`` albedo in [0, 1].
    """
    v = region.shape[0]
    tone = torch.tensor([0.55, 0.38, 0.30]) + 0.35 * torch.rand((), generator=generator) * torch.tensor(
        [0.8, 0.85, 0.85]
    )
    tone = tone * (1 + 0.08 * (torch.rand(3, generator=generator) - 0.5))
    col = tone.expand(v, 3).clone()
    if vertices is not None:
        k = torch.randn(3, 3, generator=generator) * 0.15
        phase = torch.rand(3, generator=generator) * 6.28
        col = col * (1 + 0.08 * torch.sin(vertices.float() @ k + phase))
    col[region == 1] = torch.tensor([0.85, 0.85, 0.82])
    col[region == 2] = torch.tensor([0.9, 0.88, 0.8])
    col[region == 3] = torch.tensor([0.25, 0.08, 0.08])
    return col.clamp(0, 1)


def toy_head(
    n_lat: int = 32, n_lon: int = 64, *, nose: float = 3.5, ears: float = 1.5
) -> tuple[Tensor, Tensor]:
    """A stand-in head for demos and tests: an ellipsoid (cm) with a nose bump and two ear bumps.

    Args:
        n_lat: latitude rings of the UV sphere.
        n_lon: longitude segments.
        nose: nose height (cm) along ``+z`` (out of the face).
        ears: ear bump height (cm) along ``+-x``.

    Returns:
        ``(vertices (V, 3), faces (F, 3))``; head frame ``y`` up, ``z`` out of the face, origin at the centre.

    Examples:
        >>> v, f = toy_head(8, 16)
        >>> v.shape, f.shape
        (torch.Size([114, 3]), torch.Size([224, 3]))
    """
    th = torch.linspace(0, math.pi, n_lat + 1)[1:-1]
    ph = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    t, p = torch.meshgrid(th, ph, indexing="ij")
    # y is the polar axis so the poles sit at the top and bottom of the head
    ring = torch.stack([torch.sin(t) * torch.sin(p), torch.cos(t), torch.sin(t) * torch.cos(p)], -1).reshape(
        -1, 3
    )
    v = torch.cat([torch.tensor([[0.0, 1.0, 0.0]]), ring, torch.tensor([[0.0, -1.0, 0.0]])])
    v = v * torch.tensor([7.5, 10.5, 9.0])
    v[:, 2] += nose * torch.exp(-(v[:, 0] ** 2 + (v[:, 1] + 1.0) ** 2) / 5.0) * (v[:, 2] > 0)
    v[:, 0] += torch.sign(v[:, 0]) * ears * torch.exp(-(v[:, 1] ** 2 + v[:, 2] ** 2) / 6.0)
    faces = []
    for j in range(n_lon):
        faces.append([0, 1 + j, 1 + (j + 1) % n_lon])
    for i in range(n_lat - 2):
        r0, r1 = 1 + i * n_lon, 1 + (i + 1) * n_lon
        for j in range(n_lon):
            j1 = (j + 1) % n_lon
            faces += [[r0 + j, r1 + j1, r0 + j1], [r0 + j, r1 + j, r1 + j1]]
    last, base = v.shape[0] - 1, 1 + (n_lat - 2) * n_lon
    for j in range(n_lon):
        faces.append([base + j, last, base + (j + 1) % n_lon])
    return v, torch.tensor(faces, dtype=torch.long)
