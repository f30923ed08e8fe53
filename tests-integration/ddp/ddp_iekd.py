"""iekd under 2-process DDP: every training recipe for one optimisation step (gloo, CPU).

The documented DDP usage of ``iekd.recipes``: start the process group (torchrun or ``init_process_group``), give
the loader a ``DistributedSampler``, build the networks identically on every rank, and call the recipe; it wraps
the trained modules in ``DistributedDataParallel`` itself and writes its checkpoint on rank 0. Each rank here
draws different in-memory data, so the ranks agree after the step only if the gradients were all-reduced and the
BatchNorm statistics synchronised.

Recipes: ``train_factor``; ``distill`` with every method of ``iekd.recipes.METHODS`` (``ce``, ``kd``, ``at``,
``ft``, ``ofd``, ``ie-kd``, ``ie-at``, ``ie-ft``, ``ie-ofd``), plus native IE-AT, native IE-OFD and OFD with the
data margin; ``mutual`` with ``ie=False``, ``ie=True`` and ``ie=True, ie_factor="feature"`` (both networks digested).
"""

from __future__ import annotations

import pathlib

import torch
from _harness import digest, launch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import iekd
from iekd.recipes import METHODS, distill, mutual, sgd, train_factor

BATCH = 4  # per rank; the loader yields exactly one batch per rank, so epochs=1 is one optimisation step
CLASSES = 3


def _loader(rank: int, world_size: int) -> DataLoader:
    g = torch.Generator().manual_seed(100 + rank)  # different data on every rank
    n = BATCH * world_size
    ds = TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, CLASSES, (n,), generator=g))
    sampler = DistributedSampler(ds, shuffle=True, seed=0)
    return DataLoader(ds, batch_size=BATCH, sampler=sampler)


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # the same initial weights on every rank (DDP would also broadcast rank 0's)
    return iekd.models.resnet8(num_classes=CLASSES, base_width=4)


def scenario(rank: int, world_size: int, workdir: pathlib.Path) -> dict:
    loader = _loader(rank, world_size)
    common = {"epochs": 1, "optimizer": sgd(0.1), "progress": False}
    out: dict[str, dict] = {}
    teacher = _net(0).eval()  # stands for a pre-trained teacher; identical on every rank

    # Step A: the teacher's factor auto-encoder.
    torch.manual_seed(1)
    factor = iekd.FactorAutoencoder(teacher.num_features, rate=0.5)
    before = digest(factor)
    ckpt = workdir / "train_factor.pt"
    factor = train_factor(teacher, loader, factor=factor, checkpoint=ckpt, **common)
    out["train_factor"] = {"before": before, "after": digest(factor), "checkpoint": str(ckpt)}

    # Steps B/C: every distillation method, each from the same fresh student.
    runs: list[tuple[str, str, dict]] = [(m, "", {}) for m in METHODS]
    runs += [
        ("ie-at", ":native", {"ie_at": "native"}),
        ("ie-ofd", ":native", {"ie_ofd": "native"}),
        ("ofd", ":data-margin", {"ofd_margin": "data"}),
    ]
    for method, suffix, extra in runs:
        name = f"distill:{method}{suffix}"
        student = _net(2)
        before = digest(student)
        ckpt = workdir / f"{name.replace(':', '_')}.pt"
        res = distill(
            student,
            None if method == "ce" else teacher,
            loader,
            method=method,
            factor=factor,
            checkpoint=ckpt,
            **extra,
            **common,
        )
        out[name] = {"before": before, "after": digest(res.model), "checkpoint": str(ckpt)}

    # Deep mutual learning and IE-DML (online auto-encoders, and the raw-feature option): both networks train.
    for ie, ie_factor in ((False, "online"), (True, "online"), (True, "feature")):
        net_a, net_b = _net(3), _net(4)
        before_a, before_b = digest(net_a), digest(net_b)
        tag = ("mutual-ie" if ie else "mutual") + (":feature" if ie_factor == "feature" else "")
        ckpt = workdir / f"{tag.replace(':', '_')}.pt"
        res = mutual(net_a, net_b, loader, ie=ie, ie_factor=ie_factor, checkpoint=ckpt, **common)
        out[f"{tag}:a"] = {"before": before_a, "after": digest(res.model), "checkpoint": str(ckpt)}
        out[f"{tag}:b"] = {"before": before_b, "after": digest(res.extras["peer"]), "checkpoint": str(ckpt)}
    return out


if __name__ == "__main__":
    launch(scenario)
