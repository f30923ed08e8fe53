"""Export a quantized model as bit-packed integer codes plus scales in a safetensors file, and load it."""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .__about__ import __version__
from ._checks import check_module, check_path, check_tensor
from .checkpoint import NOT_VALID, default_file_mode
from .convert import _freeze_layer, _set_frozen, _unwrap, quantized_layers
from .levels import Levels
from .nn import QConv2d, QLinear

logger = logging.getLogger(__name__)

__all__ = ["export", "load", "pack_codes", "unpack_codes"]

FORMAT = "qnet-export"
FORMAT_VERSION = "1"


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Bit-pack non-negative integer codes, ``bits`` per code, most significant bit first.

    Args:
        codes: integer codes in ``[0, 2^bits)``, any shape (flattened).
        bits: bits per code, 1 to 8.

    Returns:
        ``torch.uint8`` tensor of ``ceil(numel * bits / 8)`` bytes.

    Raises:
        TypeError: ``codes`` is not an integer tensor.
        ValueError: ``bits`` out of range or a code does not fit.

    Examples:
        >>> pack_codes(torch.tensor([1, 0, 1, 1, 0, 0, 0, 1, 1]), 1)
        tensor([177, 128], dtype=torch.uint8)
    """
    check_tensor(codes, "codes", fn="pack_codes")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"pack_codes: 'codes' must be an integer tensor; got {codes.dtype}")
    if isinstance(bits, bool) or not (isinstance(bits, int) and 1 <= bits <= 8):
        raise ValueError(f"pack_codes: 'bits' must be an int in [1, 8]; got {bits!r}")
    c = codes.detach().reshape(-1).to(torch.int64).cpu().numpy()
    if c.size and (c.min() < 0 or c.max() >= 2**bits):
        raise ValueError(f"pack_codes: codes must lie in [0, {2**bits}); got [{c.min()}, {c.max()}]")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bitmat = ((c[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
    return torch.from_numpy(np.packbits(bitmat.reshape(-1)))


def unpack_codes(packed: Tensor, bits: int, numel: int) -> Tensor:
    """Inverse of :func:`pack_codes`.

    Args:
        packed: ``torch.uint8`` bytes.
        bits: bits per code.
        numel: number of codes.

    Returns:
        ``torch.int64`` codes, shape ``(numel,)``.

    Raises:
        TypeError: ``packed`` is not a ``torch.uint8`` tensor.
        ValueError: ``bits`` out of range, negative ``numel`` or ``packed`` too short.
    """
    check_tensor(packed, "packed", fn="unpack_codes")
    if packed.dtype != torch.uint8:
        raise TypeError(f"unpack_codes: 'packed' must have dtype torch.uint8; got {packed.dtype}")
    if isinstance(bits, bool) or not (isinstance(bits, int) and 1 <= bits <= 8):
        raise ValueError(f"unpack_codes: 'bits' must be an int in [1, 8]; got {bits!r}")
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
        raise ValueError(f"unpack_codes: 'numel' must be an int >= 0; got {numel!r}")
    need = (numel * bits + 7) // 8
    if packed.numel() < need:
        raise ValueError(
            f"unpack_codes: need {need} bytes for {numel} codes of {bits} bits; got {packed.numel()}"
        )
    flat = np.unpackbits(packed.detach().cpu().numpy().astype(np.uint8))[: numel * bits]
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))[None, :]
    return torch.from_numpy((flat.reshape(numel, bits).astype(np.int64) * weights).sum(1))


def _atomic_save(tensors: dict[str, Tensor], metadata: dict[str, str], path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".qnet-", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, default_file_mode())  # after save_file, which may recreate the file
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def export(model: nn.Module, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``model`` with hard-quantized weights as packed integer codes plus scales (safetensors).

    Every quantized layer's weight is stored as ``<name>.weight_codes`` (``uint8``, ``Levels.bits`` bits per
    weight: 1 for binary, 2 for ternary, 3 for ``pm2``/``pm4``) and ``<name>.weight_scale``; every other tensor
    of the state dict (biases, BatchNorm, float first/last layers, activation quantizers) is stored as is.
    The model itself is not modified (a frozen copy is exported).

    Args:
        model: a model converted by :func:`~qnet.quantize` (frozen or not).
        path: destination file (written atomically).

    Returns:
        Sizes: ``{"file_bytes", "float32_bytes", "ratio", "quantized_params", "quantized_bytes",
        "quantized_float32_bytes", "quantized_ratio"}``; ``ratio`` is float32 state size over file size.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``path`` is not a path.
        ValueError: ``model`` has no quantized layer.
    """
    check_module(model, "model", fn="export")
    check_path(path, "path", fn="export")
    src = _unwrap(model)
    if not list(quantized_layers(src)):
        raise ValueError("export: 'model' has no QConv2d/QLinear layer; call qnet.quantize first")
    frozen = copy.deepcopy(src).eval()
    layers_meta: dict[str, Any] = {}
    tensors: dict[str, Tensor] = {}
    skip_keys: set[str] = set()
    q_params = q_bytes = 0
    for name, layer in quantized_layers(frozen):
        if layer.weight_quantizer is not None:
            _freeze_layer(layer)
        elif layer.input_quantizer is not None:
            layer.input_quantizer.set_mode("hard")
        pre = f"{name}." if name else ""
        levels: Levels | None = getattr(layer, "frozen_levels", None)
        aq = layer.input_quantizer
        meta: dict[str, Any] = {
            "type": "conv2d" if isinstance(layer, QConv2d) else "linear",
            "method": layer.method,
            "levels": list(levels.values) if levels is not None else None,
            "act_levels": list(aq.levels.values) if aq is not None else None,
            "shape": list(layer.weight.shape),
        }
        skip_keys |= {pre + "weight", pre + "weight_codes", pre + "weight_scale"}
        if levels is not None:
            wcodes: Tensor = layer.get_buffer("weight_codes")
            wscale: Tensor = layer.get_buffer("weight_scale")
            packed = pack_codes(wcodes, levels.bits)
            tensors[pre + "weight_codes"] = packed
            tensors[pre + "weight_scale"] = wscale.detach().reshape(-1).cpu().contiguous()
            meta["bits"] = levels.bits
            q_params += layer.weight.numel()
            q_bytes += packed.numel() + wscale.element_size() * wscale.numel()
        else:
            tensors[pre + "weight"] = layer.weight.detach().cpu().contiguous()
        layers_meta[name] = meta
    float_bytes = 0
    for key, val in frozen.state_dict().items():
        if key.endswith("weight_codes"):
            continue
        float_bytes += val.numel() * 4 if val.is_floating_point() else val.numel() * val.element_size()
        if key in skip_keys:
            continue
        tensors[key] = val.detach().cpu().contiguous().clone()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "layers": json.dumps(layers_meta),
    }
    _atomic_save(tensors, metadata, os.fspath(path))
    file_bytes = os.path.getsize(path)
    sizes = {
        "file_bytes": file_bytes,
        "float32_bytes": float_bytes,
        "ratio": float_bytes / file_bytes,
        "quantized_params": q_params,
        "quantized_bytes": q_bytes,
        "quantized_float32_bytes": q_params * 4,
        "quantized_ratio": (q_params * 4 / q_bytes) if q_bytes else float("nan"),
    }
    logger.info("export: wrote %s (%d bytes, %.1fx smaller than float32)", path, file_bytes, sizes["ratio"])
    return sizes


def _read_metadata(path: str) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


def load(path: str | os.PathLike[str], model: nn.Module) -> nn.Module:
    """Rebuild a frozen quantized model from a file written by :func:`export`, in place.

    ``model`` is either the float architecture (its layers named in the file are converted here) or the
    same architecture already converted by :func:`~qnet.quantize`. Weights are decoded as
    ``scale * Y[codes]``, so the loaded model's outputs equal the exported model's hard outputs bit for bit.

    Args:
        path: the exported file.
        model: the architecture to fill.

    Returns:
        ``model``, frozen, in eval mode.

    Raises:
        TypeError: ``path`` is not a path or ``model`` is not an ``nn.Module``.
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a safetensors file, not a qnet export, an unsupported format version, or the
            architecture does not match.
    """
    check_path(path, "path", fn="load")
    check_module(model, "model", fn="load")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"load: 'path' {p!r} is not a file")
    try:
        meta = _read_metadata(p)
    except Exception as e:  # safetensors raises its own error type for a malformed header
        raise ValueError(f"load: {p!r} is {NOT_VALID} ({type(e).__name__}: {e})") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"load: {p!r} is {NOT_VALID} (format={meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"load: '{p}' has format_version {meta.get('format_version')!r}; this qnet "
            f"({__version__}) reads version {FORMAT_VERSION}"
        )
    try:
        layers_meta: dict[str, Any] = json.loads(meta["layers"])
        tensors = load_file(p)
    except Exception as e:  # a truncated body after a valid header, or damaged metadata
        raise ValueError(f"load: {p!r} is {NOT_VALID} ({type(e).__name__}: {e})") from e
    target = _unwrap(model)
    expected_missing: set[str] = set()
    for name, info in layers_meta.items():
        mod = target.get_submodule(name) if name else target
        pre = f"{name}." if name else ""
        if info["levels"] is not None:
            expected_missing |= {pre + "weight", pre + "weight_codes", pre + "weight_scale"}
        if not isinstance(mod, (QConv2d, QLinear)):
            want = nn.Conv2d if info["type"] == "conv2d" else nn.Linear
            if type(mod) is not want:
                raise ValueError(
                    f"load: layer '{name}' is {type(mod).__name__}; the file holds a {want.__name__}"
                )
            qcls: Any = QConv2d if info["type"] == "conv2d" else QLinear
            new = qcls.from_float(
                mod, weight_levels=None, act_levels=info["act_levels"], method=info["method"]
            )
            parent_name, _, child = name.rpartition(".")
            parent = target.get_submodule(parent_name) if parent_name else target
            setattr(parent, child, new)
            mod = new
        if list(mod.weight.shape) != info["shape"]:
            raise ValueError(
                f"load: layer '{name}' weight shape {list(mod.weight.shape)} != file {info['shape']}"
            )
        if info["levels"] is not None:
            lv = Levels(tuple(info["levels"]))
            codes = unpack_codes(tensors.pop(pre + "weight_codes"), lv.bits, mod.weight.numel())
            scale = tensors.pop(pre + "weight_scale")
            scale = scale.reshape(()) if scale.numel() == 1 else scale.reshape(-1)
            values = torch.tensor(lv.values, dtype=mod.weight.dtype, device=mod.weight.device)
            _set_frozen(mod, codes.to(mod.weight.device), scale.to(mod.weight.device), values, lv)
            mod.weight_codes = mod.get_buffer("weight_codes").reshape(mod.weight.shape)
        if mod.input_quantizer is not None:
            mod.input_quantizer.set_mode("hard")
    missing, unexpected = target.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k not in expected_missing]
    if unexpected:
        raise ValueError(f"load: the file holds tensors the model does not have: {unexpected[:5]}")
    if missing:
        raise ValueError(f"load: the model has tensors the file does not hold: {missing[:5]}")
    logger.info("load: restored %d quantized layers from %s", len(layers_meta), p)
    return model.eval()
