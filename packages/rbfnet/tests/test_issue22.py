"""Issue 22: the HDF5 ModelNet form, PyG-style flat batches and tuple loaders, test-time voting,
BatchNorm recalibration."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import rbfnet
from rbfnet.data import collate_flat, flat_to_dense
from rbfnet.recipes import vote_views

h5py = pytest.importorskip("h5py", reason="h5py is the optional 'hdf5' extra (in the test extra)")

SMALL = {"num_kernels": 16, "mlp": (16,), "head": (16,)}
MODELS = {
    "rbfnet_single": SMALL,
    "rbfnet_kernelwise": SMALL,
    "pointnet": {"mlp": (16, 32), "head": (16,)},
}


# ----------------------------------------------------------------------------------------- HDF5 reader
def _write_h5(path, n, p=64, *, normal=True, label_shape="col", data_shape=None, skip=()):
    rng = np.random.default_rng(abs(hash(os.path.basename(path))) % 2**32)
    data = rng.standard_normal(data_shape or (n, p, 3)).astype(np.float32)
    label = rng.integers(0, 3, size=(n, 1) if label_shape == "col" else (n,)).astype(np.uint8)
    with h5py.File(path, "w") as f:
        if "data" not in skip:
            f["data"] = data
        if "label" not in skip:
            f["label"] = label
        if normal:
            f["normal"] = rng.standard_normal(data.shape).astype(np.float32)
    return data, label.reshape(-1)


def _h5_root(tmp_path):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    root.mkdir()
    d0, l0 = _write_h5(root / "ply_data_train0.h5", 5)
    d1, l1 = _write_h5(root / "ply_data_train1.h5", 4, label_shape="flat")
    dt, lt = _write_h5(root / "ply_data_test0.h5", 3, normal=False)
    # the original lists hold paths relative to the PointNet repository
    (root / "train_files.txt").write_text(
        "data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\ndata/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n"
    )
    (root / "test_files.txt").write_text("ply_data_test0.h5\n")
    (root / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    return root, (np.concatenate([d0, d1]), np.concatenate([l0, l1])), (dt, lt)


def test_hdf5_reads_points_labels_normals(tmp_path):
    root, (d, lbl), (dt, lt) = _h5_root(tmp_path)
    assert lt.shape == (3,)
    tr = rbfnet.data.ModelNetHDF5(root, "train", num_points=32, use_normals=True)
    assert len(tr) == 9 and tr.classes == ["airplane", "bathtub", "bed"]
    np.testing.assert_array_equal(tr.labels, lbl.astype(np.int64))
    s = tr[6]
    torch.testing.assert_close(s["points"], torch.from_numpy(d[6, :32]))  # PointNet: the first points
    assert s["normals"].shape == (32, 3) and int(s["label"]) == int(lbl[6])
    te = rbfnet.data.ModelNetHDF5(root, "test", num_points=None)
    assert len(te) == 3 and te[2]["points"].shape == (64, 3) and "normals" not in te[2]
    torch.testing.assert_close(te[1]["points"], torch.from_numpy(dt[1]))
    # it feeds the recipes like every other reader
    m = rbfnet.create_model("rbfnet_kernelwise", num_classes=3, **SMALL)
    assert rbfnet.evaluate(m, te, batch_size=2)["num_samples"] == 3


def test_hdf5_errors(tmp_path):
    root, _, _ = _h5_root(tmp_path)
    with pytest.raises(ValueError, match=r"ModelNetHDF5: .*ply_data_test0\.h5' has no 'normal' dataset"):
        rbfnet.data.ModelNetHDF5(root, "test", use_normals=True)
    (root / "val_files.txt").write_text("ply_data_train0.h5\nply_data_missing.h5\n")
    with pytest.raises(
        FileNotFoundError, match=r"val_files\.txt' lists 'ply_data_missing\.h5', but no such file"
    ):
        rbfnet.data.ModelNetHDF5(root, "val")
    with pytest.raises(FileNotFoundError, match=r"file list .*nope_files\.txt' is missing"):
        rbfnet.data.ModelNetHDF5(root, "nope")
    cases = {
        "nolabel": ({"skip": ("label",)}, r"has no 'label' dataset \(keys: \['data', 'normal'\]\)"),
        "nodata": ({"skip": ("data",)}, r"has no 'data' dataset"),
        "xy": (
            {"data_shape": (4, 64, 2)},
            r"'data' must have shape \(S, P, 3\) with P >= 1; got \(4, 64, 2\)",
        ),
        "flat": ({"data_shape": (4, 192)}, r"'data' must have shape \(S, P, 3\).*got \(4, 192\)"),
    }
    for name, (kw, msg) in cases.items():
        _write_h5(root / f"{name}.h5", 4, **kw)
        (root / f"{name}_files.txt").write_text(f"{name}.h5\n")
        with pytest.raises(ValueError, match=msg):
            rbfnet.data.ModelNetHDF5(root, name)
    with h5py.File(root / "badlabel.h5", "w") as f:
        f["data"] = np.zeros((4, 8, 3), np.float32)
        f["label"] = np.zeros((5, 1), np.int64)
    (root / "badlabel_files.txt").write_text("badlabel.h5\n")
    with pytest.raises(ValueError, match=r"'label' must have shape \(4, 1\) or \(4,\) .*got \(5, 1\)"):
        rbfnet.data.ModelNetHDF5(root, "badlabel")
    with h5py.File(root / "badnormal.h5", "w") as f:
        f["data"] = np.zeros((4, 8, 3), np.float32)
        f["label"] = np.zeros((4, 1), np.int64)
        f["normal"] = np.zeros((4, 7, 3), np.float32)
    (root / "badnormal_files.txt").write_text("badnormal.h5\n")
    with pytest.raises(
        ValueError, match=r"'normal' must have the shape of 'data' \(4, 8, 3\); got \(4, 7, 3\)"
    ):
        rbfnet.data.ModelNetHDF5(root, "badnormal", use_normals=True)


# -------------------------------------------------------------------------------- flat batches, tuples
def _clouds(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 3, generator=g) * 2 - 1 for n in sizes]


def test_flat_to_dense_by_hand():
    pos = torch.arange(15.0).reshape(5, 3)
    batch = torch.tensor([1, 0, 1, 1, 0])  # unsorted: cloud 0 = rows 1, 4; cloud 1 = rows 0, 2, 3
    pts, _ = flat_to_dense(pos, batch)
    # cloud 0 (2 points) repeats cyclically to 3: rows 1, 4, 1; cloud 1 keeps rows 0, 2, 3
    torch.testing.assert_close(pts[:, :, 0], torch.tensor([[3.0, 12.0, 3.0], [0.0, 6.0, 9.0]]))
    pts, _ = flat_to_dense(pos, batch, num_points=2)  # larger clouds: floor(j * n / N) -> rows 0, 2
    torch.testing.assert_close(pts[:, :, 0], torch.tensor([[3.0, 12.0], [0.0, 6.0]]))
    with pytest.raises(ValueError, match=r"flat_to_dense: 'batch' must have shape \(P,\) = \(5,\)"):
        flat_to_dense(pos, batch[:4])
    with pytest.raises(TypeError, match="flat_to_dense: 'batch' must hold integer cloud indices"):
        flat_to_dense(pos, batch.float())
    with pytest.raises(ValueError, match=r"clouds \[1\] hold no points"):
        flat_to_dense(pos, torch.tensor([0, 0, 2, 2, 0]))
    with pytest.raises(ValueError, match=r"flat_to_dense: 'pos' must have last dimension 3"):
        flat_to_dense(pos[:, :2], batch)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_flat_matches_each_cloud_alone(name):
    """Variable points per cloud: flat batch logits == each cloud run alone through the dense path."""
    torch.manual_seed(0)
    m = rbfnet.create_model(name, num_classes=4, **MODELS[name]).eval()
    clouds = _clouds([20, 33, 7])
    pos = torch.cat(clouds)
    batch = torch.cat([torch.full((len(c),), i) for i, c in enumerate(clouds)])
    with torch.no_grad():
        flat = m.forward_flat(pos, batch)
        alone = torch.cat([m(c.unsqueeze(0)) for c in clouds])
        same = _clouds([16, 16], seed=1)  # equal sizes: the flat batch IS the dense batch
        dense = m(torch.stack(same))
        flat_same = m.forward_flat(torch.cat(same), torch.tensor([0] * 16 + [1] * 16))
    torch.testing.assert_close(flat, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(flat_same, dense)


class _VarSize(torch.utils.data.Dataset):
    def __init__(self, sizes):
        self.clouds = _clouds(sizes, seed=2)

    def __len__(self):
        return len(self.clouds)

    def __getitem__(self, i):
        return {"points": self.clouds[i], "label": torch.tensor(i % 3)}


def test_recipes_accept_flat_batches_and_tuples():
    torch.manual_seed(0)
    m = rbfnet.create_model("rbfnet_kernelwise", num_classes=3, **SMALL)
    ds = _VarSize([12, 30, 17, 9, 25, 14])
    out = rbfnet.train(m, ds, ds, epochs=2, batch_size=3, collate_fn=collate_flat)
    assert len(out["history"]) == 2 and math.isfinite(out["history"][-1]["train_loss"])
    flat = rbfnet.evaluate(m, DataLoader(ds, batch_size=4, collate_fn=collate_flat))
    alone = rbfnet.evaluate(m, ds, batch_size=1)  # dense path, each cloud at its own size
    assert flat["num_samples"] == alone["num_samples"] == 6
    assert flat["confusion"] == alone["confusion"]
    assert flat["loss"] == pytest.approx(alone["loss"], rel=1e-4)
    # PyG-style objects with attributes (torch_geometric.data.Batch has pos / batch / y)
    b = collate_flat([ds[i] for i in range(3)])

    class Obj:
        pos, batch, y = b["pos"], b["batch"], b["y"]

    obj = rbfnet.evaluate(m, DataLoader([Obj()], batch_size=None))  # a loader of ready batches
    assert obj["num_samples"] == 3
    # (points, label) tuples: same metrics as the package's dicts
    pts = torch.stack(_clouds([16] * 6, seed=3))
    lab = torch.tensor([0, 1, 2, 0, 1, 2])
    tup = rbfnet.evaluate(m, TensorDataset(pts, lab), batch_size=4)
    dic = rbfnet.evaluate(m, DataLoader([{"points": pts, "label": lab}], batch_size=None))
    assert tup["confusion"] == dic["confusion"] and tup["loss"] == pytest.approx(dic["loss"], rel=1e-5)
    with pytest.raises(TypeError, match=r"a \(points, label\) pair, or a flat batch with 'pos'"):
        rbfnet.evaluate(m, DataLoader([{"xyz": pts}], batch_size=None))


# ------------------------------------------------------------------------------------------- voting
def test_vote_views_by_hand():
    views = vote_views(4, seed=3, scale=(0.5, 2.0), rotate=True, up_axis=2)
    assert len(views) == 4 and views[0][0] == 1.0
    torch.testing.assert_close(views[0][1], torch.eye(3, dtype=torch.float64))
    draws = torch.rand(4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for k in (1, 2, 3):
        s, rot = views[k]
        assert s == pytest.approx(0.5 + 1.5 * float(draws[k - 1]))
        t = 2 * math.pi * k / 4  # x -> (cos t, sin t, 0) about z; z is kept
        torch.testing.assert_close(rot @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                                   torch.tensor([math.cos(t), math.sin(t), 0.0], dtype=torch.float64))  # fmt: skip
        torch.testing.assert_close(rot[:, 2], torch.tensor([0.0, 0, 1], dtype=torch.float64))
    with pytest.raises(
        ValueError, match=r"evaluate: 'vote_scale' must be \(low, high\) with 0 < low <= high"
    ):
        vote_views(2, scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="evaluate: 'votes' must be >= 1; got 0"):
        vote_views(0)


def test_evaluate_voting_is_seeded_and_averages_probabilities():
    torch.manual_seed(0)
    m = rbfnet.create_model("pointnet", num_classes=3, **MODELS["pointnet"]).eval()
    pts = torch.stack(_clouds([24] * 5, seed=4))
    lab = torch.tensor([0, 1, 2, 0, 1])
    ds = TensorDataset(pts, lab)
    plain = rbfnet.evaluate(m, ds, batch_size=2)
    assert plain["votes"] == 1
    assert rbfnet.evaluate(m, ds, batch_size=5, votes=1)["loss"] == pytest.approx(plain["loss"], rel=1e-6)
    a = rbfnet.evaluate(m, ds, batch_size=2, votes=3, vote_seed=7, vote_rotate=True)
    b = rbfnet.evaluate(m, ds, batch_size=5, votes=3, vote_seed=7, vote_rotate=True)
    c = rbfnet.evaluate(m, ds, batch_size=2, votes=3, vote_seed=8, vote_rotate=True)
    assert a["votes"] == 3 and a["loss"] == pytest.approx(b["loss"], rel=1e-6)  # batch size does not matter
    assert a["loss"] != pytest.approx(c["loss"], rel=1e-6)  # the seed does
    # independent computation: mean of the softmax over the hand-built views
    probs = torch.zeros(5, 3)
    with torch.no_grad():
        for s, rot in vote_views(3, seed=7, rotate=True):
            probs += m(s * (pts @ rot.float().T)).softmax(1) / 3
    assert a["loss"] == pytest.approx(float(-probs[torch.arange(5), lab].log().mean()), rel=1e-5)
    assert a["overall_acc"] == pytest.approx(float((probs.argmax(1) == lab).float().mean()))


# ---------------------------------------------------------------------------- BatchNorm recalibration
def _shapes(n, seed, npts=64):
    """A small real task: sphere surface / flat disc / thin rod, 3 classes."""
    g = torch.Generator().manual_seed(seed)
    xs = []
    for i in range(n):
        p = torch.randn(npts, 3, generator=g)
        if i % 3 == 0:
            p = p / p.norm(dim=1, keepdim=True)
        elif i % 3 == 1:
            p[:, 2] *= 0.05
        else:
            p[:, :2] *= 0.05
        xs.append(p / p.norm(dim=1).max())
    return TensorDataset(torch.stack(xs), torch.arange(n) % 3)


def test_recalibrate_bn_rescues_a_short_fine_tune():
    """10 steps: the running statistics still sit near (0, 1) while the RBF responses are tiny, so eval
    mode scores near chance; re-estimated statistics give the accuracy the weights have."""
    tr, te = _shapes(96, seed=0), _shapes(60, seed=1)
    torch.manual_seed(0)
    m = rbfnet.create_model("rbfnet_single", num_classes=3, num_kernels=32, mlp=(32,), head=(32,))
    rbfnet.train(m, tr, epochs=2, batch_size=16, max_steps=10)
    before = rbfnet.evaluate(m, te)["overall_acc"]
    params = {k: v.clone() for k, v in m.named_parameters()}
    m.train()
    assert rbfnet.recalibrate_bn(m, tr) == 96
    assert m.training  # mode restored
    after = rbfnet.evaluate(m, te)["overall_acc"]
    assert before <= 0.7 and after >= 0.95, (before, after)
    for k, v in m.named_parameters():
        torch.testing.assert_close(v, params[k])  # only the running statistics change
    bn = next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm1d))
    assert bn.momentum == 0.1
    # the recipe flag does the same after every epoch
    torch.manual_seed(0)
    m2 = rbfnet.create_model("rbfnet_single", num_classes=3, num_kernels=32, mlp=(32,), head=(32,))
    out = rbfnet.train(m2, tr, te, epochs=2, batch_size=16, max_steps=10, bn_recalibration=True)
    assert out["history"][-1]["val_overall_acc"] >= 0.95
    with pytest.raises(ValueError, match="recalibrate_bn: 'batch_size' must be >= 2; got 1"):
        rbfnet.recalibrate_bn(m, tr, batch_size=1)
