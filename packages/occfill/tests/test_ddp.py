"""Both training recipes run one step under 2-process DDP (gloo, CPU) and write a loadable checkpoint."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
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
        train_completion(
            ds, config=cfg, encoder=enc, steps=1, batch_size=2, checkpoint=os.path.join(out, "g.pt")
        )
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
    mp.spawn(_worker, args=(2, _free_port(), str(root), str(tmp_path)), nprocs=2, join=True)
    from occfill.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "enc.pt")["step"] == 1
    ck = load_checkpoint(tmp_path / "g.pt")
    assert ck["step"] == 1 and not any(k.startswith("module.") for k in ck["state_dict"])
