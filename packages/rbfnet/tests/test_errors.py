"""Bad inputs to every public entry point raise TypeError/ValueError naming the function and the argument,
before any work is done (audit of 0.2.0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rbfnet
from rbfnet import data, ops
from rbfnet.profiling import measure_model

SMALL = {"num_kernels": 8, "mlp": (8,), "head": (8,)}


class _Sized(torch.utils.data.Dataset):
    """Two samples; ``tuple_items`` returns (points, label) tuples instead of the documented dicts."""

    def __init__(self, tuple_items: bool = False) -> None:
        self.tuple_items = tuple_items

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        pts = torch.rand(16, 3)
        return (pts, i) if self.tuple_items else {"points": pts, "label": torch.tensor(i)}


class _Odd(_Sized):
    def __getitem__(self, i: int):
        return {"xyz": torch.rand(16, 3)}


def test_train_arguments():
    m = rbfnet.RBFNet(3, **SMALL)
    ds = _Sized()
    with pytest.raises(TypeError, match=r"train: 'model' must be a torch\.nn\.Module; got str"):
        rbfnet.train("net", ds)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train: 'train_set' must be a Dataset with __len__; got int"):
        rbfnet.train(m, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train: 'epochs' must be an int >= 1; got str"):
        rbfnet.train(m, ds, epochs="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train: 'lr_step' must be an int >= 1; got 0"):
        rbfnet.train(m, ds, lr_step=0)
    with pytest.raises(ValueError, match=r"train: 'lr' must be a finite number > 0\.0; got -1"):
        rbfnet.train(m, ds, lr=-1)
    with pytest.raises(ValueError, match=r"train: 'lr' must be a finite number > 0\.0; got nan"):
        rbfnet.train(m, ds, lr=float("nan"))
    with pytest.raises(ValueError, match=r"train: 'weight_decay' must be a finite number >= 0\.0; got -1\.0"):
        rbfnet.train(m, ds, weight_decay=-1.0)
    with pytest.raises(ValueError, match=r"train: 'lr_gamma' must be a finite number > 0\.0; got 0"):
        rbfnet.train(m, ds, lr_gamma=0)
    with pytest.raises(
        ValueError, match=r"train: 'label_smoothing' must be a finite number in \[0\.0, 1\.0\]"
    ):
        rbfnet.train(m, ds, label_smoothing=2.0)
    with pytest.raises(TypeError, match="train: 'max_steps' must be an int; got float"):
        rbfnet.train(m, ds, max_steps=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train: 'num_workers' must be >= 0; got -1"):
        rbfnet.train(m, ds, num_workers=-1)
    # samples that are not the documented dicts: named, not a KeyError/TypeError from deep inside
    # (points, label) tuples are accepted since 0.3.0 (issue 22); other forms are named
    assert len(rbfnet.train(m, _Sized(tuple_items=True), epochs=1)["history"]) == 1
    with pytest.raises(TypeError, match="train/evaluate: each batch must be a dict with 'points'"):
        rbfnet.train(m, _Odd(), epochs=1)


def test_evaluate_and_metrics_arguments():
    m = rbfnet.RBFNet(3, **SMALL)
    with pytest.raises(TypeError, match=r"evaluate: 'model' must be a torch\.nn\.Module; got str"):
        rbfnet.evaluate("net", _Sized())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="evaluate: 'dataset' must be a Dataset"):
        rbfnet.evaluate(m, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="evaluate: 'batch_size' must be >= 1; got 0"):
        rbfnet.evaluate(m, _Sized(), batch_size=0)
    with pytest.raises(ValueError, match="evaluate: 'num_classes' must be >= 1; got 0"):
        rbfnet.evaluate(m, _Sized(), num_classes=0)
    with pytest.raises(ValueError, match=r"classification_metrics: 'pred' must lie in \[0, 3\)"):
        rbfnet.classification_metrics(np.array([0, 5]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match=r"classification_metrics: 'target' must lie in \[0, 3\)"):
        rbfnet.classification_metrics(np.array([0, 1]), np.array([-1, 1]), 3)
    with pytest.raises(TypeError, match="classification_metrics: 'num_classes' must be an int; got float"):
        rbfnet.classification_metrics(np.array([0]), np.array([0]), 3.0)  # type: ignore[arg-type]


def test_registry_checkpoint_and_profiling_arguments(tmp_path):
    with pytest.raises(TypeError, match="create_model: 'name' must be a str; got list"):
        rbfnet.create_model(["pointnet"], num_classes=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list_models: 'pattern' must be a str; got int"):
        rbfnet.list_models(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"count_parameters: 'model' must be a torch\.nn\.Module; got dict"):
        rbfnet.count_parameters({})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"save_checkpoint: 'model' must be a torch\.nn\.Module; got dict"):
        rbfnet.save_checkpoint(tmp_path / "x.pt", {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"load_checkpoint: 'path' must be a str or os\.PathLike; got int"):
        rbfnet.load_checkpoint(3)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())  # nothing written before the error
    with pytest.raises(ValueError, match="measure_model: 'batch_size' must be >= 1; got 0"):
        measure_model(rbfnet.PointNet(3), batch_size=0)
    with pytest.raises(ValueError, match="measure_model: 'repeats' must be >= 1; got 0"):
        measure_model(rbfnet.PointNet(3), repeats=0)


def test_model_constructor_arguments():
    with pytest.raises(TypeError, match="RBFNet: 'scales' must be a sequence of numbers; got float"):
        rbfnet.RBFNet(3, scales=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RBFNet: 'scales' must be a finite number > 0"):
        rbfnet.RBFNet(3, scales=(1.0, -2.0))
    with pytest.raises(ValueError, match="RBFNet: 'mlp' must be >= 1; got 0"):
        rbfnet.RBFNet(3, mlp=(0,))
    with pytest.raises(TypeError, match="RBFNet: 'head' must be a sequence of ints; got str"):
        rbfnet.RBFNet(3, head="512")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"RBFNet: 'dropout' must be a number in \[0, 1\); got str"):
        rbfnet.RBFNet(3, dropout="0.3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"RBFNet: 'width_init' must be one of \('auto',\); got 'wide'"):
        rbfnet.RBFNet(3, width_init="wide")
    with pytest.raises(TypeError, match="RBFLayer: 'width_init' must be a number; got NoneType"):
        rbfnet.RBFLayer(4, width_init=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RBFLayer: 'center_init' must be one of"):
        rbfnet.RBFLayer(4, center_init=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PointNet2SSG: 'sa1\[1\] \(radius\)' must be a finite number > 0"):
        rbfnet.PointNet2SSG(3, sa1=(16, -0.2, 8))
    with pytest.raises(ValueError, match=r"PointNet2SSG: 'sa2\[0\] \(num_centroids\)' must be >= 1; got 0"):
        rbfnet.PointNet2SSG(3, sa2=(0, 0.4, 8))
    with pytest.raises(TypeError, match="PointNet2SSG: 'sa1' must be"):
        rbfnet.PointNet2SSG(3, sa1=(16, 0.2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="PointNet: 'mlp' must hold at least one width"):
        rbfnet.PointNet(3, mlp=())


@pytest.mark.parametrize("name", ["rbfnet_single", "rbfnet_kernelwise", "pointnet", "pointnet2_ssg"])
def test_forward_rejects_dtype_mismatch(device, name):
    kw = (
        {"sa1": (8, 0.4, 4), "sa2": (4, 0.8, 4), "mlps": ((8,), (8,), (8,))}
        if name == "pointnet2_ssg"
        else {}
    )
    if name.startswith("rbfnet"):
        kw = {"num_kernels": 8, "head": (8,)}
    model = rbfnet.create_model(name, num_classes=3, **kw).to(device).eval()
    x = torch.rand(2, 32, 3, device=device, dtype=torch.float64)
    fn = {"pointnet": "PointNet", "pointnet2_ssg": "PointNet2SSG"}.get(name, "RBFNet")
    with pytest.raises(TypeError, match=rf"{fn}\.forward_features: 'points' has dtype torch.float64 but the"):
        model(x)
    with torch.no_grad():  # the same model in float64 accepts them
        assert model.double()(x).dtype == torch.float64


def test_ops_and_data_arguments():
    p = torch.rand(2, 16, 3)
    with pytest.raises(TypeError, match="ball_query: 'radius' must be a number; got str"):
        ops.ball_query(p, p, "0.2", 4)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"gather_points: 'idx' must lie in \[0, N=16\); got values in \[0, 99\]"
    ):
        ops.gather_points(p, torch.tensor([[99], [0]]))
    with pytest.raises(TypeError, match="normalize_unit_sphere: 'points' must be a numpy array; got list"):
        data.normalize_unit_sphere([[1.0, 2.0, 3.0]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RandomScaleShift: 'scale' must be a pair of numbers"):
        data.RandomScaleShift(scale=(1.0,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Jitter: 'sigma' and 'clip' must be numbers"):
        data.Jitter(sigma="0.01")  # type: ignore[arg-type]
    tri = np.eye(3)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sample_mesh_surface: 'num_points' must be >= 1; got 0"):
        data.sample_mesh_surface(tri, np.array([[0, 1, 2]]), 0, rng)
    with pytest.raises(ValueError, match=r"sample_mesh_surface: 'faces' must index \[0, V=3\)"):
        data.sample_mesh_surface(tri, np.array([[0, 1, 5]]), 4, rng)
    with pytest.raises(TypeError, match=r"sample_mesh_surface: 'rng' must be a numpy\.random\.Generator"):
        data.sample_mesh_surface(tri, np.array([[0, 1, 2]]), 4, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stack_dataset: 'dataset' must be a Dataset with __len__; got int"):
        data.stack_dataset(3)  # type: ignore[arg-type]


def test_dataset_arguments(tmp_path):
    (tmp_path / "a" / "train").mkdir(parents=True)
    np.save(tmp_path / "a" / "train" / "x.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(
        ValueError, match="PointCloudFolder: 'max_per_class' must be an int >= 1 or None; got 0"
    ):
        data.PointCloudFolder(tmp_path, "train", max_per_class=0)
    with pytest.raises(ValueError, match="ModelNetMesh: 'samples_per_mesh' must be an int >= 1; got 0"):
        data.ModelNetMesh(tmp_path, "train", samples_per_mesh=0)


@pytest.mark.cuda
def test_forward_rejects_points_on_another_device(device):
    # runs in the cuda session only: a model on the GPU given CPU points names both devices
    model = rbfnet.RBFNet(3, **SMALL, device=device).eval()
    with pytest.raises(ValueError, match=r"RBFNet\.forward_features: 'points' is on cpu but the model's"):
        model(torch.rand(2, 16, 3))
