"""Both training recipes run one step under 2-process DDP (gloo, CPU), leave bit-identical models on both
ranks (BatchNorm statistics included) and write a loadable checkpoint holding that model."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image


def _digest(module: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _worker(rank: int, world: int, root: str, out: str) -> None:
    torch.set_num_threads(1)
    # file rendezvous: no TCP port to race for with other test runs on the machine
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    try:
        from occfill.data import PairedFaces
        from occfill.recipes import CompletionConfig, train_completion, train_identity_encoder

        ds = PairedFaces.from_image_folder(root, size=16)
        enc = train_identity_encoder(
            ds,
            num_classes=2,
            steps=1,
            batch_size=2,
            base_channels=4,
            embedding_dim=8,
            input_size=16,
            checkpoint=os.path.join(out, "enc.pt"),
        )
        cfg = CompletionConfig(base_channels=4, depth=2, d_base_channels=4, d_layers=2)
        res = train_completion(
            ds, config=cfg, encoder=enc, steps=1, batch_size=2, checkpoint=os.path.join(out, "g.pt")
        )
        digests = {"encoder": _digest(enc), "generator": _digest(res.generator)}
        with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
            json.dump(digests, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_recipes_one_step_under_ddp(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    mp.spawn(_worker, args=(2, str(root), str(tmp_path)), nprocs=2, join=True)
    from occfill.checkpoint import load_checkpoint
    from occfill.models import CompletionGenerator, IdentityEncoder

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # the ranks saw different batches (DistributedSampler): without averaging the BatchNorm running
    # statistics after the step, the encoders would differ in their buffers
    assert ranks[0] == ranks[1]
    ck = load_checkpoint(tmp_path / "enc.pt")
    assert ck["step"] == 1
    enc = IdentityEncoder(**ck["config"])
    enc.load_state_dict(ck["state_dict"])
    assert _digest(enc) == ranks[0]["encoder"]
    ck = load_checkpoint(tmp_path / "g.pt")
    assert ck["step"] == 1 and not any(k.startswith("module.") for k in ck["state_dict"])
    gen = CompletionGenerator(**ck["config"])
    gen.load_state_dict(ck["state_dict"])
    assert _digest(gen) == ranks[0]["generator"]
