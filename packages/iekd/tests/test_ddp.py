"""Every recipe runs under 2-process DDP (gloo, CPU) and leaves the ranks with identical weights and buffers."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _state_vector(*modules: torch.nn.Module) -> torch.Tensor:
    """Every parameter AND buffer (BatchNorm statistics included), in name order, as one float64 vector."""
    parts = []
    for m in modules:
        for _, t in sorted(m.state_dict().items()):
            parts.append(t.detach().double().flatten())
    return torch.cat(parts)


def _worker(rank: int, world: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    # file:// rendezvous: no TCP port to pick, so no race with other processes for a free port
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        from torch.utils.data import DataLoader, TensorDataset
        from torch.utils.data.distributed import DistributedSampler

        import iekd
        from iekd.recipes import distill, mutual, train_factor

        g = torch.Generator().manual_seed(rank)  # a different shard of different data on every rank
        ds = TensorDataset(torch.randn(8, 3, 8, 8, generator=g), torch.arange(8) % 2)
        loader = DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, num_replicas=world, rank=rank))
        torch.manual_seed(0)  # identical initial weights on both ranks
        teacher = iekd.models.resnet8(num_classes=2, base_width=4)
        student = iekd.models.resnet8(num_classes=2, base_width=4)
        peer = iekd.models.resnet8(num_classes=2, base_width=4)
        native = iekd.models.resnet8(num_classes=2, base_width=4)
        ofd_net = iekd.models.resnet8(num_classes=2, base_width=4)
        factor = train_factor(teacher, loader, epochs=1, progress=False)
        res = distill(student, teacher, loader, method="ie-kd", factor=factor, epochs=1, progress=False)
        nat = distill(native, teacher, loader, method="ie-at", ie_at="native", epochs=2, progress=False)
        ofd = distill(
            ofd_net,
            teacher,
            loader,
            method="ie-ofd",
            ie_ofd="native",
            ofd_margin="data",
            epochs=2,
            progress=False,
        )
        mut = mutual(res.model, peer, loader, ie=True, epochs=1, progress=False)
        vec = _state_vector(
            factor,
            res.model,
            res.extras["ie"],
            nat.model,
            ofd.model,
            ofd.extras["ofd_inh"],  # holds the data margin, pooled over the ranks' shards
            mut.extras["peer"],
            mut.extras["ie_b"],
            mut.extras["ae_a"],
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
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), out), nprocs=2, join=True)
    # Different data on the two ranks, yet weights and BatchNorm statistics agree bit for bit: gradients were
    # all-reduced and the recipes synchronised the buffers; native IE-AT / IE-OFD (2 epochs) would diverge or
    # raise if their unused encoders were left trainable under DDP.
    assert torch.load(out, weights_only=True)["diff"] == 0.0
