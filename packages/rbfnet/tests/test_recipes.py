"""Training recipe: metrics by hand, a seeded run on real ModelNet10, resume, checkpoints, DDP."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import rbfnet
from rbfnet.data import PointCloudFolder, default_train_transform
from rbfnet.recipes import classification_metrics, evaluate, train

SMALL_RBF = {"num_kernels": 64, "mlp": (16, 64, 128), "head": (64,)}


def test_metrics_by_hand():
    # 3 classes; truth [0,0,0,1,1,2], pred [0,0,1,1,0,2]: OA 4/6; per class 2/3, 1/2, 1/1; mean 13/18.
    m = classification_metrics(np.array([0, 0, 1, 1, 0, 2]), np.array([0, 0, 0, 1, 1, 2]), 4)
    assert m["overall_acc"] == pytest.approx(4 / 6)
    assert m["per_class_acc"][:3] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert math.isnan(m["per_class_acc"][3])
    assert m["class_mean_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["confusion"][0] == [2, 1, 0, 0]
    with pytest.raises(ValueError, match="classification_metrics: 'pred' and 'target' must be non-empty"):
        classification_metrics(np.array([]), np.array([]), 2)


def _mn10(shared_data, split, per_class, transform=None, num_points=256):
    root = os.path.join(shared_data, "modelnet10-pc1024")
    return PointCloudFolder(
        root,
        split,
        num_points=num_points,
        max_per_class=per_class,
        sampling="random" if transform is not None else "first",
        transform=transform,
    )


def test_seeded_training_on_real_modelnet10(shared_data, device):
    # 200 training clouds (20 per class), 100 held-out test clouds (10 per class), 256 points.
    tr = _mn10(shared_data, "train", 20, default_train_transform())
    te = _mn10(shared_data, "test", 10)
    torch.manual_seed(0)
    model = rbfnet.create_model("rbfnet_single", num_classes=10, **SMALL_RBF).to(device)
    out = train(model, tr, te, epochs=8, batch_size=16, lr=3e-3, lr_step=100, seed=0, device=device)
    hist = out["history"]
    assert hist[-1]["train_loss"] < 0.75 * hist[0]["train_loss"]
    # chance is 10% and the majority class of a balanced test set is 10% too: demand far more
    final = evaluate(model, te, device=device)
    assert final["overall_acc"] >= 0.4, final["overall_acc"]
    assert final["class_mean_acc"] >= 0.35
    assert len(final["per_class_acc"]) == 10 and final["num_samples"] == 100


def test_resume_repeats_uninterrupted_run(shared_data, tmp_path, device):
    tr = _mn10(shared_data, "train", 3, default_train_transform(), num_points=64)

    def fresh():
        torch.manual_seed(1)
        return rbfnet.create_model("rbfnet_single", num_classes=10, num_kernels=8, mlp=(8,), head=(8,)).to(
            device
        )

    kw = {"batch_size": 8, "seed": 3, "device": device}
    full = fresh()
    train(full, tr, epochs=2, **kw)
    part = fresh()
    train(part, tr, epochs=1, checkpoint_dir=tmp_path, **kw)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and "optimizer" in ck and ck["arch"] == "rbfnet_single"
    resumed = fresh()
    out = train(resumed, tr, epochs=2, checkpoint_dir=tmp_path, resume=True, **kw)
    assert [r["epoch"] for r in out["history"]] == [1, 2]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_callback_stops_and_best_checkpoint(shared_data, tmp_path, device):
    tr = _mn10(shared_data, "train", 2, num_points=32)
    model = rbfnet.create_model("pointnet", num_classes=10, mlp=(8,), head=(8,)).to(device)
    seen = []
    out = train(
        model,
        tr,
        tr,
        epochs=5,
        batch_size=8,
        device=device,
        checkpoint_dir=tmp_path,
        callback=lambda e, r: seen.append(e) or e >= 2,
    )
    assert seen == [1, 2] and len(out["history"]) == 2
    assert (tmp_path / "best.pt").is_file()
    best = rbfnet.create_model("pointnet", weights=tmp_path / "best.pt")
    assert best.num_classes == 10


def test_train_argument_errors(shared_data):
    tr = _mn10(shared_data, "train", 1, num_points=16)
    model = rbfnet.create_model("pointnet", num_classes=10, mlp=(8,), head=(8,))
    with pytest.raises(ValueError, match="train: 'epochs' must be an int >= 1; got 0"):
        train(model, tr, epochs=0)
    with pytest.raises(ValueError, match="train: resume=True needs 'checkpoint_dir'"):
        train(model, tr, resume=True)
    nm = rbfnet.create_model("rbfnet_normals", num_classes=10, num_kernels=8, mlp=(8,), head=(8,))
    with pytest.raises(ValueError, match="the model uses normals but the dataset returns none"):
        train(nm, tr, epochs=1, max_steps=1)


def _ddp_worker(rank: int, world: int, port: int, root: str, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        ds = PointCloudFolder(root, "train", num_points=64, max_per_class=2)
        model = rbfnet.create_model("rbfnet_single", num_classes=10, num_kernels=8, mlp=(8,), head=(8,))
        out = train(model, ds, epochs=1, batch_size=4, max_steps=1, checkpoint_dir=out_dir)
        assert out["steps"] == 1
        torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_process_gloo_one_step(shared_data, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.join(shared_data, "modelnet10-pc1024")
    mp.spawn(_ddp_worker, args=(2, port, root, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in a:  # gradients were all-reduced: both ranks hold the same parameters after the step
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(a[k], b[k])
    assert (tmp_path / "last.pt").is_file()
    rbfnet.load_checkpoint(tmp_path / "last.pt")
