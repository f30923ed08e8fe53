"""rbfnet under 2-process DDP (gloo, CPU): ``rbfnet.train`` for one step with every classifier family.

The documented DDP usage of rbfnet: start one process per device (``torchrun``), initialise the process
group, build the model and call :func:`rbfnet.train` as in a single process. The recipe wraps the model
in ``DistributedDataParallel``, shards the data with a ``DistributedSampler``, keeps BatchNorm running
statistics identical on every rank, and lets rank 0 alone write checkpoints. :func:`rbfnet.evaluate`
shards a dataset over the ranks and all-reduces the confusion matrix, so every rank returns the same
accuracy. Each rank here gets its own seeded random clouds (different data per rank, as under DDP); the
models start from the same seeded weights, as in a seeded user script. Recipes checked: ``train`` with
RBFNet (point-wise default, per-kernel pooling, multi-scale, normals), PointNet and PointNet++ SSG, and
with a model the user wrapped in ``DistributedDataParallel`` first.

Run as ``python tests-integration/ddp/ddp_rbfnet.py`` (imports only torch, rbfnet and the harness).
"""

from __future__ import annotations

import pathlib
from typing import Any

import torch
import torch.distributed as dist
from _harness import digest, launch
from torch.utils.data import Dataset

import rbfnet

NUM_CLASSES = 3
NUM_POINTS = 48
# Tiny versions of every classifier family (same builders as the full models, smaller widths).
SMALL = {"mlp": (8, 16), "head": (16,)}
MODELS: dict[str, dict[str, Any]] = {
    "rbfnet_single": {"num_kernels": 16, **SMALL},
    "rbfnet_kernelwise": {"num_kernels": 16, "head": (16,)},  # per-kernel pooling option
    "rbfnet_multiscale": {"num_kernels": 8, **SMALL},
    "rbfnet_normals": {"num_kernels": 16, **SMALL},
    "pointnet": dict(SMALL),
    "pointnet2_ssg": {
        "sa1": (16, 0.4, 8),
        "sa2": (8, 0.8, 8),
        "mlps": ((8, 16), (16, 32), (32,)),
        "head": (16,),
    },
}


class RandomClouds(Dataset):  # type: ignore[type-arg]
    """Seeded random unit-ball clouds whose class shifts them along x (learnable, different per seed)."""

    def __init__(self, size: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, NUM_CLASSES, (size,), generator=g)
        pts = torch.nn.functional.normalize(torch.randn(size, NUM_POINTS, 3, generator=g), dim=-1)
        pts = pts * torch.rand(size, NUM_POINTS, 1, generator=g) * 0.5
        pts[..., 0] += (self.labels.float()[:, None] - 1.0) * 0.4
        self.points = pts
        self.normals = torch.nn.functional.normalize(torch.randn(size, NUM_POINTS, 3, generator=g), dim=-1)

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"points": self.points[i], "normals": self.normals[i], "label": int(self.labels[i])}


def scenario(rank: int, world_size: int, workdir: pathlib.Path) -> dict[str, dict[str, Any]]:
    train_set = RandomClouds(16, seed=100 + rank)  # each rank holds different data
    test_set = RandomClouds(13, seed=7)  # 13: not a multiple of the world size
    out: dict[str, dict[str, Any]] = {}
    runs = [(name, name, False) for name in MODELS] + [
        ("rbfnet_single-wrapped-by-user", "rbfnet_single", True)
    ]
    for label, name, wrap in runs:
        torch.manual_seed(len(name))  # same initial weights on every rank, as a seeded user script has
        model = rbfnet.create_model(name, num_classes=NUM_CLASSES, **MODELS[name])
        ckpt_dir = workdir / label
        before = digest(model)
        # The recipe wraps the model in DDP itself; a model the user wrapped first is used as given.
        net = torch.nn.parallel.DistributedDataParallel(model) if wrap else model
        result = rbfnet.train(
            net,
            train_set,
            test_set,
            epochs=1,
            batch_size=4,
            max_steps=1,
            seed=0,
            checkpoint_dir=ckpt_dir,
            progress=False,
        )
        if result["steps"] != 1:
            raise RuntimeError(f"{label}: expected one optimisation step, got {result['steps']}")
        # evaluate() shards the test set over the ranks and all-reduces: every rank must agree.
        metrics = rbfnet.evaluate(net, test_set, batch_size=4, progress=False)
        if metrics["num_samples"] != len(test_set):
            raise RuntimeError(
                f"{label}: evaluate counted {metrics['num_samples']} of {len(test_set)} clouds"
            )
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, (metrics["overall_acc"], metrics["confusion"], metrics["loss"]))
        if any(g != gathered[0] for g in gathered):
            raise RuntimeError(f"{label}: evaluate() differs between ranks: {gathered}")
        dist.barrier()  # rank 0 has written the checkpoint before anyone reports it
        out[label] = {"before": before, "after": digest(model), "checkpoint": str(ckpt_dir / "last.pt")}
    return out


if __name__ == "__main__":
    launch(scenario)
