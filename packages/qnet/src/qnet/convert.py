"""Whole-model conversion, calibration, temperature schedule and freezing."""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import check_iterable, check_module
from ._dist import average_bn_stats, broadcast_state, world_size
from .levels import Levels, LevelsLike
from .nn import LSQQuantizer, QConv2d, QLinear, Quantizer, STEQuantizer, _QuantizerBase, _QuantLayer

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_LAYER_MAP",
    "TemperatureSchedule",
    "calibrate",
    "freeze",
    "quantize",
    "quantized_layers",
    "quantizers",
    "recalibrate_bn",
    "set_phase",
]

DEFAULT_LAYER_MAP: dict[type[nn.Module], type[nn.Module]] = {nn.Conv2d: QConv2d, nn.Linear: QLinear}
"""Float layer class -> quantized twin used by :func:`quantize` (exact type match, subclasses are left alone)."""


def _sync(model: nn.Module, sync_ranks: bool | None) -> bool:
    """Whether to make state identical across ranks: explicit, or by default for a DDP model."""
    if world_size() == 1:
        return False
    if sync_ranks is None:
        return isinstance(model, nn.parallel.DistributedDataParallel)
    return sync_ranks


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)  # DDP / DataParallel
    inner = inner if isinstance(inner, nn.Module) else model
    orig = getattr(inner, "_orig_mod", None)  # torch.compile
    return orig if isinstance(orig, nn.Module) else inner


def quantized_layers(model: nn.Module) -> Iterator[tuple[str, QConv2d | QLinear]]:
    """Yield ``(name, layer)`` for every :class:`QConv2d` / :class:`QLinear` of ``model``.

    Args:
        model: any module (DDP and ``torch.compile`` wrappers are looked through).

    Returns:
        An iterator of ``(qualified name, layer)``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` (raised at the call, not on iteration).
    """
    check_module(model, "model", fn="quantized_layers")
    return ((n, m) for n, m in _unwrap(model).named_modules() if isinstance(m, (QConv2d, QLinear)))


def quantizers(model: nn.Module, kind: str = "all") -> list[Quantizer | STEQuantizer | LSQQuantizer]:
    """The quantizers of ``model``: ``kind="weight"``, ``"input"`` or ``"all"``.

    Args:
        model: a converted model.
        kind: which quantizers.

    Returns:
        The quantizer modules, in module order.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: unknown ``kind``.
    """
    check_module(model, "model", fn="quantizers")
    if kind not in ("weight", "input", "all"):
        raise ValueError(f"quantizers: 'kind' must be 'weight', 'input' or 'all'; got {kind!r}")
    out: list[Quantizer | STEQuantizer | LSQQuantizer] = []
    for _, layer in quantized_layers(model):
        if kind in ("weight", "all") and layer.weight_quantizer is not None:
            out.append(layer.weight_quantizer)
        if kind in ("input", "all") and layer.input_quantizer is not None:
            out.append(layer.input_quantizer)
    return out


def _batch_input(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, dict):
        for key in ("image", "input", "x"):
            if key in batch:
                return batch[key]
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(
        "calibrate: batches must be a tensor, a (input, target) tuple or a dict with 'image'/'input'; "
        f"got {type(batch).__name__}"
    )


def _first_layer(model: nn.Module) -> nn.Module | None:
    for m in _unwrap(model).modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            return m
    return None


def _check_calibration_input(model: nn.Module, x: Any, *, fn: str, name: str) -> None:
    """Check one calibration batch against the model's first layer before running it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: '{name}' batches must hold tensors; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{fn}: '{name}' batches must be floating point (normalised like the training inputs); got "
            f"dtype {x.dtype} (for uint8 images use x.float() / 255 and the model's normalisation)"
        )
    first = _first_layer(model)
    if isinstance(first, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        nd = 3 if isinstance(first, nn.Conv1d) else 4 if isinstance(first, nn.Conv2d) else 5
        want = first.in_channels
        if x.dim() != nd or x.shape[1] != want:
            raise ValueError(
                f"{fn}: '{name}' batches must have shape (B, {want}, ...) with {nd} dims to match the model's "
                f"first {type(first).__name__} (in_channels={want}); got {tuple(x.shape)}"
            )
    elif isinstance(first, nn.Linear) and x.shape[-1] != first.in_features:
        raise ValueError(
            f"{fn}: '{name}' batches must have a last dimension of {first.in_features} to match the model's "
            f"first Linear (in_features={first.in_features}); got {tuple(x.shape)}"
        )


@torch.no_grad()
def calibrate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    num_samples: int = 1000,
    max_values: int = 200_000,
    quantized_weights: bool = False,
    sync_ranks: bool | None = None,
    _fn: str = "calibrate",
    _name: str = "loader",
) -> nn.Module:
    """Initialise every input (activation) quantizer from full-precision activations (Sec. 3.3).

    Runs up to ``num_samples`` samples of ``loader`` through ``model`` with all input quantizers off (and,
    unless ``quantized_weights``, the weight quantizers too: the pretrained full-precision network, as in
    the paper), records each quantized layer's input, then calls ``init_from`` on it (``beta = 5p/(4 max x)``, k-means
    thresholds). Weight quantizers are left as they are. The model's train/eval mode is restored.

    Under DDP: a plain model calibrated on each rank's shard is made identical when DDP wraps it (rank 0's
    state is broadcast); a model calibrated after wrapping (pass the DDP model) gets rank 0's input
    quantizers broadcast here (``sync_ranks``).

    Args:
        model: a converted model.
        loader: iterable of batches (tensor, ``(input, target)`` tuple, or dict with ``"image"``).
        num_samples: number of samples to use (the paper uses 1000).
        max_values: values kept per layer (a fixed stride sub-sample), bounding memory.
        quantized_weights: run with the weight quantizers on (e.g. phase 2 of the paper's 3-phase
            schedule, after the weights were trained).
        sync_ranks: broadcast rank 0's input quantizers to every ``torch.distributed`` rank (every rank must
            call this); ``None``: only when ``model`` is ``DistributedDataParallel``.

    Returns:
        ``model``, calibrated in place.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``loader`` is not an iterable of batches, or a batch
            is not floating point (e.g. uint8 images); checked before the batch is run.
        ValueError: ``num_samples < 1``, the loader is empty, or a batch's shape does not match the
            model's first layer (channels / features); checked before the batch is run.
    """
    check_module(model, "model", fn="calibrate")
    check_iterable(loader, "loader", fn="calibrate")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"calibrate: 'num_samples' must be >= 1; got {num_samples}")
    layers = [(n, m) for n, m in quantized_layers(model) if m.input_quantizer is not None]
    if not layers:
        return model
    store: dict[str, list[Tensor]] = {n: [] for n, _ in layers}
    modes: dict[str, str] = {}
    hooks = []
    for name, layer in layers:
        aq = layer.input_quantizer
        assert aq is not None
        modes[name] = aq.mode
        aq.set_mode("off")

        def hook(_m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            x = args[0].detach().reshape(-1)
            stride = max(1, x.numel() // max(1, max_values // 8))
            store[name].append(x[::stride].float().cpu())

        hooks.append(layer.register_forward_pre_hook(hook))
    wmodes: list[tuple[_QuantizerBase, str]] = []
    if not quantized_weights:
        for wq in quantizers(model, "weight"):
            wmodes.append((wq, wq.mode))
            wq.set_mode("off")
    was_training = model.training
    model.eval()
    seen = 0
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        for batch in loader:
            x = _batch_input(batch)
            _check_calibration_input(model, x, fn=_fn, name=_name)
            x = x[: num_samples - seen]
            _unwrap(model)(x.to(device))  # not through DDP: no buffer broadcast per batch
            seen += x.shape[0]
            if seen >= num_samples:
                break
    finally:
        for h in hooks:
            h.remove()
        for wq_, mode in wmodes:
            wq_.set_mode(mode)
        model.train(was_training)
    if seen == 0:
        raise ValueError("calibrate: 'loader' yielded no samples")
    for name, layer in layers:
        aq = layer.input_quantizer
        assert aq is not None
        vals = torch.cat(store[name])
        if not aq.levels.signed and float(vals.min()) < 0:
            warnings.warn(
                f"calibrate: input of '{name}' has negative values (min {float(vals.min()):.3g}) but its "
                f"activation levels {aq.levels} are unsigned; negatives will map to 0",
                stacklevel=2,
            )
        aq.init_from(vals.to(aq.values))
        aq.set_mode(modes[name])
        if _sync(model, sync_ranks):
            broadcast_state(aq)
    logger.info("calibrated %d input quantizers on %d samples", len(layers), seen)
    return model


def quantize(
    model: nn.Module,
    *,
    weight_levels: LevelsLike | None = "ternary",
    act_levels: LevelsLike | None = None,
    skip: Iterable[str] = (),
    keep_first_last: bool = True,
    calibration: Iterable[Any] | None = None,
    calibration_samples: int = 1000,
    method: str = "qn",
    weight_init: str = "paper",
    act_init: str = "paper",
    learn_thresholds: bool = False,
    weight_grad_temperature: float | None = None,
    layer_map: dict[type[nn.Module], type[nn.Module]] | None = None,
    inplace: bool = False,
    per_channel: bool = False,
) -> nn.Module:
    """Convert every ``nn.Conv2d`` / ``nn.Linear`` of ``model`` into its quantized twin (Sec. 3).

    The paper keeps the first convolution and the last fully connected layer in full precision
    (``keep_first_last=True``; "first" and "last" follow module registration order, as the official code).
    Weights use layer-wise quantizers initialised from the pretrained weights; with ``act_levels`` each
    converted layer also quantizes its input (the preceding ReLU output), calibrated on ``calibration``.

    Args:
        model: the (pretrained) float model.
        weight_levels: level set of the weights (``"binary"``, ``"ternary"``, ``"pm4"``...), or ``None``.
        act_levels: level set of the activations (``"uint1"``, ``"uint2"``...), or ``None`` for float.
        skip: layer names or ``fnmatch`` patterns kept in full precision.
        keep_first_last: keep the first and the last convertible layer in full precision.
        calibration: batches used by :func:`calibrate` (needed for correct, DDP-safe activation init;
            without it input quantizers initialise lazily on the first batch they see).
        calibration_samples: number of calibration samples (paper: 1000).
        method: ``"qn"`` (this paper), ``"ste"`` (DoReFa-style STE baseline with the same levels) or
            ``"lsq"`` (:class:`~qnet.LSQQuantizer`, learned step size, Esser et al. 2020).
        weight_init: threshold initialisation of weight quantizers (``"paper"``, ``"kmeans"``, ``"midpoint"``).
        act_init: threshold initialisation of input quantizers.
        learn_thresholds: also train the thresholds (paper's Eq. 11; its experiments freeze them).
        weight_grad_temperature: ``None`` (exact gradient) or the surrogate-gradient temperature of the weight
            quantizers (the official code trains binary weights with ``1.0``; see :class:`~qnet.Quantizer`).
        layer_map: float class to quantized class (default :data:`DEFAULT_LAYER_MAP`).
        inplace: convert ``model`` itself instead of a deep copy.
        per_channel: weight quantizers get one ``alpha``, ``beta`` per output channel (dim 0 of the weight)
            sharing one threshold set (not in the paper, which is layer-wise; method ``"qn"`` only).

    Returns:
        The converted model.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``skip`` holds a non-string, ``keep_first_last`` is
            not a bool, or ``calibration`` is not an iterable of batches.
        ValueError: invalid levels or method, unsigned weight levels, nothing to quantize, or
            ``calibration`` batches whose shape does not match the model's first layer (checked on the first
            batch before the model is converted; a ``TypeError`` for non-floating batches such as uint8).

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(2))
        >>> qnet_model = quantize(net, weight_levels="ternary", keep_first_last=False, skip=["4"])
        >>> [type(m).__name__ for m in qnet_model]
        ['QConv2d', 'ReLU', 'QConv2d', 'Flatten', 'LazyLinear']
    """
    fn = "quantize"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: 'model' must be an nn.Module; got {type(model).__name__}")
    if method not in ("qn", "ste", "lsq"):
        raise ValueError(f"{fn}: 'method' must be 'qn', 'ste' or 'lsq'; got {method!r}")
    if weight_levels is None and act_levels is None:
        raise ValueError(f"{fn}: 'weight_levels' and 'act_levels' are both None; nothing to quantize")
    wl = Levels.parse(weight_levels) if weight_levels is not None else None
    al = Levels.parse(act_levels) if act_levels is not None else None
    if wl is not None and not wl.signed:
        raise ValueError(f"{fn}: 'weight_levels' must be a signed set; got {wl}")
    for name, val in (("weight_init", weight_init), ("act_init", act_init)):
        if val not in ("paper", "kmeans", "midpoint"):
            raise ValueError(f"{fn}: '{name}' must be 'paper', 'kmeans' or 'midpoint'; got {val!r}")
    if weight_grad_temperature is not None and method != "qn":
        raise ValueError(
            f"{fn}: 'weight_grad_temperature' applies to method 'qn' only; got method {method!r}"
        )
    if isinstance(skip, str):
        skip = [skip]
    if not hasattr(skip, "__iter__") or not all(isinstance(p, str) for p in skip):
        raise TypeError(f"{fn}: 'skip' must be a layer name/pattern or an iterable of them; got {skip!r}")
    patterns = list(skip)
    if not isinstance(keep_first_last, bool):
        raise TypeError(f"{fn}: 'keep_first_last' must be a bool; got {type(keep_first_last).__name__}")
    if calibration is not None:
        check_iterable(calibration, "calibration", fn=fn)
        if act_levels is not None and iter(calibration) is not calibration:
            # a re-iterable (DataLoader, list): check its first batch before converting anything
            for batch in calibration:
                _check_calibration_input(model, _batch_input(batch), fn=fn, name="calibration")
                break
    lmap = DEFAULT_LAYER_MAP if layer_map is None else layer_map
    target = model if inplace else copy.deepcopy(model)
    cands = [(n, m) for n, m in target.named_modules() if type(m) in lmap]
    if not cands:
        raise ValueError(f"{fn}: 'model' has no layer of the types {[t.__name__ for t in lmap]}")
    keep = {cands[0][0], cands[-1][0]} if keep_first_last else set()
    qkw: dict[str, Any] = {}
    akw: dict[str, Any] = {}
    if not isinstance(per_channel, bool):
        raise TypeError(f"{fn}: 'per_channel' must be a bool; got {type(per_channel).__name__}")
    if per_channel and (method != "qn" or weight_grad_temperature is not None):
        raise ValueError(
            f"{fn}: 'per_channel' needs method 'qn' without weight_grad_temperature; got method {method!r}"
        )
    if method == "qn":
        qkw = {"init": weight_init, "learn_thresholds": learn_thresholds}
        if per_channel:
            qkw["per_channel"] = True
        if weight_grad_temperature is not None:
            qkw["grad_temperature"] = weight_grad_temperature
        akw = {"init": act_init, "learn_thresholds": learn_thresholds}
    converted = []
    for name, mod in cands:
        if name in keep or any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        qcls: Any = lmap[type(mod)]
        new = qcls.from_float(
            mod,
            weight_levels=wl,
            act_levels=al,
            method=method,
            quantizer_kwargs=qkw or None,
            act_quantizer_kwargs=akw or None,
        )
        parent_name, _, child = name.rpartition(".")
        parent = target.get_submodule(parent_name) if parent_name else target
        setattr(parent, child, new)
        converted.append(name)
    if not converted:
        raise ValueError(f"{fn}: every candidate layer was skipped; nothing to quantize")
    logger.info("quantize: converted %d layers (%s, W=%s, A=%s)", len(converted), method, wl, al)
    if al is not None:
        if calibration is not None:
            calibrate(target, calibration, num_samples=calibration_samples, _fn=fn, _name="calibration")
        else:
            warnings.warn(
                "quantize: act_levels given without calibration data; input quantizers will initialise "
                "from the first batch they see (not identical across DDP ranks)",
                stacklevel=2,
            )
    return target


class TemperatureSchedule:
    """Linear temperature schedule ``T = start + increment * t`` (Sec. 3.4 / Alg. 1 of the paper).

    The paper sets ``T = c * epoch`` with epochs counted from 1, i.e. ``T = c`` during the first epoch
    (``start`` defaults to ``increment``). With ``steps_per_epoch`` the temperature grows every step
    (``t = step / steps_per_epoch``), otherwise every :meth:`step` call is one epoch.

    Args:
        target: a model (its quantizers of ``kind`` are driven) or a list of quantizers.
        increment: ``c > 0``, the growth per epoch (paper: 5 for ResNets, 10 for AlexNet).
        start: temperature at ``t = 0`` (default ``increment``).
        cap: optional upper bound (the official code caps weight T at 2000).
        steps_per_epoch: grow per step instead of per epoch.
        kind: ``"weight"``, ``"input"`` or ``"all"`` when ``target`` is a model.

    Raises:
        TypeError: ``target`` is neither a model nor an iterable of quantizers.
        ValueError: non-positive ``increment``/``start``/``cap``/``steps_per_epoch``, or no quantizer found.

    Examples:
        >>> q = Quantizer("ternary")
        >>> sched = TemperatureSchedule([q], increment=5.0)
        >>> sched.step(); sched.value
        10.0
    """

    def __init__(
        self,
        target: nn.Module | Iterable[_QuantizerBase],
        increment: float,
        *,
        start: float | None = None,
        cap: float | None = None,
        steps_per_epoch: int | None = None,
        kind: str = "all",
    ) -> None:
        fn = "TemperatureSchedule"
        for nm, v in (("increment", increment), ("start", start), ("cap", cap)):
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{fn}: '{nm}' must be finite and > 0; got {v!r}")
        if steps_per_epoch is not None and not (isinstance(steps_per_epoch, int) and steps_per_epoch > 0):
            raise ValueError(f"{fn}: 'steps_per_epoch' must be a positive int; got {steps_per_epoch!r}")
        if isinstance(target, nn.Module):
            self.quantizers: list[_QuantizerBase] = list(quantizers(target, kind))
        else:
            if isinstance(target, (str, Tensor)) or not hasattr(target, "__iter__"):
                raise TypeError(
                    f"{fn}: 'target' must be a model or an iterable of quantizers; got {type(target).__name__}"
                )
            self.quantizers = list(target)
            bad = [type(q).__name__ for q in self.quantizers if not isinstance(q, _QuantizerBase)]
            if bad:
                raise TypeError(f"{fn}: 'target' must hold Quantizer/STEQuantizer modules; got {bad[:3]}")
        if not self.quantizers:
            raise ValueError(f"{fn}: 'target' holds no quantizer of kind {kind!r}; call qnet.quantize first")
        self.increment = float(increment)
        self.start = float(increment if start is None else start)
        self.cap = None if cap is None else float(cap)
        self.steps_per_epoch = steps_per_epoch
        self.t = 0
        self._apply()

    @property
    def value(self) -> float:
        """The current temperature."""
        frac = self.t / self.steps_per_epoch if self.steps_per_epoch else float(self.t)
        v = self.start + self.increment * frac
        return min(v, self.cap) if self.cap is not None else v

    def _apply(self) -> None:
        v = self.value
        for q in self.quantizers:
            q.set_temperature(v)

    def step(self) -> None:
        """Advance one epoch (or one step with ``steps_per_epoch``) and set every quantizer's ``T``."""
        self.t += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        """The schedule's counter and settings (plain types).

        Returns:
            A JSON-able dict.
        """
        return {
            "t": self.t,
            "increment": self.increment,
            "start": self.start,
            "cap": self.cap,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output and re-apply the temperature.

        Args:
            state: a dict from :meth:`state_dict`.
        """
        self.t = int(state["t"])
        self.increment = float(state["increment"])
        self.start = float(state["start"])
        self.cap = None if state.get("cap") is None else float(state["cap"])
        self.steps_per_epoch = state.get("steps_per_epoch")
        self._apply()


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, loader: Iterable[Any], *, num_batches: int = 50, sync_ranks: bool | None = None
) -> nn.Module:
    """Re-estimate BatchNorm running statistics with the model as it runs at inference (hard quantizers).

    Closes the train/test gap of W+A models, whose soft-quantized activations in training have different
    statistics from the hard ones used at test time (issue #8 of the official repository).

    Args:
        model: a converted (or frozen) model.
        loader: batches as for :func:`calibrate`.
        num_batches: number of batches (cumulative average of the statistics).
        sync_ranks: under ``torch.distributed``, average the statistics over the ranks (every rank must
            call this, each on its own shard); ``None``: only when ``model`` is ``DistributedDataParallel``
            (a plain model re-estimated on rank 0 alone, e.g. before export, needs no other rank).

    Returns:
        ``model`` in eval mode, updated in place.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``loader`` is not an iterable of batches.
    """
    check_module(model, "model", fn="recalibrate_bn")
    check_iterable(loader, "loader", fn="recalibrate_bn")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    model.eval()
    saved = []
    for bn in bns:
        bn.reset_running_stats()
        saved.append(bn.momentum)
        bn.momentum = None
        bn.train()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        for i, batch in enumerate(loader):
            if i >= num_batches:
                break
            _unwrap(model)(_batch_input(batch).to(device))  # not through DDP (it would broadcast buffers)
    finally:
        for bn, mom in zip(bns, saved):
            bn.momentum = mom
        model.eval()
    if _sync(model, sync_ranks):
        average_bn_stats(model)
    return model


@torch.no_grad()
def freeze(
    model: nn.Module,
    *,
    bn_loader: Iterable[Any] | None = None,
    bn_batches: int = 50,
    sync_ranks: bool | None = None,
) -> nn.Module:
    """Replace soft quantization by hard steps for inference (Eq. 12), in place.

    Each quantized layer's latent weight is overwritten by its hard-quantized value ``alpha * Y_k``, the
    integer codes and scale are kept as buffers ``weight_codes``/``weight_scale`` (used by :func:`export`),
    the weight quantizer is removed and input quantizers are fixed to hard mode. Optionally BatchNorm
    statistics are then re-estimated with :func:`recalibrate_bn`.

    Args:
        model: a converted model.
        bn_loader: batches for BatchNorm re-estimation, or ``None``.
        bn_batches: number of batches for the re-estimation.
        sync_ranks: average the re-estimated statistics over the ``torch.distributed`` ranks (every rank
            must call this); see :func:`recalibrate_bn`.

    Returns:
        ``model`` in eval mode.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``bn_loader`` is not an iterable of batches.
        ValueError: ``model`` has no quantized layer.
    """
    check_module(model, "model", fn="freeze")
    if bn_loader is not None:
        check_iterable(bn_loader, "bn_loader", fn="freeze")
    layers = list(quantized_layers(model))
    if not layers:
        raise ValueError("freeze: 'model' has no QConv2d/QLinear layer; call qnet.quantize first")
    for _, layer in layers:
        _freeze_layer(layer)
    model.eval()
    if bn_loader is not None:
        recalibrate_bn(model, bn_loader, num_batches=bn_batches, sync_ranks=sync_ranks)
    return model


def _freeze_layer(layer: _QuantLayer) -> None:
    wq = layer.weight_quantizer
    if wq is not None:
        codes, scale = wq.export_codes(layer.weight.detach())
        values = wq.values
        _set_frozen(layer, codes, scale, values, wq.levels)
    if layer.input_quantizer is not None:
        layer.input_quantizer.set_mode("hard")


def _set_frozen(layer: _QuantLayer, codes: Tensor, scale: Tensor, values: Tensor, levels: Levels) -> None:
    mod: Any = layer
    w = mod.weight
    # a per-tensor scale is 0-dim; a per-channel scale has one entry per output channel (dim 0)
    sc = scale.reshape(()) if scale.numel() == 1 else scale.reshape(-1)
    bshape = (-1,) + (1,) * (w.dim() - 1) if sc.dim() else ()
    with torch.no_grad():
        w.copy_(values.to(w.dtype)[codes].reshape(w.shape) * sc.to(w.dtype).reshape(bshape))
    w.requires_grad_(False)
    if "weight_codes" in mod._buffers:
        mod.weight_codes = codes.to(torch.uint8)
        mod.weight_scale = sc.to(w.dtype).clone()
    else:
        mod.register_buffer("weight_codes", codes.to(torch.uint8))
        mod.register_buffer("weight_scale", sc.to(w.dtype).clone())
    mod.frozen_levels = levels
    mod.weight_quantizer = None


def set_phase(model: nn.Module, phase: int) -> nn.Module:
    """Configure the paper's three-phase W+A fine-tuning (Sec. 3.4), in place.

    * ``phase=1``: weights only; input (activation) quantizers off and their parameters frozen (they get
      no gradient, which DDP would wait for), everything else trainable.
    * ``phase=2``: activations only; weight quantizers fixed to hard steps, network weights and weight
      quantizers frozen (``requires_grad=False``), input quantizers on (calibrate them first, e.g. with
      :func:`calibrate` and ``quantized_weights=True``).
    * ``phase=3``: both released: every quantizer in ``"auto"`` mode, everything trainable.

    Parameters frozen in phases 1 and 2 are re-enabled in phase 3; BatchNorm parameters stay trainable
    throughout. Build the optimizer after each call (or keep one: frozen parameters simply receive no
    gradient); under DDP, call this on the plain model and wrap it again (DDP fixes the set of trainable
    parameters when it wraps).

    Args:
        model: a converted model.
        phase: 1, 2 or 3.

    Returns:
        ``model``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``phase`` is not 1, 2 or 3, or the model has no quantized layer.
    """
    check_module(model, "model", fn="set_phase")
    if phase not in (1, 2, 3):
        raise ValueError(f"set_phase: 'phase' must be 1, 2 or 3; got {phase!r}")
    layers = list(quantized_layers(model))
    if not layers:
        raise ValueError("set_phase: 'model' has no QConv2d/QLinear layer; call qnet.quantize first")
    for _, layer in layers:
        wq, aq = layer.weight_quantizer, layer.input_quantizer
        if wq is not None:
            wq.set_mode("hard" if phase == 2 else "auto")
            for p in wq.parameters():
                p.requires_grad_(phase != 2 and _learnable(wq, p))
        if aq is not None:
            aq.set_mode("off" if phase == 1 else "auto")
            for p in aq.parameters():
                p.requires_grad_(phase != 1 and _learnable(aq, p))
        for name in ("weight", "bias"):
            lp = getattr(layer, name, None)
            if isinstance(lp, nn.Parameter) and not hasattr(layer, "weight_codes"):
                lp.requires_grad_(phase != 2)
    return model


def _learnable(q: nn.Module, p: nn.Parameter) -> bool:
    if isinstance(q, Quantizer):
        if p is q.thresholds:
            return q.learn_thresholds
        if p is q.alpha:
            return q.learn_alpha
        if p is q.beta:
            return q.learn_beta
    return True
