"""morphface under 2-process DDP (gloo, CPU): every training recipe for one optimisation step.

Run as ``python tests-integration/ddp/ddp_morphface.py`` (the harness spawns the ranks). The usage is the
package's documented one: build the networks the same way on every rank, call the recipe inside the
initialised process group; the recipe wraps the networks in ``DistributedDataParallel`` itself, each rank
draws its own batches, and rank 0 writes the checkpoint. Data are tiny and generated in memory
(``toy_face_model`` + procedural attribute maps at 16 px), different on each rank.
"""

from __future__ import annotations

import pathlib

import torch
from _harness import digest, launch
from torch import nn

from morphface import AttributeGenerator, PatchDiscriminator, Upsampler
from morphface.data import AttributeMapDataset, toy_face_model
from morphface.recipes import train_attribute_model, train_upsampler


def scenario(rank: int, world_size: int, workdir: pathlib.Path) -> dict:
    """Run ``train_attribute_model`` and ``train_upsampler`` (L1 and adversarial) for one step each."""
    out: dict[str, dict] = {}
    # each rank generates its own identities and maps (seed = rank): the data differ between ranks
    data = AttributeMapDataset(toy_face_model(grid=9, n_identity=3), 16, 4, seed=rank)

    # 1. the geometry-conditioned attribute GAN (generator + multi-scale PatchGAN)
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    g = AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=4)
    d = PatchDiscriminator(11, base_channels=4, n_layers=2)
    both = nn.ModuleDict({"generator": g, "discriminator": d})
    before = digest(both)
    ckpt = workdir / "attribute_gan.pt"
    train_attribute_model(g, d, data, steps=1, batch_size=2, checkpoint_path=ckpt, progress=False)
    out["train_attribute_model"] = {"before": before, "after": digest(both), "checkpoint": str(ckpt)}

    # 2. the low-to-high resolution upsampler (16 -> 32 px would need 32 px maps; here 8 -> 16 px),
    # with the high-resolution geometry map as side input, masked L1 only
    torch.manual_seed(1)
    up = Upsampler(5, scale=2, hidden=4, n_blocks=1, geometry_channels=6)
    before = digest(up)
    ckpt = workdir / "upsampler.pt"
    train_upsampler(
        up,
        data.attribute_maps,
        geometry=data.geometry,
        mask=data.mask,
        steps=1,
        batch_size=2,
        checkpoint_path=ckpt,
        progress=False,
    )
    out["train_upsampler"] = {"before": before, "after": digest(up), "checkpoint": str(ckpt)}

    # 3. the same recipe with its optional adversarial term (a discriminator trained alongside)
    torch.manual_seed(2)
    up = Upsampler(5, scale=2, hidden=4, n_blocks=1)
    d_up = PatchDiscriminator(5, base_channels=4, n_layers=2)
    both = nn.ModuleDict({"upsampler": up, "discriminator": d_up})
    before = digest(both)
    ckpt = workdir / "upsampler_adversarial.pt"
    train_upsampler(
        up,
        data.attribute_maps,
        discriminator=d_up,
        steps=1,
        batch_size=2,
        checkpoint_path=ckpt,
        progress=False,
    )
    out["train_upsampler_adversarial"] = {"before": before, "after": digest(both), "checkpoint": str(ckpt)}
    return out


if __name__ == "__main__":
    launch(scenario)
