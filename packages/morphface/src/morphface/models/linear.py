"""Linear identity + expression face model over a fixed topology (the paper's base mesh model).

.. math:: V(\\alpha, \\beta) = \\bar V + \\sum_k \\alpha_k U^{id}_k + \\sum_j \\beta_j U^{exp}_j

This is the form of the group's released ICT-FaceKit model (Sec. 3a of the dossier): identity modes are
PCA eigenvectors already scaled by their standard deviation, so ``alpha ~ N(0, I)`` is the prior, and
expressions are additive blendshape deltas with weights meant in ``[0, 1]``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._checks import check_finite, check_floating, check_generator, check_positive, check_shape
from .._utils import as_vertex_tensor, atomic_write, invalid_file

logger = logging.getLogger(__name__)

__all__ = ["LinearFaceModel"]

_FORMAT_VERSION = 1
_ARRAY_KEYS = (
    "mean",
    "identity_basis",
    "expression_basis",
    "faces",
    "uvs",
    "face_uvs",
    "uv_face_mask",
    "landmark_indices",
    "identity_variance",
)


class LinearFaceModel(nn.Module):
    """Mean shape + identity basis + expression blendshapes over one mesh topology.

    Convention:
        Positions in the units of the data (ICT-FaceKit: centimetres, y up, face looking along +z).
        Identity coefficients have a standard-normal prior; expression weights are meant in [0, 1].

    Args:
        mean: (V, 3) mean (neutral) vertex positions.
        identity_basis: (K, V, 3) identity modes, scaled by their standard deviation.
        expression_basis: optional (E, V, 3) expression deltas; ``None`` means E = 0.
        faces: optional (F, 3) long triangle indices.
        uvs: optional (T, 2) texture coordinates in [0, 1] (v up, OBJ convention).
        face_uvs: optional (F, 3) long indices into ``uvs`` per triangle corner.
        uv_face_mask: optional (F,) bool, the triangles that belong to the UV face tile (ICT ``M_Face``).
        face_material: optional (F,) long index into ``material_names`` per triangle (ICT: 12 parts such as
            ``M_Face``, ``M_BackHead``, ``M_ScleraLeft``; each on its own UV tile or sharing tile 0). Default:
            material 0 ``"face"`` for the ``uv_face_mask`` triangles and 1 ``"other"`` for the rest.
        material_names: names of the materials (required with ``face_material``).
        landmark_indices: optional (L,) long vertex indices of landmarks (ICT: 68 iBUG points).
        expression_names: optional E names (ARKit names for ICT).
        identity_variance: optional (K,) variance explained by each identity mode.
        device: device of the buffers.
        dtype: floating dtype of the buffers.

    Shape:
        - identity: (B, K); expression: (B, E); output of :meth:`vertices`: (B, V, 3).

    Examples:
        >>> m = LinearFaceModel(torch.zeros(4, 3), torch.randn(2, 4, 3))
        >>> m.vertices(torch.zeros(1, 2)).shape
        torch.Size([1, 4, 3])
    """

    mean: torch.Tensor
    identity_basis: torch.Tensor
    expression_basis: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    face_uvs: torch.Tensor
    uv_face_mask: torch.Tensor
    face_material: torch.Tensor
    landmark_indices: torch.Tensor
    identity_variance: torch.Tensor

    def __init__(
        self,
        mean: torch.Tensor,
        identity_basis: torch.Tensor,
        expression_basis: torch.Tensor | None = None,
        *,
        faces: torch.Tensor | None = None,
        uvs: torch.Tensor | None = None,
        face_uvs: torch.Tensor | None = None,
        uv_face_mask: torch.Tensor | None = None,
        face_material: torch.Tensor | None = None,
        material_names: Sequence[str] | None = None,
        landmark_indices: torch.Tensor | None = None,
        expression_names: Sequence[str] | None = None,
        identity_variance: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fn = "LinearFaceModel"
        check_floating(mean, "mean", fn=fn)
        dims = check_shape(mean, "V,3", "mean", fn=fn)
        check_floating(identity_basis, "identity_basis", fn=fn)
        check_shape(identity_basis, "K,V,3", "identity_basis", fn=fn, dims=dims)
        n_vert = dims["V"]
        if expression_basis is None:
            expression_basis = mean.new_zeros(0, n_vert, 3)
        check_floating(expression_basis, "expression_basis", fn=fn)
        check_shape(expression_basis, "E,V,3", "expression_basis", fn=fn, dims=dims)
        n_exp = expression_basis.shape[0]
        dtype = dtype or mean.dtype
        fkw: dict[str, Any] = {"device": device, "dtype": dtype}
        lkw: dict[str, Any] = {"device": device, "dtype": torch.long}
        if faces is None:
            faces = torch.zeros(0, 3, dtype=torch.long)
        check_shape(faces, "F,3", "faces", fn=fn, dims=dims)
        if faces.is_floating_point():
            raise TypeError(f"{fn}: 'faces' must be an integer tensor; got {faces.dtype}")
        if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= n_vert):
            raise ValueError(
                f"{fn}: 'faces' must index vertices in [0, {n_vert - 1}]; got [{int(faces.min())}, {int(faces.max())}]"
            )
        if uvs is None:
            uvs = torch.zeros(0, 2)
            face_uvs = torch.zeros(0, 3, dtype=torch.long)
        check_shape(uvs, "T,2", "uvs", fn=fn, dims=dims)
        if face_uvs is None:
            raise ValueError(f"{fn}: 'face_uvs' is required when 'uvs' is given; got None")
        if uvs.shape[0]:
            check_shape(face_uvs, "F,3", "face_uvs", fn=fn, dims=dims)
        if uv_face_mask is None:
            uv_face_mask = torch.ones(faces.shape[0], dtype=torch.bool)
        check_shape(uv_face_mask, "F", "uv_face_mask", fn=fn, dims=dims)
        if face_material is None:
            face_material = (~uv_face_mask.bool()).long()
            material_names = ["face", "other"] if bool(face_material.any()) else ["face"]
        check_shape(face_material, "F", "face_material", fn=fn, dims=dims)
        if material_names is None:
            raise ValueError(f"{fn}: 'material_names' is required when 'face_material' is given; got None")
        mats = [str(n) for n in material_names]
        if face_material.numel() and (int(face_material.min()) < 0 or int(face_material.max()) >= len(mats)):
            raise ValueError(
                f"{fn}: 'face_material' must index 'material_names' in [0, {len(mats) - 1}]; got "
                f"[{int(face_material.min())}, {int(face_material.max())}]"
            )
        if landmark_indices is None:
            landmark_indices = torch.zeros(0, dtype=torch.long)
        names = (
            list(expression_names) if expression_names is not None else [f"expr{j:03d}" for j in range(n_exp)]
        )
        if len(names) != n_exp:
            raise ValueError(f"{fn}: 'expression_names' must have {n_exp} entries; got {len(names)}")
        if identity_variance is None:
            identity_variance = identity_basis.flatten(1).pow(2).sum(1)
        self.register_buffer("mean", mean.to(**fkw).contiguous())
        self.register_buffer("identity_basis", identity_basis.to(**fkw).contiguous())
        self.register_buffer("expression_basis", expression_basis.to(**fkw).contiguous())
        self.register_buffer("faces", faces.to(**lkw))
        self.register_buffer("uvs", uvs.to(**fkw))
        self.register_buffer("face_uvs", torch.as_tensor(face_uvs).to(**lkw))
        self.register_buffer("uv_face_mask", uv_face_mask.to(device=device, dtype=torch.bool))
        self.register_buffer("face_material", torch.as_tensor(face_material).to(**lkw))
        self.material_names: list[str] = mats
        self.register_buffer("landmark_indices", landmark_indices.to(**lkw))
        self.register_buffer("identity_variance", identity_variance.to(**fkw))
        self.expression_names: list[str] = names

    # ------------------------------------------------------------------ sizes
    @property
    def n_vertices(self) -> int:
        """Number of vertices V."""
        return int(self.mean.shape[0])

    @property
    def n_identity(self) -> int:
        """Number of identity modes K."""
        return int(self.identity_basis.shape[0])

    @property
    def n_expression(self) -> int:
        """Number of expression blendshapes E."""
        return int(self.expression_basis.shape[0])

    def extra_repr(self) -> str:
        return (
            f"n_vertices={self.n_vertices}, n_identity={self.n_identity}, n_expression={self.n_expression}, "
            f"n_faces={int(self.faces.shape[0])}, n_landmarks={int(self.landmark_indices.shape[0])}"
        )

    # ------------------------------------------------------------------ evaluation
    def _coeffs(
        self, x: torch.Tensor | None, size: int, name: str, fn: str, batch: int | None
    ) -> torch.Tensor:
        if x is None:
            return self.mean.new_zeros(batch or 1, size)
        check_floating(x, name, fn=fn)
        if x.ndim == 1:
            x = x.unsqueeze(0)
        check_shape(x, f"B,{size}", name, fn=fn)
        check_finite(x, name, fn=fn)
        return x

    def vertices(
        self, identity: torch.Tensor | None = None, expression: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decode coefficients to vertex positions (differentiable).

        Args:
            identity: (B, K) or (K,) identity coefficients; ``None`` means zeros.
            expression: (B, E) or (E,) expression weights; ``None`` means zeros (neutral).

        Returns:
            (B, V, 3) vertex positions in the model's dtype/device.

        Raises:
            TypeError: a coefficient tensor is not floating point.
            ValueError: wrong number of coefficients, mismatched batch sizes, or NaN/inf coefficients
                (checked eagerly; skipped under ``torch.compile``).
        """
        fn = "LinearFaceModel.vertices"
        a = self._coeffs(identity, self.n_identity, "identity", fn, None)
        b = self._coeffs(expression, self.n_expression, "expression", fn, a.shape[0])
        if identity is None and expression is not None:
            a = self.mean.new_zeros(b.shape[0], self.n_identity)
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"{fn}: 'identity' has batch {a.shape[0]} but 'expression' has batch {b.shape[0]}"
            )
        a = a.to(self.mean.dtype)
        b = b.to(self.mean.dtype)
        out = self.mean.flatten() + a @ self.identity_basis.flatten(1)
        if self.n_expression and expression is not None:  # None: neutral, no product with zeros
            out = out + b @ self.expression_basis.flatten(1)
        return out.view(a.shape[0], self.n_vertices, 3)

    def forward(
        self, identity: torch.Tensor | None = None, expression: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Same as :meth:`vertices`.

        Args:
            identity: (B, K) identity coefficients.
            expression: (B, E) expression weights.

        Returns:
            (B, V, 3) vertices.
        """
        return self.vertices(identity, expression)

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """Gather the landmark vertices.

        Args:
            vertices: (B, V, 3) positions.

        Returns:
            (B, L, 3) landmark positions.
        """
        fn = "LinearFaceModel.landmarks"
        check_shape(vertices, f"B,{self.n_vertices},3", "vertices", fn=fn)
        if self.landmark_indices.numel() == 0:
            raise ValueError(f"{fn}: this model has no 'landmark_indices'; got an empty set")
        return vertices[:, self.landmark_indices]

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, truncation: float | None = 3.0
    ) -> torch.Tensor:
        """Draw identity coefficients from the prior ``N(0, I)``.

        Args:
            n: number of samples.
            generator: optional ``torch.Generator`` for reproducibility.
            truncation: if given, values are clamped to ``[-truncation, truncation]``.

        Returns:
            (n, K) coefficients on the model's device/dtype.
        """
        fn = "LinearFaceModel.sample"
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{fn}: 'n' must be a positive int; got {n!r}")
        check_generator(generator, fn=fn)
        if truncation is not None:
            check_positive(truncation, "truncation", fn=fn)
        gen_dev = generator.device if generator is not None else self.mean.device
        z = torch.randn(n, self.n_identity, generator=generator, device=gen_dev, dtype=self.mean.dtype)
        if truncation is not None:
            z = z.clamp(-truncation, truncation)
        return z.to(self.mean.device)

    def project(
        self,
        mesh: Any,
        *,
        with_expression: bool = False,
        prior_weight: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Least-squares coefficients of a mesh in correspondence (same topology, same frame).

        Solves ``min ||V - V(alpha, beta)||^2 + prior_weight * (||alpha||^2 + ||beta||^2)`` in float64.

        Args:
            mesh: a ``trimesh.Trimesh``, an array or tensor of shape (V, 3) or (B, V, 3).
            with_expression: also solve for expression weights (otherwise they are zero).
            prior_weight: ridge weight (>= 0) of the Gaussian prior.

        Returns:
            ``(identity, expression)``: (B, K) and (B, E) coefficients (expression zeros if not solved).

        Raises:
            TypeError: ``mesh`` is not a mesh/array/tensor of floats.
            ValueError: wrong vertex count (another topology) or non-finite values.
        """
        fn = "LinearFaceModel.project"
        x = as_vertex_tensor(mesh, fn=fn)
        if x.ndim == 2:
            x = x.unsqueeze(0)
        if x.ndim != 3 or x.shape[-1] != 3 or x.shape[1] != self.n_vertices:
            raise ValueError(
                f"{fn}: 'mesh' must have {self.n_vertices} vertices of 3 coordinates (the model's topology); "
                f"got shape {tuple(x.shape)}"
            )
        check_finite(x, "mesh", fn=fn)
        check_positive(prior_weight, "prior_weight", fn=fn, strict=False)
        x = x.to(device=self.mean.device, dtype=torch.float64)
        basis = self.identity_basis.flatten(1)
        if with_expression and self.n_expression:
            basis = torch.cat([basis, self.expression_basis.flatten(1)], 0)
        m = basis.to(torch.float64)  # (K', 3V)
        gram = m @ m.T + prior_weight * torch.eye(m.shape[0], dtype=torch.float64, device=m.device)
        rhs = (x.flatten(1) - self.mean.flatten().to(torch.float64)) @ m.T
        sol = torch.linalg.solve(gram, rhs.T).T.to(self.mean.dtype)
        ident = sol[:, : self.n_identity]
        expr = sol[:, self.n_identity :] if with_expression and self.n_expression else None
        if expr is None:
            expr = self.mean.new_zeros(x.shape[0], self.n_expression)
        return ident, expr

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        meshes: Any,
        n_components: int,
        *,
        faces: torch.Tensor | None = None,
        expression_basis: torch.Tensor | None = None,
        expression_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> LinearFaceModel:
        """Build the identity model by PCA of registered meshes.

        The basis is ``U_k = sqrt(lambda_k) * e_k`` (eigenvector scaled by its standard deviation, with
        unbiased variance ``lambda_k = s_k^2 / (N - 1)``), so ``alpha ~ N(0, I)`` reproduces the data's
        covariance in the span of the first ``n_components`` modes.

        Args:
            meshes: a sequence of ``trimesh.Trimesh`` / (V, 3) arrays / tensors, or one (N, V, 3) array or
                tensor, all in correspondence.
            n_components: number of identity modes K, ``1 <= K <= N - 1``.
            faces: optional (F, 3) triangles (taken from the first trimesh mesh when omitted).
            expression_basis: optional (E, V, 3) blendshape deltas to attach.
            expression_names: optional names of the blendshapes.
            **kwargs: passed to the constructor (``uvs``, ``face_uvs``, ``landmark_indices``, ...).

        Returns:
            The model, in float32 unless the input was float64.

        Raises:
            TypeError: an element is not a mesh/array/tensor.
            ValueError: fewer than 2 meshes, differing vertex counts or faces, or a bad ``n_components``.
        """
        fn = "LinearFaceModel.build"
        if isinstance(meshes, (np.ndarray, torch.Tensor)) and meshes.ndim == 3:
            items = list(meshes)
        elif isinstance(meshes, Sequence):
            items = list(meshes)
        else:
            raise TypeError(
                f"{fn}: 'meshes' must be a sequence of meshes or an (N, V, 3) array; got {type(meshes).__name__}"
            )
        if len(items) < 2:
            raise ValueError(f"{fn}: 'meshes' must hold at least 2 meshes; got {len(items)}")
        ref_faces = None
        tensors: list[torch.Tensor] = []
        for i, m in enumerate(items):
            t = as_vertex_tensor(m, fn=fn, name=f"meshes[{i}]")
            if t.ndim != 2 or t.shape[1] != 3:
                raise ValueError(f"{fn}: 'meshes[{i}]' must have shape (V, 3); got {tuple(t.shape)}")
            if tensors and t.shape[0] != tensors[0].shape[0]:
                raise ValueError(
                    f"{fn}: all meshes must share one topology; 'meshes[{i}]' has {t.shape[0]} vertices but "
                    f"'meshes[0]' has {tensors[0].shape[0]}"
                )
            if hasattr(m, "faces"):
                f = np.asarray(m.faces)
                if ref_faces is None:
                    ref_faces = f
                elif f.shape != ref_faces.shape or not np.array_equal(f, ref_faces):
                    raise ValueError(
                        f"{fn}: all meshes must share one topology; 'meshes[{i}]' has different faces"
                    )
            tensors.append(t)
        n = len(tensors)
        if not isinstance(n_components, int) or not 1 <= n_components <= n - 1:
            raise ValueError(
                f"{fn}: 'n_components' must be an int in [1, {n - 1}] for {n} meshes; got {n_components!r}"
            )
        data = torch.stack([t.to(torch.float64) for t in tensors])
        check_finite(data, "meshes", fn=fn)
        out_dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
        mean = data.mean(0)
        centred = (data - mean).flatten(1)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        var = s[:n_components] ** 2 / (n - 1)
        basis = (vh[:n_components] * var.sqrt()[:, None]).view(n_components, -1, 3)
        # fix the sign so that each mode's largest-magnitude entry is positive (deterministic output)
        flat = basis.flatten(1)
        sign = torch.sign(flat.gather(1, flat.abs().argmax(1, keepdim=True)))
        basis = basis * sign[:, :, None]
        if faces is None and ref_faces is not None:
            faces = torch.from_numpy(ref_faces.astype(np.int64))
        logger.info("built LinearFaceModel from %d meshes, %d components", n, n_components)
        return cls(
            mean.to(out_dtype),
            basis.to(out_dtype),
            expression_basis,
            faces=faces,
            expression_names=expression_names,
            identity_variance=var.to(out_dtype),
            **kwargs,
        )

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save atomically as ``.npz`` or ``.safetensors`` (chosen by the extension).

        Args:
            path: destination file ending in ``.npz`` or ``.safetensors``.

        Raises:
            ValueError: unsupported extension.
        """
        fn = "LinearFaceModel.save"
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        meta = {
            "format_version": str(_FORMAT_VERSION),
            "package": "morphface",
            "expression_names": json.dumps(self.expression_names),
            "material_names": json.dumps(self.material_names),
        }
        arrays = self._arrays()
        if ext == ".npz":

            def write(tmp: str) -> None:
                payload: dict[str, Any] = {k: v.numpy() for k, v in arrays.items()}
                payload.update({f"__meta_{k}": np.asarray(v) for k, v in meta.items()})
                with open(tmp, "wb") as fh:
                    np.savez(fh, **payload)
        elif ext == ".safetensors":
            from safetensors.torch import save_file

            def write(tmp: str) -> None:
                save_file(arrays, tmp, metadata=meta)
        else:
            raise ValueError(f"{fn}: 'path' must end in .npz or .safetensors; got {ext or 'no extension'!r}")
        atomic_write(path, write)
        logger.info("saved LinearFaceModel to %s", path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LinearFaceModel:
        """Load a model written by :meth:`save`.

        Args:
            path: an ``.npz`` or ``.safetensors`` file.
            device: target device.
            dtype: target floating dtype (default: as stored).

        Returns:
            The model.

        Raises:
            FileNotFoundError: no such file.
            ValueError: unsupported extension, or a truncated / garbage / foreign file ("not a valid
                morphface LinearFaceModel file (truncated or not written by morphface)").
        """
        fn = "LinearFaceModel.load"
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{fn}: no file at 'path' {path!r}")
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".npz", ".safetensors"):
            raise ValueError(f"{fn}: 'path' must end in .npz or .safetensors; got {ext or 'no extension'!r}")
        what = "morphface LinearFaceModel file"
        try:
            if ext == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: torch.from_numpy(z[k]) for k in z.files if not k.startswith("__meta_")}
                    meta = {k[len("__meta_") :]: str(z[k]) for k in z.files if k.startswith("__meta_")}
            else:
                from safetensors import safe_open

                with safe_open(path, framework="pt") as f:
                    meta = dict(f.metadata() or {})
                    arrays = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, SafetensorError, ValueError, ...
            raise invalid_file(fn, path, what, exc) from exc
        missing = sorted(set(_ARRAY_KEYS) - set(arrays))
        if meta.get("package") != "morphface" or missing:
            raise invalid_file(
                fn, path, what + f" (package={meta.get('package')!r}, missing arrays {missing})"
            )
        if int(meta.get("format_version", "0")) > _FORMAT_VERSION:
            raise ValueError(
                f"{fn}: {path!r} has format_version {meta['format_version']}, newer than this morphface "
                f"({_FORMAT_VERSION}); upgrade morphface"
            )
        names = json.loads(meta.get("expression_names", "[]"))
        materials = json.loads(meta["material_names"]) if "face_material" in arrays else None
        return cls(
            arrays["mean"],
            arrays["identity_basis"],
            arrays["expression_basis"],
            faces=arrays["faces"],
            uvs=arrays["uvs"],
            face_uvs=arrays["face_uvs"],
            uv_face_mask=arrays["uv_face_mask"],
            face_material=arrays.get("face_material"),  # absent in files of morphface < 0.3
            material_names=materials,
            landmark_indices=arrays["landmark_indices"],
            expression_names=names,
            identity_variance=arrays["identity_variance"],
            device=device,
            dtype=dtype,
        )
