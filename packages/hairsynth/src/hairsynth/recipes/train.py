"""Training recipe for the two-stage hair synthesis network (own loop; DDP-aware; atomic checkpoints)."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .. import functional as HF
from ..checkpoint import load_checkpoint, save_checkpoint
from ..models import HairSynthesisNet, create_model
from ..nn import PatchDiscriminator, PerceptualLoss

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "evaluate", "train"]


@dataclass
class TrainConfig:
    """Training configuration (plain data; saved in checkpoints).

    Loss per stage (reconstruction of the paper's "adversarial and perceptual" losses):
    ``l1_weight * L1 inside the region + adv_weight * GAN + fm_weight * feature matching
    (+ perceptual_weight * VGG perceptual when perceptual_weights is given)``; stage 1 is weighted by
    ``stage1_weight``.

    Schedules (both reconstructions; the paper's schedule could not be read):

    - ``"joint"`` (default): both stages and both discriminators are trained together from step 0.
    - ``"staged"``: the usual schedule of two-stage generators of the period. Steps
      ``[0, s1)`` train the synthesis network G1 (and its discriminator) alone on the stage-1 losses;
      the refinement network is not run. Steps ``[s1, s1 + s2)`` freeze G1 and train the refinement
      network G2 (and its discriminator) on the stage-2 losses. The remaining steps fine-tune
      everything jointly, as ``"joint"`` does. ``(s1, s2) = stage_steps``, by default
      ``(steps // 3, steps // 3)``. The phase depends only on the global step, so a resumed run
      continues in the right phase. A frozen G1 stays in training mode (its dropout still acts as the
      generator's noise), so G2 learns on the same kind of C1 it sees in the joint phase.

    Args:
        arch: registry name of the model.
        model_kwargs: builder overrides.
        steps: total optimisation steps.
        batch_size: per-process batch size.
        lr: Adam learning rate (generator and discriminators).
        betas: Adam betas.
        l1_weight: reconstruction weight.
        adv_weight: adversarial weight (0 disables the discriminators).
        fm_weight: discriminator feature-matching weight.
        perceptual_weight: perceptual-loss weight (needs ``perceptual_weights`` or ``perceptual_extractor``).
        perceptual_weights: path to a torchvision VGG-19 state_dict supplied by the user.
        perceptual_extractor: ``"efficientnet_lite0"``: the ImageNet EfficientNet-Lite0 features of the
            ``hairsynth[perceptual]`` extra (see :class:`hairsynth.nn.PerceptualLoss`).
        perceptual_size: side the images are resized to (bilinear, antialiased) before the perceptual
            features (``None``: as they are); a smaller side makes the term cheaper on CPU.
        gan_mode: ``"lsgan"``, ``"hinge"`` or ``"vanilla"``.
        disc_base_channels: discriminator width.
        disc_layers: discriminator depth.
        stage1_weight: weight of the stage-1 losses.
        checkpoint_every: save every this many steps (and at the end).
        log_every: call the callback / log every this many steps.
        num_workers: DataLoader workers.
        seed: seed of the loop.
        schedule: ``"joint"`` or ``"staged"`` (see above).
        stage_steps: ``(s1, s2)``, the steps of the synthesis-only and refinement-only phases of the
            ``"staged"`` schedule (``None``: a third of ``steps`` each). Ignored by ``"joint"``.
    """

    arch: str = "hairsynth_small"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    l1_weight: float = 10.0
    adv_weight: float = 1.0
    fm_weight: float = 10.0
    perceptual_weight: float = 0.0
    perceptual_weights: str | None = None
    perceptual_extractor: str | None = None
    perceptual_size: int | None = None
    gan_mode: str = "lsgan"
    disc_base_channels: int = 32
    disc_layers: int = 3
    stage1_weight: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 25
    num_workers: int = 0
    seed: int = 0
    schedule: str = "joint"
    stage_steps: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TrainConfig: '{name}' must be an int >= 1; got {v!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"TrainConfig: 'num_workers' must be an int >= 0; got {self.num_workers!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig: 'lr' must be > 0; got {self.lr!r}")
        for name in ("l1_weight", "adv_weight", "fm_weight", "perceptual_weight", "stage1_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"TrainConfig: '{name}' must be >= 0; got {getattr(self, name)!r}")
        if self.gan_mode not in ("lsgan", "hinge", "vanilla"):
            raise ValueError(
                f"TrainConfig: 'gan_mode' must be 'lsgan', 'hinge' or 'vanilla'; got {self.gan_mode!r}"
            )
        if self.perceptual_extractor not in (None, "efficientnet_lite0"):
            raise ValueError(
                "TrainConfig: 'perceptual_extractor' must be None or 'efficientnet_lite0'; got "
                f"{self.perceptual_extractor!r}"
            )
        if self.perceptual_weights and self.perceptual_extractor:
            raise ValueError(
                "TrainConfig: give 'perceptual_weights' (VGG-19 file) or 'perceptual_extractor', not both"
            )
        if self.perceptual_weight > 0 and not (self.perceptual_weights or self.perceptual_extractor):
            raise ValueError(
                "TrainConfig: 'perceptual_weight' > 0 needs 'perceptual_weights' (a local VGG-19 file) or "
                "perceptual_extractor='efficientnet_lite0'"
            )
        if self.perceptual_size is not None and (
            not isinstance(self.perceptual_size, int) or self.perceptual_size < 16
        ):
            raise ValueError(
                f"TrainConfig: 'perceptual_size' must be None or an int >= 16; got {self.perceptual_size!r}"
            )
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"TrainConfig: 'schedule' must be 'joint' or 'staged'; got {self.schedule!r}")
        if self.stage_steps is not None:
            ss = tuple(self.stage_steps)
            if len(ss) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ss):
                raise ValueError(
                    "TrainConfig: 'stage_steps' must be None or two ints >= 0 (synthesis steps, "
                    f"refinement steps); got {self.stage_steps!r}"
                )
            self.stage_steps = (ss[0], ss[1])
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        if self.stage_steps is not None:
            d["stage_steps"] = list(self.stage_steps)
        return d

    def phase(self, step: int) -> str:
        """The training phase of the 0-based optimisation step ``step``.

        Args:
            step: global step index (0 is the first step).

        Returns:
            ``"joint"`` for the joint schedule; for ``"staged"``: ``"synthesis"``, ``"refinement"`` or
            ``"joint"``.

        Examples:
            >>> cfg = TrainConfig(steps=9, schedule="staged")
            >>> [cfg.phase(i) for i in (0, 2, 3, 5, 6, 8)]
            ['synthesis', 'synthesis', 'refinement', 'refinement', 'joint', 'joint']
        """
        if self.schedule == "joint":
            return "joint"
        s1, s2 = self.stage_steps if self.stage_steps is not None else (self.steps // 3, self.steps // 3)
        if step < s1:
            return "synthesis"
        if step < s1 + s2:
            return "refinement"
        return "joint"


_SCHEDULES = ("joint", "staged")
# which stages (0: synthesis G1 / its discriminator, 1: refinement G2 / its discriminator) each phase trains
_PHASE_STAGES = {"synthesis": (0,), "refinement": (1,), "joint": (0, 1)}


class _Discriminators(nn.Module):
    def __init__(self, n: int, cfg: TrainConfig) -> None:
        super().__init__()
        self.nets = nn.ModuleList(
            PatchDiscriminator(11, base_channels=cfg.disc_base_channels, num_layers=cfg.disc_layers)
            for _ in range(n)
        )

    def forward(self, xs: list[torch.Tensor], which: tuple[int, ...]) -> list[list[torch.Tensor]]:
        return [self.nets[i].forward_features(x) for i, x in zip(which, xs)]  # type: ignore[operator]


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _batches(loader: DataLoader, sampler: DistributedSampler | None) -> Iterator[dict[str, Any]]:
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train(
    config: TrainConfig,
    dataset: Dataset,
    *,
    model: HairSynthesisNet | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Train a :class:`~hairsynth.models.HairSynthesisNet` on a dataset of hair pairs.

    Works in one process or under ``torch.distributed`` (DDP, any backend; the caller initialises the
    process group, e.g. with ``torchrun``, and calls ``train`` on every rank as in one process): the model
    and discriminators are wrapped in ``DistributedDataParallel``, the data are sharded with a
    ``DistributedSampler``, only rank 0 writes checkpoints and shows progress, and every rank waits
    for the checkpoint to be written, so ``last.pt`` is readable by all ranks when ``train`` returns.
    Under the ``"staged"`` schedule the wrappers are rebuilt at each phase change (frozen parts
    are excluded from gradient synchronisation).

    Args:
        config: the :class:`TrainConfig`.
        dataset: a dataset of dicts with ``image``, ``mask``, ``stroke_color``, ``stroke_mask`` (e.g.
            :class:`hairsynth.data.HairPairDataset`).
        model: the network to train (e.g. ``create_model(..., weights=...)`` to fine-tune); ``None``
            builds ``create_model(config.arch, **config.model_kwargs)`` after
            ``torch.manual_seed(config.seed)`` (the same initial weights on every rank).
        out_dir: where ``last.pt`` is written (``None``: no checkpoints).
        resume: checkpoint written by ``train`` to resume from (model, discriminators, optimisers, step,
            CPU RNG). The data are reshuffled from ``seed + step`` on resume, so a resumed run is not
            bit-identical to an uninterrupted one.
        callback: called as ``callback(step, logs)`` every ``log_every`` steps.
        progress: tqdm bar; ``None`` shows it only on a TTY (rank 0 only).
        device: training device (default CUDA if available, else CPU).

    Returns:
        Dict with ``model`` (unwrapped, with the ``requires_grad`` flags it came with), ``history`` (list of
        per-log-step dicts) and ``step``.

    Raises:
        TypeError: ``config`` is not a :class:`TrainConfig` or ``model`` not a ``HairSynthesisNet``.
        ValueError: an empty dataset, the ``"staged"`` schedule for a model without refinement, or a
            ``resume`` checkpoint without optimiser (or, with a GAN loss, discriminator) state.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: 'config' must be a TrainConfig; got {type(config).__name__}")
    if model is not None and not isinstance(model, HairSynthesisNet):
        raise TypeError(f"train: 'model' must be a HairSynthesisNet or None; got {type(model).__name__}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("train: 'dataset' is empty")
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    rank, world = _rank(), _world()
    torch.manual_seed(config.seed)  # same initial weights on every rank
    if model is None:
        built = create_model(config.arch, **config.model_kwargs)
        if not isinstance(built, HairSynthesisNet):
            raise TypeError(f"train: arch {config.arch!r} does not build a HairSynthesisNet")
        model = built
    if config.schedule == "staged" and model.refinement is None:
        raise ValueError(
            "train: schedule='staged' needs a model with a refinement network; got use_refinement=False "
            "(use schedule='joint')"
        )
    model.to(dev).train()
    n_stages = 2 if model.refinement is not None else 1
    discs = (
        _Discriminators(n_stages, config).to(dev).train()
        if config.adv_weight > 0 or config.fm_weight > 0
        else None
    )
    if rank:
        torch.manual_seed(config.seed + rank)  # different dropout noise per rank
    opt_g = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    opt_d = (
        torch.optim.Adam(discs.parameters(), lr=config.lr, betas=config.betas) if discs is not None else None
    )
    perc = (
        PerceptualLoss(config.perceptual_extractor or config.perceptual_weights).to(dev)  # type: ignore[arg-type]
        if config.perceptual_weight > 0 and (config.perceptual_weights or config.perceptual_extractor)
        else None
    )

    def _psize(t: torch.Tensor) -> torch.Tensor:
        ps = config.perceptual_size
        if ps is None or t.shape[-1] == ps:
            return t
        return F.interpolate(t, size=(ps, ps), mode="bilinear", align_corners=False, antialias=True)

    step = 0
    if resume is not None:
        ck = load_checkpoint(resume)
        extra = ck.get("extra_state_dicts", {})
        need = ["optimizer"] if "optimizer" not in ck else []
        if discs is not None:
            need += [k for k in ("discriminators", "optimizer_d") if k not in extra]
        if need:
            raise ValueError(
                f"train: 'resume' checkpoint {os.fspath(resume)!r} lacks {need} (not written by train with "
                "this loss setup); to start from its weights, pass model=create_model(arch, weights=...) instead"
            )
        model.load_state_dict(ck["state_dict"])
        opt_g.load_state_dict(ck["optimizer"])
        if discs is not None and opt_d is not None:
            discs.load_state_dict(extra["discriminators"])
            opt_d.load_state_dict(extra["optimizer_d"])
        step = int(ck.get("step", 0))
        if "rng" in ck and rank == 0:
            torch.set_rng_state(ck["rng"])
        elif rank:
            torch.manual_seed(config.seed + rank + 7919 * step)
        logger.info("resumed from %s at step %d", resume, step)
    sampler: DistributedSampler[Any] | None = (
        DistributedSampler(dataset, num_replicas=world, rank=rank, seed=config.seed) if world > 1 else None
    )
    gen = torch.Generator().manual_seed(config.seed + step)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        drop_last=len(dataset) >= config.batch_size * world,  # type: ignore[arg-type]
        generator=gen if sampler is None else None,
    )
    show = (sys.stderr.isatty() if progress is None else progress) and rank == 0
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="hairsynth train", leave=False)
    history: list[dict[str, float]] = []
    batches = _batches(loader, sampler)
    cfg_dict = config.to_dict()
    g_nets = [model.synthesis] + ([model.refinement] if model.refinement is not None else [])
    # the user's own requires_grad flags: kept in every phase and restored at the end
    params = list(model.parameters()) + (list(discs.parameters()) if discs is not None else [])
    trainable = {id(p): p.requires_grad for p in params}

    def _save() -> None:
        if out_dir is not None and rank == 0:
            extra = {}
            if discs is not None and opt_d is not None:
                extra = {"discriminators": discs.state_dict(), "optimizer_d": opt_d.state_dict()}
            save_checkpoint(
                os.path.join(os.fspath(out_dir), "last.pt"),
                model,
                arch=str(getattr(model, "arch", config.arch)),
                config={**getattr(model, "config", {}), "train": cfg_dict},
                optimizer=opt_g,
                extra_state_dicts=extra,
                step=step,
                rng=True,
            )
        if out_dir is not None and world > 1:
            dist.barrier()  # every rank may read last.pt once this returns

    def _enter(phase: str) -> tuple[nn.Module, nn.Module | None, tuple[int, ...]]:
        """Freeze what the phase does not train; (re)wrap the trained parts for DDP."""
        stages = tuple(i for i in _PHASE_STAGES[phase] if i < n_stages)
        nets = list(enumerate(g_nets)) + (list(enumerate(discs.nets)) if discs is not None else [])
        for i, net in nets:
            for p in net.parameters():
                p.requires_grad_(i in stages and trainable[id(p)])
        logger.info("step %d: %s phase (stages %s)", step, phase, stages)
        if world == 1:
            return model, discs, stages
        ids = (
            [dev.index if dev.index is not None else torch.cuda.current_device()]
            if dev.type == "cuda"
            else None
        )
        g = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        d = nn.parallel.DistributedDataParallel(discs, device_ids=ids) if discs is not None else None
        return g, d, stages

    phase = ""
    g_run: nn.Module = model
    d_run: nn.Module | None = discs
    stages: tuple[int, ...] = ()
    try:
        while step < config.steps:
            if config.phase(step) != phase:
                phase = config.phase(step)
                g_run, d_run, stages = _enter(phase)
            batch = next(batches)
            img, mask = batch["image"].to(dev), batch["mask"].to(dev)
            sc, sm = batch["stroke_color"].to(dev), batch["stroke_mask"].to(dev)
            out = g_run(img, mask, sc, sm, refine=1 in stages)
            cond = HF.synthesis_input(img, mask, sc, sm)
            all_preds = [out["composite1"]] + ([out["output"]] if 1 in stages else [None])
            all_regions = [mask] + ([(out["blend_mask"] > 0).to(img.dtype)] if 1 in stages else [None])
            all_weights = [config.stage1_weight if len(stages) == 2 else 1.0, 1.0]
            preds = [all_preds[i] for i in stages]
            regions = [all_regions[i] for i in stages]
            weights = [all_weights[i] for i in stages]
            logs: dict[str, float] = {}
            loss_g = img.new_zeros(())
            l1_terms = [HF.masked_l1(p, img, r) for p, r in zip(preds, regions)]
            for w, t in zip(weights, l1_terms):
                loss_g = loss_g + w * config.l1_weight * t
            logs["l1"] = float(l1_terms[-1].detach())
            if perc is not None:
                perc_loss = img.new_zeros(())
                for w, p in zip(weights, preds):
                    perc_loss = perc_loss + w * perc(_psize(p), _psize(img))
                loss_g = loss_g + config.perceptual_weight * perc_loss
                logs["perceptual"] = float(perc_loss.detach())
            if d_run is not None and opt_d is not None:
                fake_feats = d_run([torch.cat([cond, p], 1) for p in preds], stages)
                with torch.no_grad():
                    real_feats = d_run([torch.cat([cond, img], 1) for _ in preds], stages)
                adv = img.new_zeros(())
                fm = img.new_zeros(())
                for w, ff, rf in zip(weights, fake_feats, real_feats):
                    adv = adv + w * HF.gan_loss(ff[-1], True, mode=config.gan_mode, for_discriminator=False)
                    fm = fm + w * HF.feature_matching_loss(ff[:-1], rf[:-1])
                loss_g = loss_g + config.adv_weight * adv + config.fm_weight * fm
                logs["g_adv"], logs["fm"] = float(adv.detach()), float(fm.detach())
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            logs["loss_g"] = float(loss_g.detach())
            if d_run is not None and opt_d is not None:
                opt_d.zero_grad(set_to_none=True)
                xs = [
                    torch.cat([torch.cat([cond, img], 1), torch.cat([cond, p.detach()], 1)], 0) for p in preds
                ]
                feats = d_run(xs, stages)
                b = img.shape[0]
                loss_d = img.new_zeros(())
                for f in feats:
                    logits = f[-1]
                    loss_d = loss_d + 0.5 * (
                        HF.gan_loss(logits[:b], True, mode=config.gan_mode)
                        + HF.gan_loss(logits[b:], False, mode=config.gan_mode)
                    )
                loss_d.backward()
                opt_d.step()
                logs["loss_d"] = float(loss_d.detach())
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(l1=f"{logs['l1']:.4f}", phase=phase)
            if step % config.log_every == 0 or step == config.steps:
                logs["step"] = float(step)
                history.append(logs)
                logger.debug("step %d (%s): %s", step, phase, logs)
                if callback is not None:
                    callback(step, logs)
            if step % config.checkpoint_every == 0 or step == config.steps:
                _save()
    finally:
        for p in params:
            p.requires_grad_(trainable[id(p)])
        if bar is not None:
            bar.close()
    logger.info("training finished at step %d", step)
    return {"model": model, "history": history, "step": step}


@torch.no_grad()
def evaluate(
    model: HairSynthesisNet,
    dataset: Dataset,
    *,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Masked-region metrics of a model on a dataset (mean over images).

    Args:
        model: the network.
        dataset: samples as for :func:`train`.
        batch_size: evaluation batch size.
        device: evaluation device; must be the model's (default: the model's).

    Returns:
        ``l1`` (masked L1), ``psnr`` (masked, dB) and ``ssim`` (masked) of the final output against the
        original image, over the edit region (the blend mask's support).

    Raises:
        TypeError: ``model`` is not a ``HairSynthesisNet``.
        ValueError: an empty dataset, ``batch_size < 1`` or a ``device`` other than the model's.
    """
    fn = "evaluate"
    if not isinstance(model, HairSynthesisNet):
        raise TypeError(f"{fn}: 'model' must be a HairSynthesisNet; got {type(model).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{fn}: 'batch_size' must be an int >= 1; got {batch_size!r}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(f"{fn}: 'dataset' is empty")
    own = next(model.parameters()).device
    dev = torch.device(device) if device is not None else own
    if dev.type != own.type or (dev.index is not None and dev.index != own.index):
        raise ValueError(f"{fn}: 'device' is {dev} but the model is on {own}; move the model first")
    was = model.training
    model.eval()
    sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
    n = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        img, mask = batch["image"].to(dev), batch["mask"].to(dev)
        out = model(img, mask, batch["stroke_color"].to(dev), batch["stroke_mask"].to(dev))
        region = (out["blend_mask"] > 0).to(img.dtype)
        for i in range(img.shape[0]):
            o, t, r = out["output"][i : i + 1], img[i : i + 1], region[i : i + 1]
            sums["l1"] += float(HF.masked_l1(o, t, r))
            sums["psnr"] += float(HF.psnr(o, t, r)[0])
            sums["ssim"] += float(HF.ssim(o, t, r)[0])
            n += 1
    model.train(was)
    return {k: v / max(n, 1) for k, v in sums.items()}
