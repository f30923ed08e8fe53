"""Training recipes for the attribute generator (cGAN) and the upsampler, with checkpoint/resume,
callbacks, optional tqdm and DDP.

DDP: when ``torch.distributed`` is initialised the networks are wrapped in
``DistributedDataParallel``, each rank draws different batches (seeded by rank), and only rank 0 writes
checkpoints and shows progress.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .._checks import check_floating, check_int, check_positive, check_tensor
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import AttributeMapDataset
from ..functional import feature_matching_loss, lsgan_loss, masked_l1
from ..models.attribute import AttributeGenerator, PatchDiscriminator, Upsampler

logger = logging.getLogger(__name__)

__all__ = ["train_attribute_model", "train_upsampler"]


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _wrap(net: nn.Module, device: torch.device) -> nn.Module:
    if dist.is_available() and dist.is_initialized():
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(net, device_ids=ids)
    return net


def _progress(progress: bool | None, total: int, desc: str) -> Any:
    show = (sys.stderr.isatty() if progress is None else progress) and _rank() == 0
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _check_common(
    fn: str,
    *,
    steps: Any,
    batch_size: Any,
    lrs: dict[str, float],
    weights: dict[str, float],
    seed: Any,
    checkpoint_path: Any,
    resume: bool,
) -> None:
    """Checks shared by the recipes, run before any work."""
    check_int(steps, "steps", fn=fn)
    check_int(batch_size, "batch_size", fn=fn)
    check_int(seed, "seed", fn=fn, minimum=0)
    for name, value in lrs.items():
        check_positive(value, name, fn=fn)
    for name, value in weights.items():
        check_positive(value, name, fn=fn, strict=False)
    if resume and checkpoint_path is None:
        raise ValueError(f"{fn}: 'resume=True' needs a 'checkpoint_path' to resume from; got None")


def _batch(
    ds: AttributeMapDataset, size: int, gen: torch.Generator, device: torch.device
) -> dict[str, torch.Tensor]:
    idx = torch.randint(0, len(ds), (size,), generator=gen)
    return {
        "geometry": ds.geometry[idx].to(device),
        "attributes": ds.attribute_maps[idx].to(device),
        "mask": ds.mask.to(device),
    }


def train_attribute_model(
    generator: AttributeGenerator,
    discriminator: PatchDiscriminator,
    dataset: AttributeMapDataset,
    *,
    steps: int = 1000,
    batch_size: int = 8,
    lr_g: float = 2e-4,
    lr_d: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    fm_weight: float = 10.0,
    l1_weight: float = 10.0,
    device: torch.device | str | None = None,
    seed: int = 0,
    checkpoint_path: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool | None = None,
) -> list[dict[str, float]]:
    """Train the geometry-conditioned attribute generator against a multi-scale PatchGAN.

    Losses (pix2pixHD-style, reconstructed): D minimises LSGAN on (geometry, real maps) vs (geometry, fake
    maps); G minimises LSGAN + ``fm_weight`` * feature matching + ``l1_weight`` * masked L1 to the paired
    real maps. For an unconditional generator the discriminator sees maps only (so it must have
    ``in_channels == 5``); for a conditional one ``in_channels == 11``.

    Args:
        generator: the :class:`~morphface.AttributeGenerator`.
        discriminator: the :class:`~morphface.PatchDiscriminator`.
        dataset: an :class:`~morphface.data.AttributeMapDataset` at the generator's resolution.
        steps: total optimisation steps (a resumed run continues up to this number).
        batch_size: per-rank batch size.
        lr_g: generator learning rate (Adam).
        lr_d: discriminator learning rate (Adam).
        betas: Adam betas.
        fm_weight: feature-matching weight.
        l1_weight: masked L1 weight.
        device: training device (default: the generator's).
        seed: seed of batch sampling, latents and noise (offset by the rank).
        checkpoint_path: where to save (rank 0); also the resume source.
        checkpoint_every: save every N steps (0: only at the end).
        resume: continue from ``checkpoint_path`` if it exists.
        callback: called as ``callback(step, logs)`` after every step.
        progress: tqdm bar (``None``: only on a TTY).

    Returns:
        Per-step logs ``{"step", "loss_d", "loss_g", "l1"}`` of this run.

    Raises:
        TypeError: a network or dataset of the wrong class, a non-integer ``steps`` / ``batch_size``.
        ValueError: mismatched resolution or discriminator channels, ``steps`` or ``batch_size`` < 1,
            a learning rate <= 0, a negative loss weight, ``resume`` without ``checkpoint_path``.
    """
    fn = "train_attribute_model"
    if not isinstance(generator, AttributeGenerator):
        raise TypeError(f"{fn}: 'generator' must be an AttributeGenerator; got {type(generator).__name__}")
    if not isinstance(discriminator, PatchDiscriminator):
        raise TypeError(
            f"{fn}: 'discriminator' must be a PatchDiscriminator; got {type(discriminator).__name__}"
        )
    if not isinstance(dataset, AttributeMapDataset):
        raise TypeError(f"{fn}: 'dataset' must be an AttributeMapDataset; got {type(dataset).__name__}")
    _check_common(
        fn,
        steps=steps,
        batch_size=batch_size,
        lrs={"lr_g": lr_g, "lr_d": lr_d},
        weights={"fm_weight": fm_weight, "l1_weight": l1_weight},
        seed=seed,
        checkpoint_path=checkpoint_path,
        resume=resume,
    )
    check_int(checkpoint_every, "checkpoint_every", fn=fn, minimum=0)
    if dataset.resolution != generator.resolution:
        raise ValueError(
            f"{fn}: dataset resolution {dataset.resolution} != generator resolution {generator.resolution}"
        )
    want = generator.out_channels + (generator.geometry_channels if generator.conditional else 0)
    if discriminator.in_channels != want:
        raise ValueError(
            f"{fn}: 'discriminator' must take {want} channels for this generator; got {discriminator.in_channels}"
        )
    dev = torch.device(device) if device is not None else next(generator.parameters()).device
    generator.to(dev).train()
    discriminator.to(dev).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    start = 0
    if resume and checkpoint_path is not None and os.path.isfile(checkpoint_path):
        ck = load_checkpoint(checkpoint_path)
        generator.load_state_dict(ck["state_dict"]["generator"])
        discriminator.load_state_dict(ck["state_dict"]["discriminator"])
        opt_g.load_state_dict(ck["optimizer"]["generator"])
        opt_d.load_state_dict(ck["optimizer"]["discriminator"])
        start = int(ck["step"])
        logger.info("resumed %s from step %d", fn, start)
    g_net, d_net = _wrap(generator, dev), _wrap(discriminator, dev)
    gen = torch.Generator().manual_seed(seed * 1000 + _rank() + start)
    bar = _progress(progress, steps - start, "attribute GAN")
    logs: list[dict[str, float]] = []

    def save(step: int) -> None:
        if checkpoint_path is not None and _rank() == 0:
            save_checkpoint(
                checkpoint_path,
                {"generator": generator, "discriminator": discriminator},
                optimizers={"generator": opt_g, "discriminator": opt_d},
                step=step,
                metrics=logs[-1] if logs else None,
            )

    for step in range(start, steps):
        b = _batch(dataset, batch_size, gen, dev)
        geo, real, mask = b["geometry"], b["attributes"], b["mask"]
        z = torch.randn(batch_size, generator.latent_dim, generator=gen).to(dev)
        noise = torch.randn(batch_size, 1, generator.resolution, generator.resolution, generator=gen).to(dev)
        fake = g_net(geo, z, noise) * mask

        def d_in(maps: torch.Tensor, geo: torch.Tensor = geo) -> torch.Tensor:
            return torch.cat([geo, maps], 1) if generator.conditional else maps

        opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (lsgan_loss(d_net(d_in(real)), True) + lsgan_loss(d_net(d_in(fake.detach())), False))
        loss_d.backward()
        opt_d.step()

        opt_g.zero_grad(set_to_none=True)
        feats_fake = d_net(d_in(fake))
        with torch.no_grad():
            feats_real = d_net(d_in(real))
        l1 = masked_l1(fake, real, mask)
        loss_g = (
            lsgan_loss(feats_fake, True)
            + fm_weight * feature_matching_loss(feats_fake, feats_real)
            + l1_weight * l1
        )
        loss_g.backward()
        opt_g.step()
        rec = {
            "step": float(step + 1),
            "loss_d": float(loss_d.detach()),
            "loss_g": float(loss_g.detach()),
            "l1": float(l1.detach()),
        }
        logs.append(rec)
        logger.debug("step %d %s", step + 1, rec)
        if callback is not None:
            callback(step + 1, rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(l1=f"{rec['l1']:.3f}")
        if checkpoint_every and (step + 1) % checkpoint_every == 0:
            save(step + 1)
    if bar is not None:
        bar.close()
    save(steps)
    generator.eval()
    return logs


def train_upsampler(
    upsampler: Upsampler,
    high_maps: torch.Tensor,
    *,
    geometry: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    discriminator: PatchDiscriminator | None = None,
    adv_weight: float = 0.01,
    steps: int = 500,
    batch_size: int = 8,
    lr: float = 2e-4,
    device: torch.device | str | None = None,
    seed: int = 0,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool | None = None,
) -> list[dict[str, float]]:
    """Train the upsampler on (area-downsampled, original) pairs of high-resolution maps.

    Loss: masked L1, plus ``adv_weight`` x LSGAN against ``discriminator`` when one is given (the paper's
    GAN-based upscaling; the discriminator sees the high-resolution maps only, so it must take C channels).

    Args:
        upsampler: the :class:`~morphface.Upsampler`.
        high_maps: (N, C, H, W) high-resolution attribute maps.
        geometry: (N, G, H, W) high-resolution geometry maps, required when the upsampler takes them.
        mask: optional (1, H, W) (or (H, W)) coverage.
        discriminator: optional :class:`~morphface.PatchDiscriminator` over C channels (adversarial term).
        adv_weight: weight of the adversarial term.
        steps: total optimisation steps.
        batch_size: per-rank batch size.
        lr: Adam learning rate.
        device: training device.
        seed: batch sampling seed.
        checkpoint_path: optional checkpoint file (rank 0 writes it at the end).
        resume: continue from ``checkpoint_path`` when it exists.
        callback: ``callback(step, logs)``.
        progress: tqdm bar (``None``: only on a TTY).

    Returns:
        Per-step logs ``{"step", "l1", "l1_bilinear"}`` (plus ``"loss_d"``, ``"loss_adv"`` with a discriminator).

    Raises:
        TypeError: a network of the wrong class, non-tensor or non-float maps, non-integer ``steps``.
        ValueError: bad map shapes or a discriminator with the wrong number of channels, ``steps`` or
            ``batch_size`` < 1, ``lr`` <= 0, ``adv_weight`` < 0, ``resume`` without ``checkpoint_path``.
    """
    fn = "train_upsampler"
    if not isinstance(upsampler, Upsampler):
        raise TypeError(f"{fn}: 'upsampler' must be an Upsampler; got {type(upsampler).__name__}")
    if discriminator is not None and not isinstance(discriminator, PatchDiscriminator):
        raise TypeError(
            f"{fn}: 'discriminator' must be a PatchDiscriminator or None; got {type(discriminator).__name__}"
        )
    check_tensor(high_maps, "high_maps", fn=fn)
    check_floating(high_maps, "high_maps", fn=fn)
    if geometry is not None:
        check_tensor(geometry, "geometry", fn=fn)
        check_floating(geometry, "geometry", fn=fn)
    if mask is not None:
        check_tensor(mask, "mask", fn=fn)
    _check_common(
        fn,
        steps=steps,
        batch_size=batch_size,
        lrs={"lr": lr},
        weights={"adv_weight": adv_weight},
        seed=seed,
        checkpoint_path=checkpoint_path,
        resume=resume,
    )
    if discriminator is not None and discriminator.in_channels != upsampler.channels:
        raise ValueError(
            f"{fn}: 'discriminator' must take {upsampler.channels} channels; got {discriminator.in_channels}"
        )
    if high_maps.ndim != 4 or high_maps.shape[1] != upsampler.channels:
        raise ValueError(
            f"{fn}: 'high_maps' must have shape (N, {upsampler.channels}, H, W); got {tuple(high_maps.shape)}"
        )
    s = upsampler.scale
    if high_maps.shape[-1] % s or high_maps.shape[-2] % s:
        raise ValueError(f"{fn}: map size {tuple(high_maps.shape[-2:])} must be divisible by scale {s}")
    n, _, h, w = high_maps.shape
    if upsampler.geometry_channels:
        g = upsampler.geometry_channels
        if geometry is None or tuple(geometry.shape) != (n, g, h, w):
            got = None if geometry is None else tuple(geometry.shape)
            raise ValueError(
                f"{fn}: 'geometry' must have shape ({n}, {g}, {h}, {w}) for this upsampler; got {got}"
            )
    if mask is not None and tuple(mask.shape) not in ((1, h, w), (h, w)):
        raise ValueError(f"{fn}: 'mask' must have shape (1, {h}, {w}) or ({h}, {w}); got {tuple(mask.shape)}")
    dev = torch.device(device) if device is not None else next(upsampler.parameters()).device
    upsampler.to(dev).train()
    opt = torch.optim.Adam(upsampler.parameters(), lr=lr, betas=(0.9, 0.99))
    opt_d = None
    if discriminator is not None:
        discriminator.to(dev).train()
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    start = 0
    if resume and checkpoint_path is not None and os.path.isfile(checkpoint_path):
        ck = load_checkpoint(checkpoint_path)
        upsampler.load_state_dict(ck["state_dict"]["upsampler"])
        opt.load_state_dict(ck["optimizer"]["upsampler"])
        if discriminator is not None and opt_d is not None and "discriminator" in ck["state_dict"]:
            discriminator.load_state_dict(ck["state_dict"]["discriminator"])
            opt_d.load_state_dict(ck["optimizer"]["discriminator"])
        start = int(ck["step"])
    net = _wrap(upsampler, dev)
    d_net = _wrap(discriminator, dev) if discriminator is not None else None
    m = (mask if mask is not None else torch.ones(1, *high_maps.shape[-2:])).to(dev)
    gen = torch.Generator().manual_seed(seed * 1000 + _rank() + start)
    bar = _progress(progress, steps - start, "upsampler")
    logs: list[dict[str, float]] = []
    for step in range(start, steps):
        idx = torch.randint(0, high_maps.shape[0], (batch_size,), generator=gen)
        hi = high_maps[idx].to(dev)
        lo = F.avg_pool2d(hi, s)
        geo = geometry[idx].to(dev) if geometry is not None else None
        pred = net(lo, geo)
        extra: dict[str, float] = {}
        if d_net is not None and opt_d is not None:
            opt_d.zero_grad(set_to_none=True)
            loss_d = 0.5 * (lsgan_loss(d_net(hi * m), True) + lsgan_loss(d_net(pred.detach() * m), False))
            loss_d.backward()
            opt_d.step()
            extra["loss_d"] = float(loss_d.detach())
        loss = masked_l1(pred, hi, m)
        total = loss
        if d_net is not None:
            adv = lsgan_loss(d_net(pred * m), True)
            total = loss + adv_weight * adv
            extra["loss_adv"] = float(adv.detach())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        with torch.no_grad():
            base = masked_l1(
                F.interpolate(lo, scale_factor=float(s), mode="bilinear", align_corners=False), hi, m
            )
        rec = {"step": float(step + 1), "l1": float(loss.detach()), "l1_bilinear": float(base), **extra}
        logs.append(rec)
        if callback is not None:
            callback(step + 1, rec)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if checkpoint_path is not None and _rank() == 0:
        nets: dict[str, nn.Module] = {"upsampler": upsampler}
        opts: dict[str, torch.optim.Optimizer] = {"upsampler": opt}
        if discriminator is not None and opt_d is not None:
            nets["discriminator"], opts["discriminator"] = discriminator, opt_d
        save_checkpoint(
            checkpoint_path,
            nets,
            optimizers=opts,
            step=steps,
            metrics=logs[-1] if logs else None,
        )
    upsampler.eval()
    return logs
