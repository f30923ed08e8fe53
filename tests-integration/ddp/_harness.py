"""Run a package's training recipes for one step under 2-process DDP (gloo, CPU) and check the result.

A scenario file ``tests-integration/ddp/ddp_<package>.py`` (not ``<package>.py``: a script's folder comes
first on ``sys.path``, so that name would shadow the installed package) defines ``scenario(rank, world_size, workdir)``
and ends with ``if __name__ == "__main__": launch(scenario)``. The scenario runs every training recipe
of its package for one optimisation step inside the process group this harness has already initialised
(gloo, CPU, file rendezvous: no TCP port to race for) and returns, per recipe::

    {"<recipe>": {"before": digest(model_before_step), "after": digest(model_after_step),
                  "checkpoint": "<path written by the recipe, or None>"}}

The harness then checks, for every recipe: the step changed the parameters; both ranks hold bit-identical
parameters after it (gradients were all-reduced, or the recipe broadcast them); each checkpoint loads
with ``torch.load(weights_only=True)`` (or safetensors for ``.safetensors``). It prints one JSON line
with the recipes checked and exits non-zero on any failure. Imports only torch and the standard
library, so it runs in a venv holding one package's wheel alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

Scenario = Callable[[int, int, pathlib.Path], dict]


def digest(module: torch.nn.Module) -> str:
    """SHA-1 of every parameter and buffer of ``module`` (DDP wrappers unwrapped), in name order."""
    inner = getattr(module, "module", module)
    h = hashlib.sha1()
    for name, tensor in sorted(inner.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _worker(rank: int, world_size: int, scenario: Scenario, tmp: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world_size)
    try:
        workdir = pathlib.Path(tmp) / "work"
        workdir.mkdir(exist_ok=True)
        out = scenario(rank, world_size, workdir)
        dist.barrier()
    except BaseException:
        (pathlib.Path(tmp) / f"rank{rank}.err").write_text(traceback.format_exc())
        dist.destroy_process_group()
        raise
    # The results are on disk before any teardown.
    (pathlib.Path(tmp) / f"rank{rank}.json").write_text(json.dumps(out))
    # Wait through the (file) store, not the gloo sockets, until every rank is past its last collective:
    # a rank that tears its process group down while a peer's gloo thread still reads from a socket can
    # make that peer abort ("terminate called without an active exception"), seen once on a loaded box.
    store = dist.distributed_c10d._get_default_store()
    store.add("finished", 1)
    deadline = time.monotonic() + 300
    while store.add("finished", 0) < world_size and time.monotonic() < deadline:
        time.sleep(0.01)
    dist.destroy_process_group()


def _load_checkpoint(path: str) -> None:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        load_file(path)
    else:
        torch.load(path, map_location="cpu", weights_only=True)


def launch(scenario: Scenario, world_size: int = 2) -> dict:
    """Spawn ``world_size`` gloo processes running ``scenario``; check and print the outcome."""
    with tempfile.TemporaryDirectory() as tmp:
        teardown = None
        try:
            mp.spawn(_worker, args=(world_size, scenario, tmp), nprocs=world_size, join=True)
        except Exception:
            teardown = traceback.format_exc()
        errors = sorted(pathlib.Path(tmp).glob("rank*.err"))
        missing = [r for r in range(world_size) if not (pathlib.Path(tmp) / f"rank{r}.json").exists()]
        if errors or missing:
            detail = "\n".join(p.read_text() for p in errors)
            sys.exit(f"DDP scenario failed (ranks without results: {missing}):\n{detail or teardown}")
        if teardown is not None:
            # Every rank finished the scenario and wrote its results; only the process teardown failed.
            print(f"warning: a rank failed after finishing the scenario:\n{teardown}", file=sys.stderr)
        results = [json.loads((pathlib.Path(tmp) / f"rank{r}.json").read_text()) for r in range(world_size)]
        problems = []
        if not results[0]:
            problems.append("scenario returned no recipes")
        for recipe, info in results[0].items():
            if info["before"] == info["after"]:
                problems.append(f"{recipe}: the step did not change the parameters")
            for r in range(1, world_size):
                other = results[r].get(recipe)
                if other is None or other["after"] != info["after"]:
                    problems.append(f"{recipe}: rank {r} parameters differ from rank 0 after the step")
            if info.get("checkpoint"):
                try:
                    _load_checkpoint(info["checkpoint"])
                except Exception as exc:
                    problems.append(f"{recipe}: checkpoint {info['checkpoint']} did not load safely: {exc}")
        summary = {
            "recipes": sorted(results[0]),
            "world_size": world_size,
            "problems": problems,
            "teardown_failed": teardown is not None,
        }
        print(json.dumps(summary))
        if problems:
            sys.exit("DDP scenario problems:\n" + "\n".join(problems))
        return summary
