"""Training recipe: metrics by hand, a seeded run on real ModelNet10, resume, checkpoints, DDP."""

from __future__ import annotations

import math
import os

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


def test_evaluate_errors_and_loader_input(shared_data, device):
    te = _mn10(shared_data, "test", 2, num_points=32)  # 20 clouds, labels 0..9
    model = rbfnet.create_model("pointnet", num_classes=10, mlp=(8,), head=(8,)).to(device).train()
    via_set = evaluate(model, te, batch_size=7)
    via_loader = evaluate(model, torch.utils.data.DataLoader(te, batch_size=20))
    assert via_set["confusion"] == via_loader["confusion"] and via_set["num_samples"] == 20
    assert model.training  # evaluate restores the mode it found
    # 10 labels do not fit 5 classes: an error, not a silently wrong confusion matrix
    with pytest.raises(ValueError, match=r"evaluate: labels must lie in \[0, 5\)"):
        evaluate(model, te, num_classes=5)
    with pytest.raises(ValueError, match="evaluate: the model gives 10 logits but 'num_classes' is 2"):
        evaluate(model, torch.utils.data.Subset(te, [0, 1]), num_classes=2)  # labels 0, 0
    assert model.training
    with pytest.raises(ValueError, match="evaluate: distributed=True needs an initialised"):
        evaluate(model, te, distributed=True)
    with pytest.raises(ValueError, match="train: 'train_set' is empty"):
        train(model, torch.utils.data.TensorDataset(torch.zeros(0, 3)), epochs=1)


# Tiny members of every classifier family for the DDP test (same builders as the full models).
_DDP_MODELS = {
    "rbfnet_single": {"num_kernels": 8, "mlp": (8,), "head": (8,)},
    "rbfnet_kernelwise": {"num_kernels": 8, "head": (8,)},
    "pointnet": {"mlp": (8,), "head": (8,)},
    "pointnet2_ssg": {"sa1": (8, 0.4, 8), "sa2": (4, 0.8, 4), "mlps": ((8,), (8,), (8,)), "head": (8,)},
}


def _ddp_worker(rank: int, world: int, init: str, root: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        # 20 training shapes: the DistributedSampler gives each rank 10 (2 steps of 4 per epoch)
        ds = PointCloudFolder(root, "train", num_points=64, max_per_class=2, sampling="random", seed=0)
        te = PointCloudFolder(root, "test", num_points=64, classes=["bed", "chair", "sofa"], max_per_class=3)
        res = {}
        # 9 test shapes: not a multiple of the 2 ranks
        for name, kw in _DDP_MODELS.items():
            torch.manual_seed(0)
            model = rbfnet.create_model(name, num_classes=10, **kw)
            # 2 epochs x 2 steps: a second step after the first (unused parameters would fail there)
            out = train(
                model, ds, te, epochs=2, batch_size=4, max_steps=4, checkpoint_dir=f"{out_dir}/{name}"
            )
            res[name] = {
                "steps": out["steps"],
                "history": out["history"],
                "eval": evaluate(model, te, batch_size=2),
                "local": evaluate(model, te, batch_size=4, distributed=False),  # whole set, no collective
            }
            torch.save(model.state_dict(), os.path.join(out_dir, f"{name}-rank{rank}.pt"))
        torch.save(res, os.path.join(out_dir, f"res-rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_process_gloo_every_family(shared_data, tmp_path):
    root = os.path.join(shared_data, "modelnet10-pc1024")
    init = f"file://{tmp_path}/rendezvous"
    mp.spawn(_ddp_worker, args=(2, init, root, str(tmp_path)), nprocs=2, join=True)
    res = [torch.load(tmp_path / f"res-rank{r}.pt", weights_only=False) for r in range(2)]
    te = PointCloudFolder(root, "test", num_points=64, classes=["bed", "chair", "sofa"], max_per_class=3)
    for name, kw in _DDP_MODELS.items():
        a = torch.load(tmp_path / f"{name}-rank0.pt", weights_only=True)
        b = torch.load(tmp_path / f"{name}-rank1.pt", weights_only=True)
        for k in a:  # gradients all-reduced and BatchNorm statistics averaged: identical, buffers included
            assert torch.equal(a[k], b[k]), (name, k)
        assert res[0][name]["steps"] == res[1][name]["steps"] == 4
        # epoch records are all-reduced: the same on both ranks (so callbacks decide alike)
        assert repr(res[0][name]["history"]) == repr(res[1][name]["history"])  # repr: NaN == NaN
        # evaluate() shards the 9 test clouds over the ranks and all-reduces: both ranks see all 9 and
        # agree with a single-process evaluation of the same weights
        e0, e1 = res[0][name]["eval"], res[1][name]["eval"]
        assert e0["num_samples"] == e1["num_samples"] == 9
        assert e0["confusion"] == e1["confusion"] and e0["overall_acc"] == e1["overall_acc"]
        single = rbfnet.create_model(name, num_classes=10, **kw)
        single.load_state_dict(a)
        ref = evaluate(single, te, batch_size=9)
        assert ref["confusion"] == e0["confusion"] == res[1][name]["local"]["confusion"]
        assert ref["loss"] == pytest.approx(e0["loss"], rel=1e-5)
        ck = rbfnet.load_checkpoint(tmp_path / name / "last.pt")
        assert ck["step"] == 4 and ck["epoch"] == 2
        for k in a:
            assert torch.equal(ck["state_dict"][k], a[k])
