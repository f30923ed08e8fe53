"""Export of a frozen qnet model as a standard ONNX QDQ graph (QuantizeLinear / DequantizeLinear).

Every qnet weight level set is an integer set ``Y`` times a scale ``alpha``, so a frozen weight is exactly
``alpha * Y[codes]``: it is stored as an ``int8`` initialiser holding ``Y[codes]`` with a ``DequantizeLinear``
of scale ``alpha`` (zero point 0). Sets whose levels leave ``[-128, 127]`` cannot map and raise.

Activations map when their hard quantizer is uniform rounding on an integer grid starting at 0
(``uint<k>``): ``Min(hi) -> QuantizeLinear(uint8, scale) -> DequantizeLinear`` (the uint8 saturation
clips at 0). For the qnet
:class:`~qnet.Quantizer` that needs thresholds at the midpoints of consecutive levels in the ``beta`` domain
(``act_init="midpoint"``, thresholds not learned): the grid scale is ``1 / beta`` and the output factor
``alpha * beta`` is folded into the following layer's weight scale (exact, the layer is linear). k-means or
learned activation thresholds are not uniform rounding and raise. ``LSQQuantizer`` (scale ``s``) and
``STEQuantizer`` (scale ``range / Y_max``) map directly.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_module, check_path, check_tensor
from .checkpoint import default_file_mode
from .convert import _check_calibration_input, _unwrap, quantized_layers
from .nn import LSQQuantizer, QConv2d, QLinear, Quantizer, STEQuantizer

logger = logging.getLogger(__name__)

__all__ = ["export_onnx"]

_FN = "export_onnx"


def _act_params(name: str, q: nn.Module) -> tuple[float, float, float]:
    """``(clip_hi, grid_scale, post_factor)`` of an activation quantizer, or raise when it cannot map."""
    vals = [int(v) for v in q.levels.values]  # type: ignore[union-attr]
    if vals[0] != 0 or vals != list(range(vals[0], vals[-1] + 1)) or vals[-1] > 255:
        raise ValueError(
            f"{_FN}: input quantizer of '{name}' has levels {tuple(vals)}; only uniform unsigned grids "
            "{0, 1, ..., m <= 255} (uint<k>) map to QDQ activations"
        )
    top = float(vals[-1])
    if isinstance(q, Quantizer):
        thr = q.thresholds.detach().double()
        mid = torch.tensor([v + 0.5 for v in vals[:-1]], dtype=torch.float64)
        if q.learn_thresholds or not torch.allclose(thr, mid, rtol=0, atol=1e-6):
            raise ValueError(
                f"{_FN}: input quantizer of '{name}' has thresholds {[round(float(t), 4) for t in thr]} "
                f"(not the midpoints {mid.tolist()}); hard steps at non-uniform thresholds are not a "
                "QuantizeLinear rounding. Quantize with act_init='midpoint' (and frozen thresholds) to export "
                "activations, or export a weight-only model"
            )
        beta, alpha = float(q.beta.detach()), float(q.alpha.detach())
        if not (beta > 0 and alpha > 0):
            raise ValueError(
                f"{_FN}: input quantizer of '{name}' has alpha={alpha}, beta={beta}; both must be > 0"
            )
        return top / beta, 1.0 / beta, alpha * beta
    if isinstance(q, LSQQuantizer):
        s = float(q.step.detach().abs())
        return top * s, s, 1.0
    if isinstance(q, STEQuantizer):
        s = float(q.range) / top
        return top * s, s, 1.0
    raise ValueError(f"{_FN}: input quantizer of '{name}' is a {type(q).__name__}; not exportable")


class _QDQLayer(nn.Module):
    """Conv2d / Linear with fake-quantized (QDQ) input and weight, as the ONNX exporter maps them."""

    def __init__(self, layer: QConv2d | QLinear, name: str) -> None:
        super().__init__()
        self.is_conv = isinstance(layer, QConv2d)
        self.conv_kw: dict[str, Any] = {}
        if self.is_conv:
            assert isinstance(layer, QConv2d)
            self.conv_kw = {
                "stride": layer.stride,
                "padding": layer.padding,
                "dilation": layer.dilation,
                "groups": layer.groups,
            }
            if layer.padding_mode != "zeros":
                raise ValueError(
                    f"{_FN}: '{name}' uses padding_mode={layer.padding_mode!r}; only 'zeros' exports"
                )
        aq = layer.input_quantizer
        self.act: tuple[float, float] | None = None
        factor = 1.0
        if aq is not None and aq.mode != "off":
            hi, grid, factor = _act_params(name, aq)
            self.act = (hi, grid)
        w = layer.weight.detach()
        self.w_scale: float | None = None
        self.w_scales: Tensor | None = None  # per-channel (dim 0) scales, exported per-axis
        if hasattr(layer, "weight_codes"):
            levels: Any = layer.frozen_levels
            if min(levels.values) < -128 or max(levels.values) > 127:
                raise ValueError(
                    f"{_FN}: weight levels {levels.values} of '{name}' leave the int8 range [-128, 127]; "
                    "they cannot map to int8 QDQ"
                )
            ws = layer.get_buffer("weight_scale").detach()
            if ws.numel() == 1:
                self.w_scale = float(ws) * factor
            else:
                self.w_scales = (ws.reshape(-1).double() * factor).float()
        self.weight = nn.Parameter(w * factor, requires_grad=False)
        self.bias = (
            None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.act is not None:
            hi, grid = self.act
            # Min (not Clip): onnxruntime's Clip->QuantizeLinear fusion drops a Clip whose upper bound is
            # below the uint8 range, which changes the result; the lower bound 0 is the uint8 saturation
            x = torch.minimum(x, torch.full((), hi, dtype=x.dtype, device=x.device))
            x = torch.fake_quantize_per_tensor_affine(x, grid, 0, 0, 255)
        w: Tensor = self.weight
        if self.w_scale is not None:
            w = torch.fake_quantize_per_tensor_affine(w, self.w_scale, 0, -128, 127)
        elif self.w_scales is not None:
            zp = torch.zeros(self.w_scales.shape, dtype=torch.int32)
            w = torch.fake_quantize_per_channel_affine(w, self.w_scales, zp, 0, -128, 127)
        if self.is_conv:
            return F.conv2d(x, w, self.bias, **self.conv_kw)
        return F.linear(x, w, self.bias)


def _int8_weights(path: str) -> dict[str, int]:
    """Replace ``QuantizeLinear(float initialiser)`` by an int8 initialiser feeding the DequantizeLinear."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts: dict[str, Any] = {}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)

    def value(name: str) -> Any:
        return numpy_helper.to_array(inits[name]) if name in inits else consts.get(name)

    removed, n_int8, int8_bytes = [], 0, 0
    for n in list(g.node):
        if n.op_type != "QuantizeLinear" or n.input[0] not in inits:
            continue
        w, scale, zp = value(n.input[0]), value(n.input[1]), value(n.input[2])
        if scale is None or zp is None or zp.dtype != np.int8:
            continue
        if np.ndim(scale) == 1 and np.size(scale) > 1:  # per-axis: broadcast along the node's axis
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            shape = [1] * w.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        q = np.clip(np.rint(w / scale) + zp.astype(np.int32), -128, 127).astype(np.int8)
        name = n.input[0] + "_int8"
        g.initializer.append(numpy_helper.from_array(q, name))
        for m in g.node:
            for k, inp in enumerate(m.input):
                if inp == n.output[0]:
                    m.input[k] = name
        removed.append(n)
        n_int8 += 1
        int8_bytes += q.size
    for n in removed:
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in list(g.initializer):
        if init.name not in used:
            g.initializer.remove(init)
    onnx.save(model, path)
    return {"int8_weight_tensors": n_int8, "int8_weight_bytes": int8_bytes}


def export_onnx(
    model: nn.Module,
    example_input: Tensor,
    path: str | os.PathLike[str],
    *,
    opset: int = 13,
    input_name: str = "input",
    output_name: str = "logits",
    dynamic_batch: bool = True,
) -> dict[str, Any]:
    """Write a frozen qnet model as a standard ONNX QDQ graph that onnxruntime runs.

    Frozen quantized weights become ``int8`` initialisers (the integer levels) with a ``DequantizeLinear`` of
    scale ``alpha``; uniform activation quantizers become ``Min -> QuantizeLinear(uint8) -> DequantizeLinear``
    (see the module docstring for which level sets and thresholds map). Float layers stay float.

    Args:
        model: a model converted by :func:`~qnet.quantize` and frozen by :func:`~qnet.freeze`, in eval mode.
        example_input: a batch the model accepts, ``(B, C, H, W)`` for a CNN (used for tracing).
        path: destination ``.onnx`` file (written atomically: nothing is left behind on error).
        opset: ONNX opset (>= 13).
        input_name: name of the graph input.
        output_name: name of the graph output.
        dynamic_batch: make the batch dimension dynamic.

    Returns:
        ``{"file_bytes", "int8_weight_tensors", "int8_weight_bytes", "quantized_layers"}``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``example_input`` not a floating tensor, ``path`` not a path.
        ValueError: the model is in training mode, not frozen, has a level set or activation quantizer that
            cannot map, no quantized layer, or ``example_input`` does not fit the model; all checked before
            any file is written.
        ImportError: ``onnx`` is not installed (``pip install qnet-torch[onnx]``).
    """
    check_module(model, "model", fn=_FN)
    check_tensor(example_input, "example_input", fn=_FN)
    check_path(path, "path", fn=_FN)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ValueError(f"{_FN}: 'opset' must be an int >= 13; got {opset!r}")
    src = _unwrap(model)
    if src.training:
        raise ValueError(
            f"{_FN}: 'model' is in training mode; call qnet.freeze(model) (or model.eval()) first"
        )
    layers = list(quantized_layers(src))
    if not layers:
        raise ValueError(
            f"{_FN}: 'model' has no QConv2d/QLinear layer; call qnet.quantize and qnet.freeze first"
        )
    unfrozen = [n for n, m in layers if m.weight_quantizer is not None]
    if unfrozen:
        raise ValueError(
            f"{_FN}: 'model' is not frozen (layers {unfrozen[:3]} still train their weights); call qnet.freeze first"
        )
    try:
        _check_calibration_input(src, example_input, fn=_FN, name="example_input")
    except TypeError as e:
        raise TypeError(str(e).replace("batches must", "must")) from None
    except ValueError as e:
        raise ValueError(str(e).replace("batches must", "must")) from None
    try:
        import onnx  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{_FN}: needs the 'onnx' package: pip install qnet-torch[onnx]") from e
    work = copy.deepcopy(src).eval()
    for name, layer in list(quantized_layers(work)):
        new = _QDQLayer(layer, name)
        parent, _, child = name.rpartition(".")
        setattr(work.get_submodule(parent) if parent else work, child, new)
    x = example_input.detach().to(next(work.parameters()).device)
    try:
        with torch.no_grad():
            work(x)
    except RuntimeError as e:
        raise ValueError(
            f"{_FN}: 'example_input' of shape {tuple(x.shape)} does not fit the model ({e})"
        ) from e
    p = os.fspath(path)
    d = os.path.dirname(os.path.abspath(p))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".qnet-", suffix=".onnx.tmp", dir=d)
    os.close(fd)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                work,
                (x,),
                tmp,
                dynamo=False,
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None,
                do_constant_folding=True,
            )
        info = _int8_weights(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    info["file_bytes"] = os.path.getsize(p)
    info["quantized_layers"] = len(layers)
    logger.info(
        "export_onnx: wrote %s (%d bytes, %d int8 weight tensors)",
        p,
        info["file_bytes"],
        info["int8_weight_tensors"],
    )
    return info
