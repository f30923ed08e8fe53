"""Camera distance from the 68 face landmarks: perspective changes the face's proportions.

Near the camera the central face (nose, eyes, mouth) is magnified relative to the face contour, which
recedes; the ratio of inner-face to contour widths and the other landmark proportions move with the
distance. :class:`LandmarkDistanceEstimator` regresses ``1 / distance`` (or ``log(distance)``) on the 136
coordinates of the landmarks after an eye-based similarity normalisation (ridge regression, closed form),
trained on landmarks of real photos displaced by the exact perspective change of the head model fitted to
them (:func:`perspective_landmarks`, :func:`undistort.realpairs.fit_head`; ``reproduce/train_distance.py``).

The faces' own variety of proportions is much larger than the perspective change beyond ~1 m, so the
estimate is informative at close range and coarse beyond; it inherits every assumption of the training
pairs (the source photos are taken as 500 cm views, the ICT-FaceKit head fitted to them is the 3D shape).

Research only: it works on landmarks moved by the exact perspective shift, but **not** on landmarks that
dlib detects on a near photo (median estimate 326 cm for views taken at 25-40 cm;
``reports/undistort/real_report.md``), and refitting it with the detector in the loop did not help.

Shapes: landmarks ``(68, 2)`` or ``(N, 68, 2)`` in pixels (any convention: only differences are used).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .heads import HeadModel
from .realpairs import HeadFit

__all__ = [
    "PRETRAINED_DISTANCE_FILE",
    "LandmarkDistanceEstimator",
    "landmark_features",
    "perspective_landmarks",
]

PRETRAINED_DISTANCE_FILE = "distance-landmarks.json"
"""The shipped estimator in ``undistort/weights`` (see :meth:`LandmarkDistanceEstimator.pretrained`)."""
_FORMAT = "undistort.LandmarkDistanceEstimator/1"

_LEFT_EYE = list(range(36, 42))
_RIGHT_EYE = list(range(42, 48))


def landmark_features(landmarks: Tensor | np.ndarray) -> np.ndarray:
    """Eye-normalised landmark coordinates: ``(68, 2)`` -> ``(136,)``, ``(N, 68, 2)`` -> ``(N, 136)``.

    The landmarks are translated to the eyes' centre, rotated so the eye centres lie on the ``x`` axis and
    scaled so the eye centres are 1 apart (a similarity: in-plane pose and size removed, proportions kept).

    Raises:
        ValueError: not ``(..., 68, 2)`` or not finite.
    """
    a = np.asarray(landmarks.detach().cpu() if isinstance(landmarks, Tensor) else landmarks, dtype=np.float64)
    if a.ndim not in (2, 3) or a.shape[-2:] != (68, 2):
        raise ValueError(
            f"landmark_features: 'landmarks' must have shape (68, 2) or (N, 68, 2); got {a.shape}"
        )
    if not np.isfinite(a).all():
        raise ValueError("landmark_features: 'landmarks' must be finite")
    single = a.ndim == 2
    a = a[None] if single else a
    le, re = a[:, _LEFT_EYE].mean(1), a[:, _RIGHT_EYE].mean(1)
    c = (le + re) / 2
    v = re - le
    n = np.linalg.norm(v, axis=1)
    if (n <= 0).any():
        raise ValueError(
            "landmark_features: 'landmarks' has coinciding eye centres (landmarks 36-41 and 42-47)"
        )
    cos, sin = v[:, 0] / n, v[:, 1] / n
    p = a - c[:, None]
    x = (p[..., 0] * cos[:, None] + p[..., 1] * sin[:, None]) / n[:, None]
    y = (-p[..., 0] * sin[:, None] + p[..., 1] * cos[:, None]) / n[:, None]
    out = np.stack([x, y], -1).reshape(a.shape[0], 136)
    return out[0] if single else out


def perspective_landmarks(
    fit: HeadFit,
    heads: HeadModel,
    distance: float,
    *,
    image_size: tuple[int, int],
    distance_ref: float = 500.0,
) -> Tensor:
    """The fitted head's 68 landmark vertices seen from ``distance`` minus their view from ``distance_ref``.

    The same face-anchored camera as :func:`undistort.realpairs.real_pair` (focal ``scale * d``, the eyes'
    plane keeps its size): adding the result to a photo's landmarks gives the landmarks of the same face
    photographed from ``distance`` (the perspective displacement, exact for the fitted head).

    Args:
        fit: :func:`undistort.realpairs.fit_head` result in the photo's pixels.
        heads: the head model the fit used (68 landmark vertices).
        distance: camera-to-eyes distance (cm), > 0.
        image_size: ``(H, W)`` of the photo (the principal point is its centre).
        distance_ref: the photo's distance (cm).

    Returns:
        ``(68, 2)`` displacement in pixels (float32).

    Raises:
        ValueError: a non-positive or non-finite distance, a bad ``image_size``, or a model without 68
            landmark vertices.
    """
    fn = "perspective_landmarks"
    for name, val in (("distance", distance), ("distance_ref", distance_ref)):
        if not (isinstance(val, (int, float)) and math.isfinite(val) and val > 0):
            raise ValueError(f"{fn}: '{name}' must be a finite number > 0; got {val!r}")
    if len(image_size) != 2 or not all(int(v) > 0 for v in image_size):
        raise ValueError(f"{fn}: 'image_size' must be (H, W) with positive sizes; got {image_size!r}")
    if heads.landmarks.numel() != 68:
        raise ValueError(f"{fn}: 'heads' must have 68 landmark vertices; got {heads.landmarks.numel()}")
    h, w = image_size
    cx, cy = w / 2.0, h / 2.0
    s = fit.scale
    v = fit.vertices[heads.landmarks.long()].double() @ fit.rotation.double().T
    txy = torch.tensor(
        [(float(fit.center[0]) - cx) / s, (float(fit.center[1]) - cy) / s], dtype=torch.float64
    )

    def view(d: float) -> Tensor:
        z = v[:, 2] + d
        return s * d * (v[:, :2] + txy) / z[:, None]

    return (view(float(distance)) - view(float(distance_ref))).float()


@dataclass
class LandmarkDistanceEstimator:
    """Ridge regression of the camera distance on :func:`landmark_features` (standardised features).

    The target is ``1 / distance`` (``target="inverse"``: the perspective displacement of a landmark at
    depth ``z`` off the face plane is ``~ z (1/d - 1/d_ref)``, linear in ``1/d``, so squared error in the
    target is squared error in the correction's size) or ``log(distance)`` (``target="log"``).
    Predictions are clipped to ``[d_min, d_max]``; an estimate at ``d_max`` (the training reference) means
    "as far as the photos it was trained on", i.e. leave the portrait alone. :meth:`correction_distance`
    shrinks the estimate towards ``d_max`` by ``margin`` in ``1/d`` (a dead zone: estimates within
    ``margin`` of ``1/d_max`` mean "leave alone"), so that noise on far portraits does not warp them.

    Attributes:
        mean, std: ``(136,)`` feature standardisation.
        weights: ``(136,)`` regression weights; bias: intercept (in the target's unit).
        ridge: the ridge weight it was fitted with (times the number of samples, on standardised features).
        d_min, d_max: predictions are clipped to this range (cm).
        target: ``"inverse"`` or ``"log"``.
        meta: free-form provenance (data, split, validation error).
        margin: dead zone of :meth:`correction_distance` in ``1/cm`` (>= 0; 0: the raw estimate).
    """

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    ridge: float
    d_min: float = 25.0
    d_max: float = 500.0
    target: str = "inverse"
    meta: dict[str, Any] | None = None
    margin: float = 0.0

    @staticmethod
    def _encode(d: np.ndarray, target: str) -> np.ndarray:
        if target == "inverse":
            return 1.0 / d
        if target == "log":
            return np.log(d)
        raise ValueError(f"LandmarkDistanceEstimator: 'target' must be 'inverse' or 'log'; got {target!r}")

    @classmethod
    def fit(
        cls,
        landmarks: np.ndarray | Tensor,
        distances: np.ndarray | Tensor,
        *,
        ridge: float = 1e-3,
        d_min: float = 25.0,
        d_max: float = 500.0,
        target: str = "inverse",
        meta: dict[str, Any] | None = None,
    ) -> LandmarkDistanceEstimator:
        """Closed-form ridge fit.

        Args:
            landmarks: ``(N, 68, 2)`` landmarks (pixels), ``N >= 2``.
            distances: ``(N,)`` camera-to-face distances (cm), finite and > 0.
            ridge: ridge weight (>= 0) per sample on the standardised features.
            d_min, d_max: the prediction range (cm), ``0 < d_min < d_max``.
            target: ``"inverse"`` (regress ``1/d``) or ``"log"`` (regress ``log d``).
            meta: provenance stored with the estimator.

        Raises:
            ValueError: bad shapes or values, naming the argument.
        """
        fn = "LandmarkDistanceEstimator.fit"
        cls._encode(np.ones(1), target)
        lm = np.asarray(
            landmarks.detach().cpu() if isinstance(landmarks, Tensor) else landmarks, dtype=np.float64
        )
        if lm.ndim != 3 or lm.shape[1:] != (68, 2) or lm.shape[0] < 2:
            raise ValueError(f"{fn}: 'landmarks' must have shape (N, 68, 2) with N >= 2; got {lm.shape}")
        d = np.asarray(
            distances.detach().cpu() if isinstance(distances, Tensor) else distances, dtype=np.float64
        )
        if d.shape != (lm.shape[0],):
            raise ValueError(f"{fn}: 'distances' must have shape (N,) = ({lm.shape[0]},); got {d.shape}")
        if not (np.isfinite(d).all() and (d > 0).all()):
            raise ValueError(f"{fn}: 'distances' must be finite and > 0")
        if not (math.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"{fn}: 'ridge' must be a finite number >= 0; got {ridge!r}")
        if not (0 < d_min < d_max and math.isfinite(d_max)):
            raise ValueError(
                f"{fn}: 'd_min' and 'd_max' must satisfy 0 < d_min < d_max; got {d_min!r}, {d_max!r}"
            )
        x = landmark_features(lm)
        y = cls._encode(d, target)
        mu, sd = x.mean(0), x.std(0) + 1e-8
        z = (x - mu) / sd
        ym = float(y.mean())
        a = z.T @ z + ridge * z.shape[0] * np.eye(z.shape[1])
        wts = np.linalg.lstsq(a, z.T @ (y - ym), rcond=None)[0]
        return cls(mu, sd, wts, ym, float(ridge), float(d_min), float(d_max), target, meta)

    def predict(self, landmarks: Tensor | np.ndarray) -> np.ndarray:
        """Distances (cm) of ``(68, 2)`` (-> 0-d array) or ``(N, 68, 2)`` (-> ``(N,)``) landmarks.

        Raises:
            ValueError: ``landmarks`` not ``(68, 2)`` / ``(N, 68, 2)``, not finite, or eyes coinciding.
        """
        x = landmark_features(landmarks)
        y = (x - self.mean) / self.std @ self.weights + self.bias
        if self.target == "log":
            return np.exp(np.clip(y, math.log(self.d_min), math.log(self.d_max)))
        return 1.0 / np.clip(y, 1.0 / self.d_max, 1.0 / self.d_min)

    def correction_distance(self, landmarks: Tensor | np.ndarray) -> np.ndarray:
        """The distance whose perspective to undo: ``1/d = 1/d_max + max(0, 1/d_hat - 1/d_max - margin)``.

        ``d_hat`` is :meth:`predict`. A soft threshold in ``1/d``: the result equals ``d_max`` (leave the
        portrait alone) whenever the estimate lies within ``margin`` of ``1/d_max``, and beyond it every
        correction is weakened by ``margin`` (continuous in the landmarks; at 25 cm with ``margin = 0.005``
        it undoes 28.6 cm). Shapes as :meth:`predict`.
        """
        inv = 1.0 / self.predict(landmarks) - 1.0 / self.d_max
        return 1.0 / (1.0 / self.d_max + np.maximum(inv - self.margin, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (numbers and lists only)."""
        return {
            "format": _FORMAT,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "ridge": self.ridge,
            "d_min": self.d_min,
            "d_max": self.d_max,
            "target": self.target,
            "margin": self.margin,
            "meta": self.meta or {},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LandmarkDistanceEstimator:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a foreign or inconsistent dict (wrong format tag, shapes, non-finite numbers).
        """
        fn = "LandmarkDistanceEstimator.from_dict"
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"{fn}: 'd' is not a {_FORMAT!r} dict")
        try:
            est = cls(
                np.asarray(d["mean"], dtype=np.float64),
                np.asarray(d["std"], dtype=np.float64),
                np.asarray(d["weights"], dtype=np.float64),
                float(d["bias"]),
                float(d["ridge"]),
                float(d["d_min"]),
                float(d["d_max"]),
                str(d["target"]),
                dict(d.get("meta") or {}),
                float(d.get("margin", 0.0)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{fn}: 'd' lacks a field or has a wrong type: {exc}") from exc
        cls._encode(np.ones(1), est.target)
        if not (est.mean.shape == est.std.shape == est.weights.shape == (136,)):
            raise ValueError(f"{fn}: 'mean', 'std' and 'weights' must have 136 entries")
        arrays = np.concatenate(
            [est.mean, est.std, est.weights, [est.bias, est.d_min, est.d_max, est.margin]]
        )
        if not np.isfinite(arrays).all() or not (est.std > 0).all() or not 0 < est.d_min < est.d_max:
            raise ValueError(f"{fn}: non-finite numbers, std <= 0 or d_min >= d_max")
        if est.margin < 0:
            raise ValueError(f"{fn}: 'margin' must be >= 0; got {est.margin}")
        return est

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON atomically (temp file + ``os.replace``); no pickle involved."""
        p = os.fspath(path)
        tmp = p + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1)
            fh.write("\n")
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LandmarkDistanceEstimator:
        """Read a file written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a valid undistort distance-estimator file (truncated or foreign).
        """
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise FileNotFoundError(f"LandmarkDistanceEstimator.load: no file {p!r}")
        try:
            with open(p, encoding="utf-8") as fh:
                d = json.load(fh)
            return cls.from_dict(d)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"LandmarkDistanceEstimator.load: {p!r} is not a valid undistort distance-estimator file "
                f"(truncated or not written by undistort): {exc}"
            ) from exc

    @classmethod
    def pretrained(cls) -> LandmarkDistanceEstimator:
        """The estimator shipped in ``undistort/weights`` (fitted by ``reproduce/train_distance.py``).

        Its training data, split and held-out accuracy are in its ``meta`` and in the package README.

        Raises:
            FileNotFoundError: the file is missing from this installation.
        """
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", PRETRAINED_DISTANCE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"LandmarkDistanceEstimator.pretrained: the shipped file {path!r} is missing from this installation"
            )
        return cls.load(path)
