"""Training and evaluation recipes (own loops): identity encoder and the completion GAN.

Both recipes: seeded, device-agnostic, ``torch.distributed``-aware (DDP + ``DistributedSampler`` when a
process group is initialised; floating buffers such as BatchNorm statistics are averaged over the ranks
after every step; only rank 0 logs, shows progress and writes checkpoints), atomic checkpoints
every ``checkpoint_every`` steps and at the end, ``resume=True`` continues from ``checkpoint``, an optional
``callback(step, metrics)`` per step, and a tqdm bar only when ``progress`` is True (``None``: only on a TTY).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ._checks import check_int
from .checkpoint import load_checkpoint, save_checkpoint
from .functional import (
    _GAN_KINDS,
    composite,
    discriminator_loss,
    generator_adversarial_loss,
    identity_loss,
    masked_l1_loss,
    masked_psnr,
    masked_ssim,
    occlude,
)
from .models import (
    CompletionGenerator,
    CosFaceHead,
    IdentityEncoder,
    LocalDiscriminator,
    PatchDiscriminator,
    PoseDiscriminator,
)
from .models.networks import _NOISE_MODES
from .pose import pose_map

logger = logging.getLogger(__name__)

__all__ = [
    "CompletionConfig",
    "CompletionResult",
    "build_completion_models",
    "config_from_dict",
    "evaluate_completion",
    "gen_config_for",
    "train_completion",
    "train_identity_encoder",
]

Callback = Callable[[int, dict[str, float]], None]


def _dist() -> tuple[bool, int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return True, torch.distributed.get_rank(), torch.distributed.get_world_size()
    return False, 0, 1


def _progress(enabled: bool | None, total: int, desc: str, rank: int) -> Any:
    show = (sys.stderr.isatty() if enabled is None else enabled) and rank == 0
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _batches(
    dataset: Dataset, batch_size: int, seed: int, start_epoch: int, drop_last: bool = True
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    distributed, rank, world = _dist()
    epoch = start_epoch
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        if distributed:
            sampler: Any = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
            loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
        else:
            g = torch.Generator().manual_seed(seed + epoch)
            loader = DataLoader(
                dataset, batch_size=batch_size, shuffle=True, generator=g, drop_last=drop_last
            )
        for batch in loader:
            yield epoch, batch
        epoch += 1


def _wrap(model: nn.Module) -> nn.Module:
    distributed, _, _ = _dist()
    if distributed and any(p.requires_grad for p in model.parameters()):
        dev = next(model.parameters()).device
        ids = [dev.index] if dev.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


@torch.no_grad()
def _average_buffers(*modules: nn.Module) -> None:
    """Average floating buffers (BatchNorm running statistics) over the ranks of a process group.

    DDP keeps parameters identical but each rank updates its BatchNorm running statistics from its own
    batch (``SyncBatchNorm`` needs a GPU), so after every step they are averaged; ranks then hold
    bit-identical models and rank 0's checkpoint carries statistics of the whole global batch.
    """
    distributed, _, world = _dist()
    if not distributed or world == 1:
        return
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for module in modules:
        for buf in module.buffers():
            if buf.is_floating_point():
                groups.setdefault((buf.device, buf.dtype), []).append(buf)
    for bufs in groups.values():  # one all-reduce per device and dtype, not one per buffer
        flat = torch.cat([b.reshape(-1) for b in bufs])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        flat.div_(world)
        offset = 0
        for b in bufs:
            b.copy_(flat[offset : offset + b.numel()].view_as(b))
            offset += b.numel()


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def _check_steps(steps: int, batch_size: int, fn: str) -> None:
    check_int(steps, "steps", fn=fn)
    check_int(batch_size, "batch_size", fn=fn)


def _check_dataset(dataset: Any, batch_size: int, fn: str) -> None:
    """Reject a dataset that cannot fill one full batch per process (``drop_last`` would loop forever)."""
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(f"{fn}: 'dataset' must be a sized map-style Dataset; got {type(dataset).__name__}")
    _, _, world = _dist()
    n = len(dataset)
    per_rank = math.ceil(n / world) if world > 1 else n
    if per_rank < batch_size:
        raise ValueError(
            f"{fn}: 'dataset' must hold at least batch_size={batch_size} samples per process; got {n} "
            f"samples for {world} process(es) ({per_rank} per process)"
        )


# --------------------------------------------------------------------------------------------- identity encoder
def train_identity_encoder(
    dataset: Dataset,
    *,
    num_classes: int,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    embedding_dim: int = 128,
    base_channels: int = 32,
    input_size: int = 64,
    device: torch.device | str = "cpu",
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    callback: Callback | None = None,
    progress: bool | None = None,
) -> IdentityEncoder:
    """Train :class:`~occfill.models.IdentityEncoder` with a CosFace identity-classification objective.

    Each batch uses the samples' ``"image"`` and ``"reference"`` (both labelled with ``"label"``), with
    random horizontal flips. AdamW with a cosine learning-rate decay.

    Args:
        dataset: yields dicts with ``"image"``/``"reference"`` ``(3, H, W)`` and ``"label"``
            (e.g. :class:`occfill.data.PairedFaces`).
        num_classes: number of identities.
        steps: optimisation steps.
        batch_size: samples per step and process.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        embedding_dim: encoder embedding size.
        base_channels: encoder width.
        input_size: encoder input resolution.
        device: training device.
        seed: seed of the initialisation and data order.
        checkpoint: where to write the checkpoint (arch ``occfill_identity_encoder``).
        checkpoint_every: also write every this many steps (0: only at the end).
        resume: continue from ``checkpoint`` if it exists.
        callback: called as ``callback(step, {"loss": ..., "acc": ...})`` after every step.
        progress: show a tqdm bar (``None``: only when stderr is a TTY).

    Returns:
        The trained encoder in eval mode.

    Raises:
        TypeError: non-integer ``steps``/``batch_size``/``num_classes``, ``dataset`` not a sized dataset.
        ValueError: non-positive ``steps``/``batch_size``/``num_classes``, or fewer than ``batch_size``
            samples per process.
    """
    fn = "train_identity_encoder"
    _check_steps(steps, batch_size, fn)
    check_int(num_classes, "num_classes", fn=fn)
    _check_dataset(dataset, batch_size, fn)
    _, rank, _ = _dist()
    torch.manual_seed(seed)
    config: dict[str, Any] = {
        "embedding_dim": embedding_dim,
        "base_channels": base_channels,
        "input_size": input_size,
    }
    encoder = IdentityEncoder(**config).to(device)
    head = CosFaceHead(embedding_dim, num_classes).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    start = 0
    if resume and checkpoint is not None and os.path.isfile(checkpoint):
        ck = load_checkpoint(checkpoint)
        encoder.load_state_dict(ck["state_dict"])
        head.load_state_dict(ck["modules"]["head"])
        opt.load_state_dict(ck["optimizer"]["encoder"])
        start = int(ck.get("step", 0))
        logger.info("%s: resumed from %s at step %d", fn, checkpoint, start)

    def _lr_factor(s: int) -> float:  # cosine decay over `steps`, offset by the resumed step
        return 0.5 * (1 + math.cos(math.pi * min((s + start) / steps, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor)
    enc_w, head_w = _wrap(encoder), _wrap(head)
    encoder.train()
    bar = _progress(progress, steps - start, fn, rank)
    gen = torch.Generator().manual_seed(seed + 17 + start)
    data = _batches(dataset, batch_size, seed, start_epoch=start)
    step = start
    while step < steps:
        _, batch = next(data)
        x = torch.cat([batch["image"], batch["reference"]]).to(device)
        y = torch.cat([batch["label"], batch["label"]]).to(device)
        flip = torch.rand(x.shape[0], generator=gen) < 0.5
        x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(-1), x)
        logits = head_w(enc_w(x), y)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        _average_buffers(encoder, head)
        step += 1
        metrics = {"loss": float(loss.detach()), "acc": float((logits.argmax(1) == y).float().mean())}
        logger.debug("%s step %d %s", fn, step, metrics)
        if callback is not None:
            callback(step, metrics)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if checkpoint is not None and (step == steps or (checkpoint_every and step % checkpoint_every == 0)):
            save_checkpoint(
                checkpoint,
                encoder,
                arch="occfill_identity_encoder",
                config=config,
                modules={"head": head},
                optimizer={"encoder": opt.state_dict()},
                step=step,
                metrics=metrics,
                rng=_rng_state(),
            )
    if bar is not None:
        bar.close()
    return encoder.eval()


# --------------------------------------------------------------------------------------------- completion GAN
@dataclass
class CompletionConfig:
    """Configuration of the completion model and its training (every weight is our choice).

    Attributes:
        base_channels: generator width.
        depth: generator levels.
        use_reference: join the reference S (False: plain inpainting baseline).
        use_pose: join the pose map L and train the pose discriminator (False: the "no pose" ablation).
        pose_discriminator: train the pose discriminator (needs ``use_pose``).
        global_discriminator: train the global discriminator.
        local_discriminator: train a local ocular-crop discriminator (not in the figure).
        mask_channel: join the mask to the generator input (not in the figure).
        noise: ``"input"`` or ``"none"``.
        pose_mismatch: also show the pose D real images with a shuffled pose map as negatives (extension).
        d_base_channels: discriminator width.
        d_layers: discriminator depth.
        gan: ``"hinge"``, ``"lsgan"`` or ``"bce"``.
        rec_weight: weight of the masked L1 (not drawn in the figure).
        hole_weight: L1 weight inside the hole (relative to 1 outside).
        identity_weight: weight of the identity loss (0: the "no identity loss" ablation).
        global_weight: weight of the global adversarial loss.
        pose_weight: weight of the pose adversarial loss.
        local_weight: weight of the local adversarial loss.
        lr: Adam learning rate (G and D).
        betas: Adam betas.

    Raises:
        TypeError: a non-integer width or depth.
        ValueError: a non-positive width or depth, unknown ``gan``/``noise``, a negative weight, a
            non-positive ``lr`` or ``betas`` outside [0, 1).
    """

    base_channels: int = 32
    depth: int = 4
    use_reference: bool = True
    use_pose: bool = True
    pose_discriminator: bool = True
    global_discriminator: bool = True
    local_discriminator: bool = False
    mask_channel: bool = False
    noise: str = "input"
    pose_mismatch: bool = False
    d_base_channels: int = 32
    d_layers: int = 3
    gan: str = "hinge"
    rec_weight: float = 1.0
    hole_weight: float = 5.0
    identity_weight: float = 0.1
    global_weight: float = 0.01
    pose_weight: float = 0.01
    local_weight: float = 0.01
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        fn = "CompletionConfig"
        for name in ("base_channels", "depth", "d_base_channels", "d_layers"):
            check_int(getattr(self, name), name, fn=fn)
        if self.gan not in _GAN_KINDS:
            raise ValueError(f"{fn}: 'gan' must be one of {_GAN_KINDS}; got {self.gan!r}")
        if self.noise not in _NOISE_MODES:
            raise ValueError(f"{fn}: 'noise' must be one of {_NOISE_MODES}; got {self.noise!r}")
        for name in (
            "rec_weight",
            "hole_weight",
            "identity_weight",
            "global_weight",
            "pose_weight",
            "local_weight",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{fn}: '{name}' must be a number >= 0; got {value!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"{fn}: 'lr' must be > 0; got {self.lr!r}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(f"{fn}: 'betas' must be two numbers in [0, 1); got {self.betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))

    def generator_kwargs(self) -> dict[str, Any]:
        """Builder kwargs of the generator (JSON-able)."""
        return {
            "use_reference": self.use_reference,
            "pose_channels": 3 if self.use_pose else 0,
            "mask_channel": self.mask_channel,
            "noise": self.noise,
            "base_channels": self.base_channels,
            "depth": self.depth,
        }


@dataclass
class CompletionResult:
    """What :func:`train_completion` returns: the models (eval mode) and the per-step history."""

    generator: CompletionGenerator
    discriminators: dict[str, nn.Module]
    history: list[dict[str, float]] = field(default_factory=list)


def build_completion_models(
    config: CompletionConfig, *, device: torch.device | str = "cpu"
) -> tuple[CompletionGenerator, dict[str, nn.Module]]:
    """Generator and the discriminators enabled by ``config``.

    Args:
        config: the configuration.
        device: where to create them.

    Returns:
        ``(generator, {"global": ..., "pose": ..., "local": ...})`` (only enabled discriminators).
    """
    gen = CompletionGenerator(**config.generator_kwargs()).to(device)
    kw: dict[str, Any] = {"base_channels": config.d_base_channels, "n_layers": config.d_layers}
    ds: dict[str, nn.Module] = {}
    if config.global_discriminator:
        ds["global"] = PatchDiscriminator(3, **kw).to(device)
    if config.use_pose and config.pose_discriminator:
        ds["pose"] = PoseDiscriminator(3, **kw).to(device)
    if config.local_discriminator:
        ds["local"] = LocalDiscriminator(crop_size=32, **kw).to(device)
    return gen, ds


def _arch(config: CompletionConfig) -> str:
    return "occfill_generator" if config.use_reference else "occfill_inpainting_baseline"


def train_completion(
    dataset: Dataset,
    *,
    config: CompletionConfig | None = None,
    encoder: nn.Module | None = None,
    steps: int = 1000,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    callback: Callback | None = None,
    progress: bool | None = None,
) -> CompletionResult:
    """Train the completion GAN of the paper's figure (plus our reconstruction term).

    Per step: ``M = occlude(y, mask)``, ``L = pose_map(angles)``, ``raw = G(M, S, L, z)`` and
    ``out = composite(raw, y, mask)``; one discriminator step on ``(y | out)`` (global), ``(y (+) L | out (+) L)``
    (pose) and the ocular crops (local, optional); then one generator step on
    ``rec_weight * L1_masked(raw, y) + identity_weight * (1 - cos(E(out), E(S))) + sum_k w_k * adv_k(out)``.

    Args:
        dataset: yields :class:`occfill.data.PairedFaces` samples.
        config: model and loss configuration (default :class:`CompletionConfig`).
        encoder: frozen identity network for the identity loss (any module giving ``(B, D)``); required when
            ``config.identity_weight > 0``.
        steps: optimisation steps.
        batch_size: samples per step and process.
        device: training device.
        seed: seed of initialisation, noise and data order.
        checkpoint: checkpoint path (generator as the main model, discriminators under ``"modules"``).
        checkpoint_every: also write every this many steps (0: only at the end).
        resume: continue from ``checkpoint`` if it exists.
        callback: ``callback(step, metrics)`` after every step.
        progress: tqdm bar (``None``: only on a TTY).

    Returns:
        A :class:`CompletionResult`.

    Raises:
        TypeError: ``config`` is not a :class:`CompletionConfig`, ``encoder`` is not a module, non-integer
            ``steps``/``batch_size``, ``dataset`` not a sized dataset.
        ValueError: non-positive ``steps``/``batch_size``, an identity weight without an encoder, or fewer
            than ``batch_size`` samples per process.
    """
    fn = "train_completion"
    if config is not None and not isinstance(config, CompletionConfig):
        raise TypeError(
            f"{fn}: 'config' must be a CompletionConfig (see config_from_dict for plain dicts); "
            f"got {type(config).__name__}"
        )
    cfg = config if config is not None else CompletionConfig()
    _check_steps(steps, batch_size, fn)
    if encoder is not None and not isinstance(encoder, nn.Module):
        raise TypeError(f"{fn}: 'encoder' must be an nn.Module or None; got {type(encoder).__name__}")
    if cfg.identity_weight > 0 and encoder is None:
        raise ValueError(f"{fn}: config.identity_weight={cfg.identity_weight} needs an 'encoder'; got None")
    _check_dataset(dataset, batch_size, fn)
    _, rank, _ = _dist()
    torch.manual_seed(seed)
    gen, ds = build_completion_models(cfg, device=device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = (
        torch.optim.Adam([p for d in ds.values() for p in d.parameters()], lr=cfg.lr, betas=cfg.betas)
        if ds
        else None
    )
    start = 0
    history: list[dict[str, float]] = []
    if resume and checkpoint is not None and os.path.isfile(checkpoint):
        ck = load_checkpoint(checkpoint)
        gen.load_state_dict(ck["state_dict"])
        for k, d in ds.items():
            d.load_state_dict(ck["modules"][k])
        opt_g.load_state_dict(ck["optimizer"]["generator"])
        if opt_d is not None:
            opt_d.load_state_dict(ck["optimizer"]["discriminators"])
        start = int(ck.get("step", 0))
        logger.info("%s: resumed from %s at step %d", fn, checkpoint, start)
    if encoder is not None:
        encoder = encoder.to(device).eval()
        for p in encoder.parameters():
            p.requires_grad_(False)
    gen_w = _wrap(gen)
    ds_w = {k: _wrap(d) for k, d in ds.items()}
    gen.train()
    for d in ds.values():
        d.train()
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1 + start)
    data = _batches(dataset, batch_size, seed, start_epoch=start)
    bar = _progress(progress, steps - start, fn, rank)
    step = start
    while step < steps:
        _, batch = next(data)
        y = batch["image"].to(device)
        s = batch["reference"].to(device)
        m = batch["mask"].to(device)
        b, _, h, w = y.shape
        pm = pose_map(batch["angles"].to(device=device, dtype=y.dtype), h, w) if cfg.use_pose else None
        occ = occlude(y, m)
        raw = gen_w(occ, s if cfg.use_reference else None, pm, mask=m, generator=noise_gen)
        out = composite(raw, y, m)
        metrics: dict[str, float] = {}
        # ---- discriminator step
        if opt_d is not None:
            d_loss = y.new_zeros(())
            fake = out.detach()
            if "global" in ds_w:
                logits = ds_w["global"](torch.cat([y, fake]))
                lg = discriminator_loss(logits[:b], logits[b:], kind=cfg.gan)
                d_loss = d_loss + lg
                metrics["d_global"] = float(lg.detach())
            if "pose" in ds_w:
                assert pm is not None
                imgs, maps = [y, fake], [pm, pm]
                if cfg.pose_mismatch and b > 1:
                    imgs.append(y)
                    maps.append(pm.roll(1, dims=0))
                logits = ds_w["pose"](torch.cat(imgs), torch.cat(maps))
                neg = logits[b:]
                lp = discriminator_loss(logits[:b], neg, kind=cfg.gan)
                d_loss = d_loss + lp
                metrics["d_pose"] = float(lp.detach())
            if "local" in ds_w:
                logits = ds_w["local"](torch.cat([y, fake]), torch.cat([m, m]))
                ll = discriminator_loss(logits[:b], logits[b:], kind=cfg.gan)
                d_loss = d_loss + ll
                metrics["d_local"] = float(ll.detach())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        # ---- generator step
        g_loss = cfg.rec_weight * masked_l1_loss(raw, y, m, hole_weight=cfg.hole_weight)
        metrics["rec"] = float(g_loss.detach())
        if encoder is not None and cfg.identity_weight > 0:
            with torch.no_grad():
                ref_emb = encoder(s)
            li = identity_loss(encoder(out), ref_emb)
            g_loss = g_loss + cfg.identity_weight * li
            metrics["identity"] = float(li.detach())
        if "global" in ds_w:
            ag = generator_adversarial_loss(ds_w["global"](out), kind=cfg.gan)
            g_loss = g_loss + cfg.global_weight * ag
            metrics["g_global"] = float(ag.detach())
        if "pose" in ds_w:
            assert pm is not None
            ap = generator_adversarial_loss(ds_w["pose"](out, pm), kind=cfg.gan)
            g_loss = g_loss + cfg.pose_weight * ap
            metrics["g_pose"] = float(ap.detach())
        if "local" in ds_w:
            al = generator_adversarial_loss(ds_w["local"](out, m), kind=cfg.gan)
            g_loss = g_loss + cfg.local_weight * al
            metrics["g_local"] = float(al.detach())
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        _average_buffers(gen, *ds.values())
        step += 1
        metrics["g_total"] = float(g_loss.detach())
        history.append(metrics)
        logger.debug("%s step %d %s", fn, step, metrics)
        if callback is not None:
            callback(step, metrics)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(rec=f"{metrics['rec']:.3f}")
        if checkpoint is not None and (step == steps or (checkpoint_every and step % checkpoint_every == 0)):
            optim: dict[str, Any] = {"generator": opt_g.state_dict()}
            if opt_d is not None:
                optim["discriminators"] = opt_d.state_dict()
            save_checkpoint(
                checkpoint,
                gen,
                arch=_arch(cfg),
                config=gen_config_for(cfg),
                modules=ds,
                optimizer=optim,
                step=step,
                metrics=metrics,
                rng=_rng_state(),
                resolution=(h, w),
            )
    if bar is not None:
        bar.close()
    gen.eval()
    for d in ds.values():
        d.eval()
    return CompletionResult(gen, ds, history)


def gen_config_for(config: CompletionConfig) -> dict[str, Any]:
    """Generator builder kwargs stored in checkpoints (``use_reference`` dropped for the baseline arch)."""
    kw = config.generator_kwargs()
    if not config.use_reference:
        kw.pop("use_reference")
    return kw


@torch.no_grad()
def evaluate_completion(
    generator: CompletionGenerator,
    dataset: Dataset,
    *,
    encoder: nn.Module | None = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    seed: int = 0,
    use_pose: bool | None = None,
) -> dict[str, float]:
    """Masked PSNR/SSIM and identity similarity of completions on ``dataset`` (fixed noise seed).

    Identity similarity is ``cos(E(out), E(y))`` with the ground truth y (the benchmark's metric).

    Args:
        generator: the generator.
        dataset: :class:`occfill.data.PairedFaces` samples (fixed references: ``set_epoch`` is not called).
        encoder: identity network for the similarity (skipped when None).
        batch_size: evaluation batch size.
        device: device.
        seed: noise seed.
        use_pose: feed a pose map (default: ``generator.pose_channels > 0``).

    Returns:
        ``{"psnr": ..., "ssim": ..., "id_sim": ...}`` means over the dataset (``id_sim`` only with an encoder).

    Raises:
        TypeError: ``generator`` is not a :class:`~occfill.models.CompletionGenerator`, ``encoder`` is not a
            module, a non-integer ``batch_size``.
        ValueError: a non-positive ``batch_size`` or an empty ``dataset``.
    """
    fn = "evaluate_completion"
    if not isinstance(generator, CompletionGenerator):
        raise TypeError(f"{fn}: 'generator' must be a CompletionGenerator; got {type(generator).__name__}")
    if encoder is not None and not isinstance(encoder, nn.Module):
        raise TypeError(f"{fn}: 'encoder' must be an nn.Module or None; got {type(encoder).__name__}")
    check_int(batch_size, "batch_size", fn=fn)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(f"{fn}: 'dataset' must not be empty; got 0 samples")
    generator = generator.to(device).eval()
    if encoder is not None:
        encoder = encoder.to(device).eval()
    pose = generator.pose_channels > 0 if use_pose is None else use_pose
    g = torch.Generator(device=device).manual_seed(seed)
    sums = {"psnr": 0.0, "ssim": 0.0, "id_sim": 0.0}
    n = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        y, s, m = batch["image"].to(device), batch["reference"].to(device), batch["mask"].to(device)
        h, w = y.shape[-2:]
        pm = pose_map(batch["angles"].to(device=device, dtype=y.dtype), h, w) if pose else None
        raw = generator(occlude(y, m), s if generator.use_reference else None, pm, mask=m, generator=g)
        out = composite(raw, y, m)
        sums["psnr"] += float(masked_psnr(out, y, m).sum())
        sums["ssim"] += float(masked_ssim(out, y, m).sum())
        if encoder is not None:
            sums["id_sim"] += float(F.cosine_similarity(encoder(out), encoder(y), dim=1).sum())
        n += y.shape[0]
    res = {k: v / n for k, v in sums.items()}
    if encoder is None:
        res.pop("id_sim")
    return res


def config_from_dict(values: dict[str, Any]) -> CompletionConfig:
    """Build a :class:`CompletionConfig` from a plain dict, rejecting unknown keys."""
    names = {f.name for f in dataclasses.fields(CompletionConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"config_from_dict: unknown CompletionConfig fields {unknown}; known: {sorted(names)}"
        )
    vals = dict(values)
    if "betas" in vals:
        vals["betas"] = tuple(vals["betas"])
    return CompletionConfig(**vals)
