"""hairsynth under 2-process DDP (gloo, CPU): ``hairsynth.recipes.train`` for one step in every phase.

The documented DDP usage of hairsynth: start one process per device (``torchrun``), initialise the process
group, and call :func:`hairsynth.recipes.train` on every rank as in a single process. The recipe wraps the
two-stage generator and its discriminators in ``DistributedDataParallel`` (rebuilt at each phase change of
the staged schedule, so frozen parts are left out of the gradient all-reduce), shards the data with a
``DistributedSampler``, lets rank 0 alone write ``last.pt`` and makes every rank wait for it.

Recipes run here, one optimisation step each, 32 px, a tiny U-Net:

- ``train_joint``: the default joint schedule (synthesis G1 + refinement/compositing G2 + both discriminators);
- ``train_no_refinement``: the "no refinement network" model (G1 alone), joint schedule;
- ``train_staged_synthesis`` / ``train_staged_refinement`` / ``train_staged_joint``: the three phases of
  ``schedule="staged"`` (G1 alone, then G2 alone with G1 frozen, then joint fine-tuning), each phase
  entered by resuming the previous phase's checkpoint, the way a user continues a run.

Each rank builds its own seeded in-memory hair pairs (stripes, a rectangular region, two coloured strokes):
different data on every rank, as under DDP. Run as ``python tests-integration/ddp/ddp_hairsynth.py`` (imports only
torch, hairsynth and the harness).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import torch
from _harness import digest, launch
from torch.utils.data import Dataset

import hairsynth
from hairsynth.recipes import TrainConfig, train

SIZE = 32
MODEL = {"num_downs": 3, "base_channels": 8, "max_channels": 32}
TRAIN = {"batch_size": 2, "disc_base_channels": 8, "disc_layers": 2, "checkpoint_every": 1}


class TinyHairPairs(Dataset):  # type: ignore[type-arg]
    """Seeded synthetic hair pairs: striped "hair" in a rectangle, guided by two coloured strokes."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(SIZE * 1.0), torch.arange(SIZE * 1.0), indexing="ij")
        self.samples = []
        for _ in range(n):
            angle = float(torch.rand((), generator=g)) * math.pi
            tone = torch.rand(3, generator=g) * 0.5
            stripes = 0.5 + 0.5 * torch.cos(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / 4)
            image = (0.3 + tone[:, None, None] * stripes).clamp(0, 1)
            x0, y0 = (int(v) for v in torch.randint(2, 12, (2,), generator=g))
            mask = torch.zeros(1, SIZE, SIZE)
            mask[:, y0 : y0 + 16, x0 : x0 + 16] = 1
            strokes = [
                hairsynth.Stroke(
                    [(x0 + 2, y0 + 2 + 5 * k), (x0 + 13, y0 + 4 + 5 * k)], tuple(tone.tolist()), 2.0
                )
                for k in range(2)
            ]
            color, cover = hairsynth.rasterize_strokes(strokes, (SIZE, SIZE))
            self.samples.append({"image": image, "mask": mask, "stroke_color": color, "stroke_mask": cover})

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.samples[i]


def _same(a: torch.nn.Module, b_state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, b_state[k]) for k, v in a.state_dict().items())


def _one_step(
    name: str,
    cfg: TrainConfig,
    data: Dataset,
    workdir: pathlib.Path,
    resume: pathlib.Path | None = None,
) -> tuple[dict[str, Any], hairsynth.HairSynthesisNet]:
    """One optimisation step of ``train``; returns the harness entry and the trained model."""
    # A seeded user script: the same initial weights on every rank (DDP would broadcast rank 0's anyway).
    torch.manual_seed(cfg.seed)
    model = hairsynth.create_model(cfg.arch, weights=resume, **cfg.model_kwargs)
    before = digest(model)
    synth_before = {k: v.clone() for k, v in model.synthesis.state_dict().items()}
    refine_before = (
        {k: v.clone() for k, v in model.refinement.state_dict().items()}
        if model.refinement is not None
        else {}
    )
    out_dir = workdir / name
    res = train(cfg, data, model=model, out_dir=out_dir, resume=resume, progress=False, device="cpu")
    start = 0 if resume is None else int(torch.load(resume, weights_only=True)["step"])
    if res["step"] != start + 1:
        raise RuntimeError(f"{name}: expected one optimisation step from {start}, got to step {res['step']}")
    # The phase trains exactly its part of the generator.
    phase = cfg.phase(start)
    if phase == "synthesis" and (
        _same(model.synthesis, synth_before) or not _same(model.refinement, refine_before)  # type: ignore[arg-type]
    ):
        raise RuntimeError(f"{name}: the synthesis phase must move G1 and leave G2 untouched")
    if phase == "refinement" and (
        not _same(model.synthesis, synth_before) or _same(model.refinement, refine_before)  # type: ignore[arg-type]
    ):
        raise RuntimeError(f"{name}: the refinement phase must move G2 and leave G1 untouched")
    return {"before": before, "after": digest(res["model"]), "checkpoint": str(out_dir / "last.pt")}, model


def scenario(rank: int, world_size: int, workdir: pathlib.Path) -> dict[str, dict[str, Any]]:
    data = TinyHairPairs(4, seed=100 + rank)  # each rank holds different data
    base = {"arch": "hairsynth_tiny", "model_kwargs": MODEL, **TRAIN}
    out: dict[str, dict[str, Any]] = {}
    out["train_joint"], _ = _one_step("train_joint", TrainConfig(steps=1, **base), data, workdir)
    no_ref = {**base, "model_kwargs": {**MODEL, "use_refinement": False}}
    out["train_no_refinement"], _ = _one_step(
        "train_no_refinement", TrainConfig(steps=1, **no_ref), data, workdir
    )
    # the staged schedule: step 0 trains G1, step 1 trains G2, step 2 fine-tunes both (one resume per phase)
    resume = None
    for k, phase in enumerate(("synthesis", "refinement", "joint")):
        name = f"train_staged_{phase}"
        cfg = TrainConfig(steps=k + 1, schedule="staged", stage_steps=(1, 1), **base)
        if cfg.phase(k) != phase:
            raise RuntimeError(f"{name}: step {k} is in phase {cfg.phase(k)!r}, not {phase!r}")
        out[name], _ = _one_step(name, cfg, data, workdir, resume=resume)
        resume = workdir / name / "last.pt"
    return out


if __name__ == "__main__":
    launch(scenario)
