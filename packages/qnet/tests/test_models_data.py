"""Models registry, data readers, checkpoints, DDP."""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import qnet
from qnet.checkpoint import clean_state_dict, load_checkpoint, save_checkpoint
from qnet.data import CIFARBatches, ImageFolderDataset, stratified_split
from qnet.models import CifarResNet, create_model, list_models


class TestModels:
    def test_registry(self, device):
        assert {"resnet20", "small_cnn"} <= set(list_models())
        m = create_model("resnet20", num_classes=7, device=device)
        assert m(torch.randn(2, 3, 32, 32, device=device)).shape == (2, 7)
        assert sum(p.numel() for p in m.parameters()) == pytest.approx(0.27e6, rel=0.02)  # ResNet-20: 0.27 M
        with pytest.raises(ValueError, match=r"create_model: unknown model 'resnet21'"):
            create_model("resnet21")
        with pytest.raises(ValueError, match=r"CifarResNet: 'depth' must be 6n \+ 2"):
            CifarResNet(21)

    def test_quantized_resnet_layers(self, device):
        m = create_model("resnet20", device=device)
        q = qnet.quantize(m, weight_levels="ternary")
        names = [n for n, _ in qnet.quantized_layers(q)]
        # 19 3x3 convs + 2 1x1 downsample convs + fc = 22 layers; first conv and fc kept -> 20 quantized
        assert len(names) == 20 and "conv1" not in names and "fc" not in names

    def test_weights_round_trip(self, device, tmp_path):
        m = create_model("small_cnn", num_classes=5, width=8, device=device)
        path = os.path.join(tmp_path, "w.pt")
        save_checkpoint(path, m, arch="small_cnn", config={"num_classes": 5, "width": 8})
        m2 = create_model("small_cnn", num_classes=5, width=8, weights=path)
        for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
            assert torch.equal(a.cpu(), b)
        with pytest.raises(ValueError, match=r"conflicts with the checkpoint"):
            create_model("small_cnn", num_classes=6, width=8, weights=path)
        ck = torch.load(path, weights_only=True)
        assert ck["package"] == "qnet" and ck["format_version"] == 1

    def test_checkpoint_errors(self, tmp_path):
        bad = os.path.join(tmp_path, "bad.pt")
        torch.save({"x": 1}, bad)
        with pytest.raises(
            ValueError, match=r"is not a valid qnet checkpoint \(truncated or not written by qnet\)"
        ):
            load_checkpoint(bad)
        assert list(clean_state_dict({"module._orig_mod.a": 1})) == ["a"]


class TestData:
    def test_cifar_batches(self, tmp_path):
        rng = np.random.default_rng(0)
        for name, n in (("data_batch_1", 6), ("test_batch", 4)):
            with open(os.path.join(tmp_path, name), "wb") as f:
                pickle.dump(
                    {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}, f
                )
        tr = CIFARBatches(tmp_path, train=True)
        te = CIFARBatches(tmp_path, train=False)
        assert len(tr) == 6 and len(te) == 4
        x, y = tr[2]
        assert x.shape == (3, 32, 32) and y == 2 and 0 <= float(x.min()) and float(x.max()) <= 1
        with pytest.raises(FileNotFoundError, match=r"CIFARBatches: no training batch file"):
            CIFARBatches(os.path.join(tmp_path, "nope"))

    def test_image_folder(self, shared_data):
        root = os.path.join(shared_data, "faces-24id")
        if not os.path.isdir(root):
            pytest.skip("faces-24id not available")
        ds = ImageFolderDataset(root, size=8, max_per_class=3)
        assert len(ds) == 72 and len(ds.classes) == 24 and ds[0][0].shape == (3, 8, 8)
        tr, te = stratified_split(ds.labels, 1 / 3)
        assert len(te) == 24 and len(set(tr.tolist()) & set(te.tolist())) == 0
        with pytest.raises(FileNotFoundError, match=r"ImageFolderDataset: 'root'"):
            ImageFolderDataset(os.path.join(shared_data, "missing-folder"))


def _ddp_worker(rank: int, world: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from qnet.models import small_cnn
    from qnet.recipes import evaluate, train

    torch.manual_seed(rank)  # different float weights per rank: DDP broadcasts rank 0's when it wraps
    net = small_cnn(num_classes=3, width=4)
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(16, 3, 16, 16, generator=g), torch.randint(0, 3, (16,), generator=g))
    loader = DataLoader(ds, batch_size=4, sampler=DistributedSampler(ds, world, rank, seed=0))
    q = qnet.quantize(net, weight_levels="ternary", act_levels="uint2", calibration=loader)
    ddp = torch.nn.parallel.DistributedDataParallel(q)
    qnet.calibrate(ddp, loader, quantized_weights=True)  # after wrapping: rank 0's quantizers broadcast
    sched = qnet.TemperatureSchedule(q, increment=5.0)
    train(ddp, loader, epochs=1, max_steps=1, temperature=sched, checkpoint=os.path.join(out, "ddp.pt"))
    metrics = evaluate(ddp, loader)  # each rank its own half; counts all-reduced
    frozen = qnet.freeze(copy.deepcopy(q), bn_loader=loader, sync_ranks=True)  # BN re-estimated, averaged
    # everything, BatchNorm running statistics included (averaged after the epoch), must agree
    torch.save(
        {
            **{k: v.detach() for k, v in q.state_dict().items()},
            **{f"frozen.{k}": v for k, v in frozen.state_dict().items()},
            "n": torch.tensor(metrics["n"]),
        },
        os.path.join(out, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(os.path.join(tmp_path, "rank0.pt"), weights_only=True)
    b = torch.load(os.path.join(tmp_path, "rank1.pt"), weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # gradients averaged, BN statistics averaged: bit-identical
    assert int(a["n"]) == 16  # evaluate summed both ranks' 8 samples
    assert load_checkpoint(os.path.join(tmp_path, "ddp.pt"))["step"] == 1
