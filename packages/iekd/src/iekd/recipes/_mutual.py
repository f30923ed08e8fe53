"""Deep mutual learning (DML) and IE-DML between two peer networks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as IF
from .._checks import check_choice, check_int, check_number
from ..hooks import FeatureTap, unwrap_model
from ..nn import FactorAutoencoder, InheritExploreLoss, inherit_channel_count
from ._common import _check_ie_args, _check_module, _feature_layer, _probe
from ._loop import (
    Callback,
    EpochRunner,
    OptimizerFactory,
    SchedulerFactory,
    TrainResult,
    accuracy,
    check_run_args,
    default_scheduler,
    logits_of,
    maybe_ddp,
    resolve_device,
    sgd,
    to_device,
)

logger = logging.getLogger(__name__)


class _MutualNet(nn.Module):
    """One DML network + (for IE-DML) its online factor auto-encoder and its IE loss head."""

    def __init__(self, net: nn.Module, layer: str, heads: nn.ModuleDict, hp: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.heads = heads
        self.layer = layer
        self.hp = hp
        self.tap = FeatureTap(net, layer)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, peer_logits: torch.Tensor, peer_factor: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        logits = logits_of(self.net(x), "mutual", "network")
        f = self.tap[self.layer]
        ce = F.cross_entropy(logits, y)
        kl = IF.dml_loss(logits, peer_logits, temperature=self.hp["temperature"])
        terms = {"ce": ce, "kl": kl}
        total = ce + self.hp["kl_weight"] * kl
        if "ae" in self.heads:
            out = self.heads["ae"](f.detach())
            terms["rec"] = IF.reconstruction_loss(out.reconstruction, f.detach(), p=self.hp["p"])
            total = total + terms["rec"]
        if peer_factor is not None:
            ie = self.heads["ie"](f, peer_factor)
            terms["inherit"], terms["explore"] = ie.inherit, ie.explore
            total = total + ie.total
        terms["total"] = total
        return terms

    @torch.no_grad()
    def peer_view(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This network's logits and the "teacher factor" it offers its peer (``None`` without IE)."""
        logits = logits_of(self.net(x), "mutual", "network")
        ae = self.heads["ae"] if "ae" in self.heads else None
        if isinstance(ae, FactorAutoencoder):
            return logits, ae.encode(self.tap[self.layer])
        if self.hp.get("ie_factor") == "feature":
            return logits, self.tap[self.layer]
        return logits, None


def mutual(
    net_a: nn.Module,
    net_b: nn.Module,
    loader: Iterable[Any],
    *,
    ie: bool = False,
    layer_a: str | None = None,
    layer_b: str | None = None,
    epochs: int = 200,
    kl_weight: float = 1.0,
    temperature: float = 1.0,
    factor_rate: float = 0.5,
    inherit_weight: float = 10.0,
    explore_weight: float = 10.0,
    split: float | int = 0.5,
    explore_encoder: Literal["frozen", "trainable"] = "trainable",
    ie_factor: Literal["online", "feature"] = "online",
    p: int = 1,
    optimizer: OptimizerFactory | None = None,
    scheduler: SchedulerFactory | None = None,
    eval_loader: Iterable[Any] | None = None,
    device: torch.device | str | None = None,
    callback: Callback | None = None,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Deep Mutual Learning of two networks, or its IE variant (IE-DML) with ``ie=True``.

    Per batch (as in the authors' ``processors/DML.py``): forward both, update A with
    ``CE + kl_weight * KL(p_B || p_A)``, then re-forward both and update B symmetrically.

    IE-DML (a reconstruction; the paper's wiring is not available): each network owns a factor auto-encoder
    trained online on its own detached feature (reconstruction loss added to its update) and an
    :class:`iekd.InheritExploreLoss` head; network A's loss adds ``IE(f_A, F_B)`` where ``F_B`` is B's current
    factor (detached), and symmetrically for B. Both networks thus inherit from and explore away from each other.
    ``ie_factor="feature"`` is the alternative reading: no auto-encoders, the peer's raw (detached) feature plays
    the teacher factor, and the IE encoders map each half to the peer's channel count.

    Args:
        net_a: first network (returns logits).
        net_b: second network (returns logits; same number of classes).
        loader: training batches ``(images, labels)``.
        ie: add the IE terms (IE-DML).
        layer_a: distilled submodule of ``net_a`` (default: its ``feature_layer``).
        layer_b: distilled submodule of ``net_b``.
        epochs: epochs (authors' DML configs: 200).
        kl_weight: mimicry weight (1, as in the authors' ResNet-56/20 DML config).
        temperature: softmax temperature of the mimicry term.
        factor_rate: factor rate of the online auto-encoders (IE-DML).
        inherit_weight: ``w_inh``.
        explore_weight: ``w_exp``.
        split: inheritance share of the channels.
        explore_encoder: ``"frozen"`` or ``"trainable"``.
        ie_factor: what each network offers its peer as the "teacher factor" in IE-DML: ``"online"`` (default,
            the code of an auto-encoder trained online on its own feature) or ``"feature"`` (its raw feature).
        p: distance / reconstruction power.
        optimizer: optimizer factory, one optimizer per network (default :func:`sgd` lr 0.1).
        scheduler: scheduler factory (default: x0.1 at 50% and 75% of ``epochs``).
        eval_loader: held-out batches; adds ``val_acc_a``/``val_acc_b`` each epoch.
        device: where to train (default: ``net_a``'s device).
        callback: called with each epoch's metrics dict.
        progress: tqdm bar (``None``: only on a TTY).
        checkpoint: path written atomically after every epoch.
        resume: continue from ``checkpoint`` if it exists.

    Returns:
        :class:`TrainResult` with ``model = net_a``, ``extras["peer"] = net_b`` and the IE heads.

    Raises:
        TypeError: a network is not an ``nn.Module``, ``ie`` is not a bool, ``loader`` is not iterable,
            ``optimizer``/``scheduler``/``callback`` is not callable, or a hyper-parameter has the wrong type.
        ValueError: ``net_a is net_b``, out-of-range hyper-parameters (negative weights or epochs,
            ``temperature <= 0``, ``p`` not 1 or 2, bad ``split``/``explore_encoder``/``ie_factor``),
            ``resume=True`` without ``checkpoint``, an empty ``loader``, networks whose logits
            differ in class count, or features that do not fit (spatial sizes, a ``split`` too large for a
            network's channels). All are raised before any training (shapes from one no-grad eval-mode probe of
            both networks on the first batch).
    """
    fn = "mutual"
    _check_module(net_a, "net_a", fn)
    _check_module(net_b, "net_b", fn)
    if net_a is net_b:
        raise ValueError(
            f"{fn}: 'net_a' and 'net_b' must be two different networks; got the same object twice"
        )
    if not isinstance(ie, bool):
        raise TypeError(f"{fn}: 'ie' must be a bool; got {type(ie).__name__}")
    check_int(epochs, "epochs", fn=fn, low=0)
    check_run_args(
        fn,
        loader=loader,
        optimizer=optimizer,
        scheduler=scheduler,
        callback=callback,
        progress=progress,
        checkpoint=checkpoint,
        resume=resume,
    )
    check_number(kl_weight, "kl_weight", fn=fn, low=0.0)
    check_number(temperature, "temperature", fn=fn, low=0.0, strict=True)
    _check_ie_args(fn, split, inherit_weight, explore_weight, explore_encoder, p, factor_rate)
    check_choice(ie_factor, "ie_factor", ("online", "feature"), fn=fn)
    dev = resolve_device(device, net_a)
    net_a = unwrap_model(net_a).to(dev)
    net_b = unwrap_model(net_b).to(dev)
    la = _feature_layer(net_a, layer_a, fn, "layer_a")
    lb = _feature_layer(net_b, layer_b, fn, "layer_b")
    hp = {"kl_weight": kl_weight, "temperature": temperature, "p": p, "ie_factor": ie_factor if ie else None}
    heads_a, heads_b = nn.ModuleDict(), nn.ModuleDict()
    # One no-grad probe of both networks on the first batch: every shape check runs before training.
    with FeatureTap(net_a, la) as ta, FeatureTap(net_b, lb) as tb:
        fa, za = _probe(net_a, ta, la, loader, dev, with_output=True, fn=fn)
        fb, zb = _probe(net_b, tb, lb, loader, dev, with_output=True, fn=fn)
    if za.dim() != 2 or zb.dim() != 2 or za.shape[1] != zb.shape[1]:
        raise ValueError(
            f"{fn}: 'net_a' and 'net_b' must output logits (B, K) with the same number of classes K; "
            f"got {tuple(za.shape)} and {tuple(zb.shape)}"
        )
    if ie:
        if fa.shape[2:] != fb.shape[2:]:
            raise ValueError(
                f"{fn}: IE-DML needs equal spatial sizes; layer {la!r} gives {tuple(fa.shape)}, "
                f"layer {lb!r} gives {tuple(fb.shape)}"
            )
        inherit_channel_count(split, int(fa.shape[1]), fn=f"{fn} (net_a)")
        inherit_channel_count(split, int(fb.shape[1]), fn=f"{fn} (net_b)")
        kw: dict[str, Any] = {"device": dev, "dtype": fa.dtype}
        if ie_factor == "online":
            ae_a = FactorAutoencoder(int(fa.shape[1]), factor_rate, **kw)
            ae_b = FactorAutoencoder(int(fb.shape[1]), factor_rate, **kw)
            heads_a["ae"], heads_b["ae"] = ae_a, ae_b
            ch_a, ch_b = ae_a.factor_channels, ae_b.factor_channels  # the factor each network offers
        else:
            ch_a, ch_b = int(fa.shape[1]), int(fb.shape[1])
        ie_kw: dict[str, Any] = {
            "split": split,
            "inherit_weight": inherit_weight,
            "explore_weight": explore_weight,
            "p": p,
            "explore_encoder": explore_encoder,
            **kw,
        }
        heads_a["ie"] = InheritExploreLoss(int(fa.shape[1]), ch_b, layer=la, **ie_kw)
        heads_b["ie"] = InheritExploreLoss(int(fb.shape[1]), ch_a, layer=lb, **ie_kw)
    a = _MutualNet(net_a, la, heads_a, hp)
    b = _MutualNet(net_b, lb, heads_b, hp)
    wa, wb = maybe_ddp(a, dev), maybe_ddp(b, dev)
    make_opt = optimizer or sgd(0.1)
    opt_a = make_opt(q for q in a.parameters() if q.requires_grad)
    opt_b = make_opt(q for q in b.parameters() if q.requires_grad)
    make_sch = scheduler or default_scheduler(epochs)
    runner = EpochRunner(
        name=fn,
        modules={"a": a, "b": b},
        optimizers={"a": opt_a, "b": opt_b},
        schedulers={"a": make_sch(opt_a), "b": make_sch(opt_b)},
        epochs=epochs,
        callback=callback,
        progress=progress,
        checkpoint=checkpoint,
        resume=resume,
        config={"ie": ie, "layer_a": la, "layer_b": lb, **hp},
    )

    def step(batch: Any) -> dict[str, float]:
        x, y = to_device(batch, dev)
        out: dict[str, float] = {}
        for wme, peer, opt, tag in ((wa, b, opt_a, "a"), (wb, a, opt_b, "b")):
            peer_logits, peer_factor = peer.peer_view(x)
            terms = wme(x, y, peer_logits, peer_factor if ie else None)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            out.update({f"{k}_{tag}": float(v.detach()) for k, v in terms.items()})
        return out

    def evaluate() -> dict[str, float]:
        assert eval_loader is not None
        return {
            "val_acc_a": accuracy(net_a, eval_loader, dev),
            "val_acc_b": accuracy(net_b, eval_loader, dev),
        }

    try:
        runner.run(loader, step, evaluate if eval_loader is not None else None)
    finally:
        a.tap.remove()
        b.tap.remove()
    extras: dict[str, nn.Module] = {"peer": net_b}
    for k, v in heads_a.items():
        extras[f"{k}_a"] = v
    for k, v in heads_b.items():
        extras[f"{k}_b"] = v
    return TrainResult(net_a, runner.history, extras)
