"""occfill under 2-process DDP (gloo, CPU): every training recipe and completion variant for one step.

The documented DDP usage of occfill: start one process per device (``torchrun``), initialise the process
group and call :func:`occfill.train_identity_encoder` / :func:`occfill.train_completion` as in a single
process. The recipes build their models from ``seed`` (identical on every rank), wrap every trained
module in ``DistributedDataParallel``, shard the data with a ``DistributedSampler``, average BatchNorm
running statistics over the ranks after each step, and let rank 0 alone write the checkpoint.

Each rank here holds its own seeded in-memory faces (different data per rank, as under DDP), 32 px. The
identity encoder runs once; the completion GAN runs once per code path: the paper's full model (reference,
pose map, global + pose discriminators, identity loss), the pose-mismatch negatives, the local
discriminator option, the "no pose map / pose D" ablation, the plain inpainting baseline, and a
reconstruction-only generator (no discriminator). "before" is the model the recipe starts from (the
recipes seed ``torch.manual_seed(seed)`` before building, so ``build_completion_models`` with the same
seed gives it); for the GAN the digest covers the generator AND its discriminators.

Run as ``python tests-integration/ddp/ddp_occfill.py`` (imports only torch, occfill and the harness).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import torch
import torch.distributed as dist
from _harness import digest, launch
from torch.utils.data import Dataset

import occfill
from occfill.recipes import build_completion_models

SIZE = 32
NUM_IDS = 3
TINY = {"base_channels": 4, "depth": 2, "d_base_channels": 4, "d_layers": 2}
VARIANTS: dict[str, dict[str, Any]] = {
    "train_completion[full]": {},
    "train_completion[pose_mismatch]": {"pose_mismatch": True},
    "train_completion[local_discriminator]": {"local_discriminator": True},
    "train_completion[no_pose]": {"use_pose": False},
    "train_completion[inpainting_baseline]": {"use_reference": False, "identity_weight": 0.0},
    "train_completion[no_discriminator]": {"global_discriminator": False, "pose_discriminator": False},
}


class TinyFaces(Dataset):  # type: ignore[type-arg]
    """Seeded in-memory samples in occfill's documented sample layout (see ``occfill.data``)."""

    def __init__(self, size: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(size) % NUM_IDS
        base = torch.rand(NUM_IDS, 3, 1, 1, generator=g)  # one colour per identity
        noise = torch.rand(size, 3, SIZE, SIZE, generator=g) * 0.3
        self.images = (base[self.labels] * 0.7 + noise).clamp(0, 1)
        self.references = (
            base[self.labels] * 0.7 + torch.rand(size, 3, SIZE, SIZE, generator=g) * 0.3
        ).clamp(0, 1)
        self.masks = occfill.masks.random_eye_masks(size, SIZE, SIZE, generator=g)
        self.angles = (torch.rand(size, 3, generator=g) - 0.5) * 0.6

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "image": self.images[i],
            "reference": self.references[i],
            "mask": self.masks[i],
            "angles": self.angles[i],
            "label": self.labels[i],
        }


def _same_on_all_ranks(module: torch.nn.Module, what: str, world_size: int) -> None:
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, digest(module))
    if any(g != gathered[0] for g in gathered):
        raise RuntimeError(f"{what}: differs between ranks: {gathered}")


def scenario(rank: int, world_size: int, workdir: pathlib.Path) -> dict[str, dict[str, Any]]:
    data = TinyFaces(8, seed=100 + rank)  # each rank holds different faces
    out: dict[str, dict[str, Any]] = {}

    # ---- identity encoder (CosFace); BatchNorm statistics must agree on every rank after the step
    enc_kw = {"embedding_dim": 8, "base_channels": 4, "input_size": SIZE}
    torch.manual_seed(0)
    before = digest(occfill.IdentityEncoder(**enc_kw))
    enc_ckpt = workdir / "identity_encoder.pt"
    encoder = occfill.train_identity_encoder(
        data,
        num_classes=NUM_IDS,
        steps=1,
        batch_size=2,
        seed=0,
        checkpoint=enc_ckpt,
        progress=False,
        **enc_kw,
    )
    dist.barrier()  # rank 0 has written the checkpoint before anyone reads it
    ck = occfill.load_checkpoint(enc_ckpt)
    if ck["step"] != 1:
        raise RuntimeError(f"train_identity_encoder: checkpoint at step {ck['step']}, expected 1")
    out["train_identity_encoder"] = {"before": before, "after": digest(encoder), "checkpoint": str(enc_ckpt)}

    # ---- completion GAN, one step per code path
    for name, overrides in VARIANTS.items():
        cfg = dataclasses.replace(occfill.CompletionConfig(**TINY), **overrides)
        torch.manual_seed(0)
        gen0, ds0 = build_completion_models(cfg)
        before = digest(torch.nn.ModuleDict({"generator": gen0, **ds0}))
        ckpt = workdir / f"{name.replace('[', '_').rstrip(']')}.pt"
        result = occfill.train_completion(
            data,
            config=cfg,
            encoder=encoder if cfg.identity_weight > 0 else None,
            steps=1,
            batch_size=2,
            seed=0,
            checkpoint=ckpt,
            progress=False,
        )
        if len(result.history) != 1 or set(result.discriminators) != set(ds0):
            raise RuntimeError(
                f"{name}: {len(result.history)} steps, discriminators {sorted(result.discriminators)}"
            )
        dist.barrier()
        ck = occfill.load_checkpoint(ckpt)
        if ck["step"] != 1 or set(ck.get("modules", {})) != set(ds0):
            raise RuntimeError(
                f"{name}: checkpoint step {ck['step']}, modules {sorted(ck.get('modules', {}))}"
            )
        # the checkpoint (rank 0's generator) reloads into the model every rank returned
        restored = occfill.create_model(ck["arch"], **ck["config"])
        restored.load_state_dict(ck["state_dict"])
        if digest(restored) != digest(result.generator):
            raise RuntimeError(f"{name}: rank {rank}'s generator differs from the checkpoint")
        after = torch.nn.ModuleDict({"generator": result.generator, **result.discriminators})
        _same_on_all_ranks(after, name, world_size)
        out[name] = {"before": before, "after": digest(after), "checkpoint": str(ckpt)}
    return out


if __name__ == "__main__":
    launch(scenario)
