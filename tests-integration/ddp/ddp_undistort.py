"""undistort under 2-process DDP (gloo, CPU): every training recipe for one optimisation step.

Run as ``python tests-integration/ddp/ddp_undistort.py`` (the harness spawns the ranks). The usage is the
package's documented one: build the network the same way on every rank and call ``undistort.train``
inside the initialised process group; the recipe wraps the network (and the completion task's
discriminator) in ``DistributedDataParallel`` itself, shards the data with a ``DistributedSampler`` and
writes the checkpoint on rank 0 only. The data are tiny and generated in memory: pairs rendered from the
package's stand-in head (``undistort.heads.toy_head``) at 16 px, with a different seed on each rank.
"""

from __future__ import annotations

import pathlib

import torch
from _harness import digest, launch
from torch import nn

from undistort import HeadModel, PortraitPairs, create_model, train
from undistort.heads import toy_head

SIZE = 16


def _pairs(rank: int) -> list[dict]:
    """Four tiny rendered pairs, different on each rank (the data seed is the rank)."""
    v, f = toy_head(8, 16)
    heads = HeadModel.from_meshes(torch.stack([v, v * 1.05]), f)
    ds = PortraitPairs(heads, length=4, image_size=SIZE, head_fraction=(0.7, 0.8), seed=rank)
    return [ds[i] for i in range(len(ds))]


def scenario(rank: int, world_size: int, workdir: pathlib.Path) -> dict:
    """Run ``train`` for every task (flow, distance, completion with its discriminator, segmentation)."""
    items = _pairs(rank)
    out: dict[str, dict] = {}
    recipes = [
        ("flow", "flownet_small", {"widths": (4, 8)}, None),
        ("distance", "distancenet_small", {"widths": (4, 8), "blocks": (1, 1)}, None),
        ("completion", "completionnet_small", {"width": 4, "dilations": (2,)}, "discriminator"),
        ("segmentation", "segnet_small", {"widths": (4, 8)}, None),
    ]
    for i, (task, arch, kw, disc) in enumerate(recipes):
        torch.manual_seed(i)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        net = create_model(arch, **kw)
        extra: dict = {}
        tracked: nn.Module = net
        if disc is not None:
            d = create_model("completiondisc_small", width=4, n_layers=2)
            extra["discriminator"] = d
            tracked = nn.ModuleDict({"generator": net, "discriminator": d})
        before = digest(tracked)
        ckpt = workdir / f"{task}.pt"
        train(task, net, items, steps=1, batch_size=2, checkpoint=ckpt, progress=False, **extra)
        out[f"train_{task}"] = {"before": before, "after": digest(tracked), "checkpoint": str(ckpt)}
    return out


if __name__ == "__main__":
    launch(scenario)
