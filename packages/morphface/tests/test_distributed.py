"""Recipes under 2-process DDP (gloo, CPU) and torch.compile (slow)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from morphface import AttributeGenerator, PatchDiscriminator, Upsampler
        from morphface.data import AttributeMapDataset, toy_face_model
        from morphface.recipes import train_attribute_model, train_upsampler

        torch.manual_seed(0)  # identical initial weights on both ranks (DDP also broadcasts them)
        ds = AttributeMapDataset(toy_face_model(grid=9, n_identity=3), 16, 8)
        g = AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=4)
        d = PatchDiscriminator(11, base_channels=4, n_layers=2)
        train_attribute_model(
            g, d, ds, steps=1, batch_size=2, checkpoint_path=os.path.join(tmp, "gan.pt"), progress=False
        )
        u = Upsampler(5, scale=2, hidden=4, n_blocks=1)
        train_upsampler(
            u,
            ds.attribute_maps,
            steps=1,
            batch_size=2,
            checkpoint_path=os.path.join(tmp, "up.pt"),
            progress=False,
        )
        # parameters stay synchronised across ranks after a DDP step
        flat = torch.cat([p.detach().flatten() for p in g.parameters()])
        other = flat.clone()
        dist.broadcast(other, src=0)
        assert torch.allclose(flat, other)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_recipes_one_step_ddp_gloo(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    from morphface.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "gan.pt")["step"] == 1
    assert load_checkpoint(tmp_path / "up.pt")["step"] == 1
    assert not any("module." in k for k in load_checkpoint(tmp_path / "gan.pt")["state_dict"]["generator"])


@pytest.mark.slow
def test_generator_compiles(device):
    from morphface import AttributeGenerator

    g = AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=4, device=device).eval()
    geo = torch.randn(1, 6, 16, 16, device=device)
    z = torch.randn(1, 4, device=device)
    noise = torch.randn(1, 1, 16, 16, device=device)
    compiled = torch.compile(g)
    torch.testing.assert_close(compiled(geo, z, noise), g(geo, z, noise), atol=1e-5, rtol=1e-4)
