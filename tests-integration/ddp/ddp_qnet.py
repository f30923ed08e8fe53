"""qnet under 2-process DDP (gloo, CPU): every training recipe for one optimisation step.

The documented DDP usage of qnet: start one process per device (``torchrun``), initialise the process
group, convert the (pretrained) model with :func:`qnet.quantize` (activation quantizers calibrated on each
rank's own shard; :func:`qnet.calibrate` then broadcasts rank 0's quantizer parameters, so every rank
starts from the same quantizers), wrap it in ``DistributedDataParallel`` yourself, shard the data with a
``DistributedSampler`` and call :func:`qnet.recipes.train` on the wrapped model. The recipe averages the
BatchNorm running statistics over the ranks after each epoch and lets rank 0 alone write the checkpoint.
For the paper's phase-wise W+A schedule, call :func:`qnet.set_phase` on the plain model and wrap it again
(DDP registers the trainable parameters when it wraps).

Recipes run here, each for exactly one step on seeded random images (each rank reads a different shard):
full-precision training of the float start point, qnet ternary weights (W2), qnet W2/A2 with separate
weight/activation temperature schedules, the STE baseline W2/A2, the three-phase schedule's phases 1
and 2 (re-wrapped after ``set_phase``), and freezing + bit-packed export of the trained W2/A2 model (the
exported safetensors file is the checkpoint checked; the frozen weights must agree across ranks).

Run as ``python tests-integration/ddp/ddp_qnet.py`` (imports only torch, qnet and the harness).
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import torch
import torch.distributed as dist
from _harness import digest, launch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import qnet

small_cnn = qnet.models.small_cnn
train = qnet.recipes.train

NUM_CLASSES = 4


def _loader(rank: int, world_size: int) -> DataLoader:  # type: ignore[type-arg]
    # the same 32-image dataset on every rank; the sampler hands each rank a different half
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, NUM_CLASSES, (32,), generator=g)
    images = torch.randn(32, 3, 16, 16, generator=g) + labels.float()[:, None, None, None] * 0.3
    ds = TensorDataset(images, labels)
    sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=True, seed=0)
    return DataLoader(ds, batch_size=8, sampler=sampler)


def _float_model(rank: int) -> torch.nn.Module:
    # deliberately different initial weights per rank: DDP broadcasts rank 0's when it wraps the model
    torch.manual_seed(10 + rank)
    return small_cnn(num_classes=NUM_CLASSES, width=4)


def _step(ddp: DDP, loader: DataLoader, ckpt: pathlib.Path, **kwargs: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    before = digest(ddp)
    train(ddp, loader, epochs=1, max_steps=1, lr=0.05, checkpoint=ckpt, **kwargs)
    return {"before": before, "after": digest(ddp), "checkpoint": str(ckpt)}


def scenario(rank: int, world_size: int, workdir: pathlib.Path) -> dict[str, dict[str, Any]]:
    loader = _loader(rank, world_size)
    out: dict[str, dict[str, Any]] = {}

    # 1. full-precision training (the float start point of every quantized run)
    fp = _float_model(rank)
    out["train_float"] = _step(DDP(fp), loader, workdir / "float.pt")
    pretrained = copy.deepcopy(fp)  # same on every rank now

    # 2. qnet ternary weights, weight temperature grown every step (the paper's weight-only recipe)
    q = qnet.quantize(copy.deepcopy(pretrained), weight_levels="ternary")
    sched = qnet.TemperatureSchedule(q, increment=60.0, steps_per_epoch=len(loader))
    out["train_qn_w2"] = _step(DDP(q), loader, workdir / "qn_w2.pt", temperature=sched)

    # 3. qnet ternary weights + 2-bit activations, calibrated on each rank's own shard
    qa = qnet.quantize(
        copy.deepcopy(pretrained), weight_levels="ternary", act_levels="uint2", calibration=loader
    )
    sw = qnet.TemperatureSchedule(qa, increment=60.0, steps_per_epoch=len(loader), kind="weight")
    sa = qnet.TemperatureSchedule(qa, increment=10.0, steps_per_epoch=len(loader), kind="input")
    out["train_qn_w2a2"] = _step(
        DDP(qa), loader, workdir / "qn_w2a2.pt", temperature=[sw, sa], quantizer_lr=0.001
    )

    # 4. the STE (DoReFa-style) baseline with the same levels
    st = qnet.quantize(
        copy.deepcopy(pretrained),
        weight_levels="ternary",
        act_levels="uint2",
        calibration=loader,
        method="ste",
    )
    out["train_ste_w2a2"] = _step(DDP(st), loader, workdir / "ste_w2a2.pt")

    # 5. the paper's three-phase W+A schedule: phase 1 (weights only) and phase 2 (activations only,
    # recalibrated with the quantized weights), each re-wrapped after set_phase
    p = qnet.quantize(
        copy.deepcopy(pretrained), weight_levels="ternary", act_levels="uint2", calibration=loader
    )
    qnet.set_phase(p, 1)
    sp = qnet.TemperatureSchedule(p, increment=60.0, kind="weight")
    out["train_phase1"] = _step(DDP(p), loader, workdir / "phase1.pt", temperature=sp)
    qnet.set_phase(p, 2)
    qnet.calibrate(p, loader, quantized_weights=True)
    sp2 = qnet.TemperatureSchedule(p, increment=10.0, kind="input")
    out["train_phase2"] = _step(DDP(p), loader, workdir / "phase2.pt", temperature=sp2)

    # 6. freeze (BatchNorm re-estimated on each rank's shard, averaged over the ranks) and export the W2/A2 model
    before = digest(qa)
    frozen = qnet.freeze(qa, bn_loader=loader, sync_ranks=True)
    exported = workdir / "qn_w2a2.safetensors"
    if rank == 0:
        qnet.export(frozen, exported)
    dist.barrier()
    out["freeze_export"] = {"before": before, "after": digest(frozen), "checkpoint": str(exported)}
    return out


if __name__ == "__main__":
    launch(scenario)
