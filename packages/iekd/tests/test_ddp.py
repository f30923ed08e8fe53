"""Every recipe runs one step under 2-process DDP (gloo, CPU) and keeps the ranks' weights in sync."""

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


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.utils.data import DataLoader, TensorDataset
        from torch.utils.data.distributed import DistributedSampler

        import iekd
        from iekd.recipes import distill, mutual, train_factor

        g = torch.Generator().manual_seed(0)
        ds = TensorDataset(torch.randn(8, 3, 8, 8, generator=g), torch.arange(8) % 2)
        loader = DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, num_replicas=world, rank=rank))
        torch.manual_seed(0)  # identical initial weights on both ranks
        teacher = iekd.models.resnet8(num_classes=2, base_width=4)
        student = iekd.models.resnet8(num_classes=2, base_width=4)
        peer = iekd.models.resnet8(num_classes=2, base_width=4)
        factor = train_factor(teacher, loader, epochs=1, progress=False)
        res = distill(student, teacher, loader, method="ie-kd", factor=factor, epochs=1, progress=False)
        mut = mutual(res.model, peer, loader, ie=True, epochs=1, progress=False)
        vec = torch.cat(
            [
                torch.nn.utils.parameters_to_vector(m.parameters()).detach()
                for m in (factor, res.model, res.extras["ie"], mut.extras["peer"], mut.extras["ie_b"])
            ]
        )
        gathered = [torch.zeros_like(vec) for _ in range(world)]
        dist.all_gather(gathered, vec)
        if rank == 0:
            torch.save({"diff": float((gathered[0] - gathered[1]).abs().max())}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_recipes_under_two_process_ddp(tmp_path):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    # Different data shards on the two ranks, yet the weights agree: gradients were all-reduced.
    assert torch.load(out, weights_only=True)["diff"] < 1e-6
