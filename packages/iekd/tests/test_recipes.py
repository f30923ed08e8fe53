"""Recipes: every method runs, losses are wired as documented, checkpoints resume exactly, real-data training."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import iekd
import iekd.functional as IF
from iekd.data import ImageTensorDataset, read_image_folder, stratified_split
from iekd.recipes import METHODS, distill, mutual, sgd, train_factor


def _tiny_loader(n: int = 16, classes: int = 3, size: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.arange(n) % classes
    return DataLoader(
        TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1)
    )


def _nets(device, classes=3):
    torch.manual_seed(0)
    teacher = iekd.models.resnet8(num_classes=classes, base_width=8).to(device)
    student = iekd.models.resnet8(num_classes=classes, base_width=4).to(device)
    return student, teacher


def test_train_factor_reduces_reconstruction(device):
    _, teacher = _nets(device)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    hist = []
    ae = train_factor(
        teacher, _tiny_loader(), epochs=6, callback=hist.append, optimizer=sgd(0.05), progress=False
    )
    assert isinstance(ae, iekd.FactorAutoencoder) and ae.factor_channels == 16
    assert hist[-1]["rec"] < hist[0]["rec"]
    for k, v in teacher.state_dict().items():  # the teacher is frozen: not even BN statistics move
        torch.testing.assert_close(v, teacher_state[k])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_reports(method, device):
    student, teacher = _nets(device)
    hist: list[dict] = []
    res = distill(
        student,
        teacher,
        _tiny_loader(),
        method=method,
        epochs=1,
        factor_epochs=1,
        callback=hist.append,
        eval_loader=_tiny_loader(),
        progress=False,
    )
    assert res.model is student and len(hist) == 1 and 0.0 <= hist[0]["val_acc"] <= 1.0
    keys = set(hist[0])
    expect = {"ce", "total"} | ({"kd"} if "kd" in method else set()) | ({"at"} if "at" in method else set())
    expect |= {"ft"} if method == "ft" else set()
    expect |= {"ofd"} if method in ("ofd", "ie-ofd") else set()
    expect |= {"inherit", "explore"} if method.startswith("ie-") else set()
    assert expect <= keys
    if method.startswith("ie-"):
        assert "ie" in res.extras and "factor" in res.extras


def test_teacher_receives_no_gradient(device):
    student, teacher = _nets(device)
    distill(student, teacher, _tiny_loader(), method="ie-kd", epochs=1, factor_epochs=1, progress=False)
    assert all(p.grad is None for p in teacher.parameters())


def test_ie_at_native_and_bad_args(device):
    student, teacher = _nets(device)
    hist: list[dict] = []
    distill(
        student,
        teacher,
        _tiny_loader(),
        method="ie-at",
        ie_at="native",
        epochs=1,
        callback=hist.append,
        progress=False,
    )
    assert hist[0]["inherit"] >= 0 and hist[0]["explore"] <= 0 and "at" not in hist[0]
    with pytest.raises(ValueError, match="distill: 'method' must be one of"):
        distill(student, teacher, _tiny_loader(), method="crd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"FeatureTap: layer 'layer4' does not exist"):
        distill(student, teacher, _tiny_loader(), method="kd", student_layer="layer4")
    with pytest.raises(ValueError, match=r"distill: AT needs equal spatial sizes; student layer 'layer2'"):
        distill(student, teacher, _tiny_loader(), method="at", student_layer="layer2", epochs=1)


def test_ce_trains_without_teacher(device):
    """``ce`` takes teacher=None and any classifier (no 'feature_layer'); a given teacher is ignored, so the
    run is identical with or without one, and the teacher is neither run nor switched to eval mode."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes, learnable by a small MLP
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)

    def run(teacher):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).to(device)
        return distill(
            net,
            teacher,
            loader,
            method="ce",
            epochs=8,
            optimizer=sgd(0.1),
            eval_loader=loader,
            progress=False,
        )

    res = run(None)
    hist = res.history
    assert set(hist[0]) >= {"ce", "total", "correct", "val_acc"} and "kd" not in hist[0]
    assert hist[-1]["ce"] < hist[0]["ce"] and res.extras == {}
    teacher = torch.nn.Linear(6, 3)  # not even a valid teacher for these inputs' methods: never run
    teacher.train()
    with_teacher = run(teacher).history
    assert teacher.training and all(p.grad is None for p in teacher.parameters())
    for a, b in zip(hist, with_teacher, strict=True):
        assert a["ce"] == pytest.approx(b["ce"], rel=1e-6)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "ce"])
def test_teacher_none_needs_ce(method, device):
    student, _ = _nets(device)
    with pytest.raises(ValueError, match=rf"distill: 'teacher' is required for method='{method}'.*got None"):
        distill(student, None, _tiny_loader(), method=method, epochs=1, progress=False)


def test_distill_rejects_non_modules(device):
    student, _ = _nets(device)
    with pytest.raises(TypeError, match=r"distill: 'teacher' must be a torch\.nn\.Module or None; got str"):
        distill(student, "resnet20", _tiny_loader(), method="kd")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"distill: 'student' must be a torch\.nn\.Module; got function"):
        distill(lambda x: x, None, _tiny_loader(), method="ce")  # type: ignore[arg-type]


class _UntouchableLoader:
    """A loader that fails the test if iterated: argument errors must come before any work."""

    def __iter__(self):
        raise AssertionError("the recipe touched the data before validating its arguments")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"epochs": -1}, ValueError, r"distill: 'epochs' must be an int >= 0; got -1"),
        ({"epochs": 1.5}, TypeError, r"distill: 'epochs' must be an int; got float"),
        ({"factor_epochs": -2}, ValueError, r"distill: 'factor_epochs' must be an int >= 0; got -2"),
        ({"temperature": 0.0}, ValueError, r"distill: 'temperature' must be > 0\.0; got 0\.0"),
        ({"alpha": 1.5}, ValueError, r"distill: 'alpha' must lie in \[0\.0, 1\.0\]; got 1\.5"),
        ({"inherit_weight": -1.0}, ValueError, r"distill: 'inherit_weight' must be >= 0\.0; got -1\.0"),
        ({"explore_weight": "50"}, TypeError, r"distill: 'explore_weight' must be a number; got str"),
        ({"at_weight": float("nan")}, ValueError, r"distill: 'at_weight' must not be NaN"),
        ({"split": 1.0}, ValueError, r"distill: 'split' as a ratio must lie in \(0, 1\); got 1\.0"),
        ({"split": 0}, ValueError, r"distill: 'split' must be an int >= 1; got 0"),
        ({"split": "half"}, TypeError, r"distill: 'split' must be a float ratio or an int channel count"),
        ({"split_mode": "odd"}, ValueError, r"distill: 'split_mode' must be one of \('natural', 'random'\)"),
        ({"explore_encoder": "ema"}, ValueError, r"distill: 'explore_encoder' must be one of"),
        ({"p": 3}, ValueError, r"distill: 'p' must be one of \(1, 2\); got 3"),
        ({"factor_rate": 0.0}, ValueError, r"distill: 'factor_rate' must be > 0\.0; got 0\.0"),
        ({"ie_ofd": "mixed"}, ValueError, r"distill: 'ie_ofd' must be one of \('additive', 'native'\)"),
        ({"ofd_margin": "relu"}, ValueError, r"distill: 'ofd_margin' must be one of \('bn', 'data'\)"),
        ({"ofd_weight": -1e-3}, ValueError, r"distill: 'ofd_weight' must be >= 0\.0"),
        (
            {"teacher_bn": 3},
            TypeError,
            r"distill: 'teacher_bn' must be a module name \(str\) or None; got int",
        ),
        (
            {"factor": torch.nn.Linear(2, 2)},
            TypeError,
            r"distill: 'factor' must be an iekd\.FactorAutoencoder",
        ),
    ],
)
def test_distill_validates_arguments_before_work(kwargs, exc, match, device):
    student, teacher = _nets(device)
    with pytest.raises(exc, match=match):
        distill(student, teacher, _UntouchableLoader(), method="ie-kd", progress=False, **kwargs)


def test_train_factor_and_mutual_validate_arguments_before_work(device):
    student, teacher = _nets(device)
    loader = _UntouchableLoader()
    with pytest.raises(TypeError, match=r"train_factor: 'teacher' must be a torch\.nn\.Module; got NoneType"):
        train_factor(None, loader)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"train_factor: 'rate' must be > 0\.0; got -0\.5"):
        train_factor(teacher, loader, rate=-0.5)
    with pytest.raises(ValueError, match=r"train_factor: 'p' must be one of \(1, 2\); got 0"):
        train_factor(teacher, loader, p=0)
    with pytest.raises(ValueError, match=r"train_factor: 'epochs' must be an int >= 0; got -3"):
        train_factor(teacher, loader, epochs=-3)
    with pytest.raises(ValueError, match=r"mutual: 'net_a' and 'net_b' must be two different networks"):
        mutual(student, student, loader)
    with pytest.raises(TypeError, match=r"mutual: 'net_b' must be a torch\.nn\.Module; got str"):
        mutual(student, "resnet8", loader)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"mutual: 'ie' must be a bool; got str"):
        mutual(student, teacher, loader, ie="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mutual: 'kl_weight' must be >= 0\.0; got -1\.0"):
        mutual(student, teacher, loader, kl_weight=-1.0)
    with pytest.raises(ValueError, match=r"mutual: 'temperature' must be > 0\.0; got 0"):
        mutual(student, teacher, loader, temperature=0)
    with pytest.raises(ValueError, match=r"mutual: 'explore_encoder' must be one of"):
        mutual(student, teacher, loader, ie=True, explore_encoder="free")  # type: ignore[arg-type]


class _CountingLoader:
    """Wraps a loader and counts how often it is iterated (each recipe probe takes one ``iter``)."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader, self.iters = loader, 0

    def __iter__(self):
        self.iters += 1
        return iter(self.loader)


def test_distill_checks_an_int_split_against_the_student_before_training_the_factor(device):
    # Regression (issue 3, known defect): an int split >= C_s used to fail only after the factor auto-encoder
    # had trained. Now the two shape probes (one iter each) are all that touches the data.
    student, teacher = _nets(device)  # student layer3: 16 channels
    loader = _CountingLoader(_tiny_loader())
    with pytest.raises(
        ValueError, match=r"distill: 'split'=16 gives 16 inheritance channels of the student's 16"
    ):
        distill(student, teacher, loader, method="ie-kd", split=16, factor_epochs=3, progress=False)
    assert loader.iters == 2


def test_mutual_checks_class_counts_and_split_before_training(device):
    torch.manual_seed(0)
    a = iekd.models.resnet8(num_classes=3, base_width=4).to(device)
    b = iekd.models.resnet8(num_classes=5, base_width=4).to(device)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    loader = _CountingLoader(_tiny_loader())
    with pytest.raises(
        ValueError, match=r"mutual: 'net_a' and 'net_b' must output logits \(B, K\) with the same "
    ):
        mutual(a, b, loader, epochs=2, progress=False)
    assert loader.iters == 2  # the two probes, no training
    for k, v in a.state_dict().items():  # not even BatchNorm statistics moved (probe in eval mode)
        torch.testing.assert_close(v, state[k])
    b3 = iekd.models.resnet8(num_classes=3, base_width=4).to(device)
    with pytest.raises(ValueError, match=r"mutual \(net_a\): 'split'=20 gives 20 inheritance channels"):
        mutual(a, b3, _tiny_loader(), ie=True, split=20, progress=False)


def test_native_ie_at_freezes_the_unused_encoders(device):
    # Native IE-AT uses only the channel split of its IE head; trainable but unused encoders would make DDP
    # wait for gradients that never come (and the optimizer carry dead parameters).
    student, teacher = _nets(device)
    res = distill(student, teacher, _tiny_loader(), method="ie-at", ie_at="native", epochs=1, progress=False)
    assert not any(p.requires_grad for p in res.extras["ie"].parameters())
    assert all(p.requires_grad for p in res.model.parameters())


@pytest.mark.parametrize("method", ["ie-kd", "ce"])
def test_checkpoint_resume_is_exact(method, device, tmp_path):
    _, teacher = _nets(device)
    factor = train_factor(teacher, _tiny_loader(), epochs=1, progress=False)
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 3

    def run(epochs, ckpt=None, resume=False):
        torch.manual_seed(5)
        student = iekd.models.resnet8(num_classes=3, base_width=4).to(device)
        # The loader shuffles with the global RNG, whose state the checkpoint restores.
        loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
        return distill(
            student,
            teacher if method != "ce" else None,
            loader,
            method=method,
            factor=factor if method != "ce" else None,
            epochs=epochs,
            checkpoint=ckpt,
            resume=resume,
            optimizer=sgd(0.05),
            progress=False,
        )

    full = run(2)
    ckpt = tmp_path / "run.pt"
    run(1, ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = run(2, ckpt, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for (k, v), w in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)
    with pytest.raises(ValueError, match="distill: 'resume=True' needs a 'checkpoint' path"):
        run(1, None, resume=True)


@pytest.mark.parametrize("ie", [False, True])
def test_mutual_runs_and_both_learn(ie, device):
    torch.manual_seed(0)
    a = iekd.models.resnet8(num_classes=3, base_width=4).to(device)
    b = iekd.models.resnet8(num_classes=3, base_width=8).to(device)
    hist: list[dict] = []
    res = mutual(
        a, b, _tiny_loader(), ie=ie, epochs=3, optimizer=sgd(0.05), callback=hist.append, progress=False
    )
    assert res.extras["peer"] is b
    assert hist[-1]["ce_a"] < hist[0]["ce_a"] and hist[-1]["ce_b"] < hist[0]["ce_b"]
    if ie:
        assert {"inherit_a", "explore_b", "rec_a", "rec_b"} <= set(hist[0])
        ae = res.extras["ae_a"]
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ae.parameters())


# --- real task: faces-24id, 8 identities, 16x16, seeded ---------------------------------------------------


def _faces(shared_data):
    root = os.path.join(shared_data, "faces-24id")
    if not os.path.isdir(root):
        pytest.skip("faces-24id not present")
    s = read_image_folder(root, size=16, max_per_class=100)
    keep = s.labels < 8
    x, y = s.images[keep], s.labels[keep]
    tr, te = stratified_split(y, test_fraction=0.25, seed=0)
    train = DataLoader(
        ImageTensorDataset(x[tr], y[tr], augment=True, pad=2),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    test = DataLoader(ImageTensorDataset(x[te], y[te]), batch_size=256)
    return train, test


def test_ie_kd_beats_cross_entropy_on_real_faces(shared_data, device):
    """A teacher is trained on 600 real face crops (8 identities); the same student (same seed, same steps)
    is then trained with CE alone and with IE-KD. IE-KD's losses fall and its held-out accuracy is higher."""
    train, test = _faces(shared_data)
    torch.manual_seed(0)
    teacher = iekd.models.resnet14(num_classes=8).to(device)
    t = distill(
        teacher, None, train, method="ce", epochs=20, optimizer=sgd(0.05), eval_loader=test, progress=False
    )
    assert t.history[-1]["val_acc"] > 0.55  # chance is 0.125
    results = {}
    for method in ("ce", "ie-kd"):
        torch.manual_seed(1)
        student = iekd.models.resnet8(num_classes=8, base_width=8).to(device)
        results[method] = distill(
            student,
            teacher,
            train,
            method=method,
            epochs=12,
            factor_epochs=5,
            optimizer=sgd(0.05),
            eval_loader=test,
            progress=False,
        ).history
    ie = results["ie-kd"]
    assert ie[-1]["kd"] < ie[0]["kd"] and ie[-1]["ce"] < ie[0]["ce"] and ie[-1]["inherit"] < ie[0]["inherit"]
    assert ie[-1]["explore"] < ie[0]["explore"]  # the exploration half moved away from the teacher factor
    assert ie[-1]["val_acc"] > results["ce"][-1]["val_acc"]


# --- OFD / IE-OFD ---------------------------------------------------------------------------------------------


def test_ofd_layers_margin_and_errors_before_work(device):
    student, teacher = _nets(device)
    with pytest.raises(
        ValueError, match=r"distill: teacher has no module 'layer3\.0\.bn3' \('teacher_bn'\); close"
    ):
        distill(student, teacher, _UntouchableLoader(), method="ofd", teacher_bn="layer3.0.bn3")
    with pytest.raises(
        ValueError, match=r"distill: 'teacher_bn' 'layer3\.0\.conv2' must be an affine nn\.BatchNorm2d"
    ):
        distill(student, teacher, _UntouchableLoader(), method="ofd", teacher_bn="layer3.0.conv2")
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3)).to(
        device
    )
    with pytest.raises(
        ValueError,
        match=r"distill: 'student_layer' is required for Sequential \(it has no 'pre_relu_layer'\)",
    ):
        distill(plain, teacher, _UntouchableLoader(), method="ofd")
    # BN margin (OFD code): the Gaussian margin of the teacher's last BatchNorm before the ReLU
    res = distill(student, teacher, _tiny_loader(), method="ofd", epochs=1, progress=False)
    bn = teacher.layer3[0].bn2
    torch.testing.assert_close(res.extras["ofd"].margin, IF.ofd_margin(bn.weight.detach(), bn.bias.detach()))
    # data margin: mean of the negative pre-ReLU responses over the whole loader, computed here independently
    _, teacher2 = _nets(device)
    res = distill(
        student, teacher2, _tiny_loader(), method="ofd", ofd_margin="data", epochs=1, progress=False
    )
    feats = []
    with iekd.FeatureTap(teacher2, teacher2.pre_relu_layer) as tap, torch.no_grad():
        for x, _ in _tiny_loader():
            teacher2(x.to(device))
            feats.append(tap[teacher2.pre_relu_layer])
    torch.testing.assert_close(res.extras["ofd"].margin, IF.ofd_margin_from_features(torch.cat(feats)))


def test_ofd_loss_falls_and_native_ie_ofd_wiring(device):
    student, teacher = _nets(device)
    hist: list[dict] = []
    distill(
        student,
        teacher,
        _tiny_loader(),
        method="ofd",
        epochs=4,
        optimizer=sgd(0.05),
        callback=hist.append,
        progress=False,
    )
    assert hist[-1]["ofd"] < hist[0]["ofd"] and hist[-1]["ce"] < hist[0]["ce"]
    student, teacher = _nets(device)
    hist = []
    res = distill(
        student,
        teacher,
        _tiny_loader(),
        method="ie-ofd",
        ie_ofd="native",
        explore_encoder="frozen",
        epochs=3,
        callback=hist.append,
        progress=False,
    )
    assert (
        "factor" not in res.extras and "ofd" not in hist[0]
    )  # native: no factor auto-encoder, no plain OFD term
    assert not any(p.requires_grad for p in res.extras["ie"].parameters())  # split only
    assert not any(
        p.requires_grad for p in res.extras["ofd_exp"].parameters()
    )  # frozen exploration connector
    assert all(p.requires_grad for p in res.extras["ofd_inh"].parameters())
    assert res.extras["ofd_exp"].inner.connector[1].training is False  # its BatchNorm stays in eval mode
    assert hist[-1]["inherit"] >= 0 and hist[-1]["explore"] <= 0


# --- audit: argument checks that must come before any work, progress bar, resume of every recipe -------------


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda s, t, ld: distill(s, t, ld, method="ie-kd", resume=True),
            ValueError,
            r"distill: 'resume=True' needs a 'checkpoint' path",
        ),
        (
            lambda s, t, ld: train_factor(t, ld, resume=True),
            ValueError,
            r"train_factor: 'resume=True' needs a 'checkpoint' path",
        ),
        (
            lambda s, t, ld: mutual(s, t, ld, resume=True),
            ValueError,
            r"mutual: 'resume=True' needs a 'checkpoint' path",
        ),
        (
            lambda s, t, ld: distill(s, t, ld, method="kd", optimizer=0.1),
            TypeError,
            r"distill: 'optimizer' must be a callable \(params -> torch\.optim\.Optimizer\) or None; got float",
        ),
        (
            lambda s, t, ld: distill(s, None, ld, method="ce", scheduler="step"),
            TypeError,
            r"distill: 'scheduler' must be a callable .* or None; got str",
        ),
        (
            lambda s, t, ld: train_factor(t, ld, callback=[]),
            TypeError,
            r"train_factor: 'callback' must be a callable \(metrics dict -> None\) or None; got list",
        ),
        (
            lambda s, t, ld: mutual(s, t, ld, progress="yes"),
            TypeError,
            r"mutual: 'progress' must be a bool or None; got str",
        ),
        (
            lambda s, t, ld: distill(s, None, ld, method="ce", checkpoint=3),
            TypeError,
            r"distill: 'checkpoint' must be a path \(str or os\.PathLike\) or None; got int",
        ),
        (
            lambda s, t, ld: distill(s, t, 5, method="kd"),
            TypeError,
            r"distill: 'loader' must be an iterable of \(images, labels\) batches; got int",
        ),
    ],
)
def test_recipes_validate_run_arguments_before_work(call, exc, match, device):
    student, teacher = _nets(device)
    with pytest.raises(exc, match=match):
        call(student, teacher, _UntouchableLoader())


def test_empty_loader_is_a_clear_error(device):
    student, teacher = _nets(device)
    empty = DataLoader(TensorDataset(torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)
    with pytest.raises(ValueError, match=r"distill: 'loader' yields no batch"):
        distill(student, None, empty, method="ce")
    with pytest.raises(ValueError, match=r"train_factor: 'loader' yields no batch"):
        train_factor(teacher, empty)
    with pytest.raises(ValueError, match=r"mutual: 'loader' yields no batch"):
        mutual(student, teacher, empty)

    class Unsized:  # no len(): found empty by the shape probe, still before any training
        def __iter__(self):
            return iter(())

    with pytest.raises(ValueError, match=r"distill: 'loader' yields no batch"):
        distill(student, teacher, Unsized(), method="ie-kd")


def test_bad_batch_names_what_it_got(device):
    student, _ = _nets(device)
    loader = [torch.randn(4, 3, 8, 8)]  # images without labels
    with pytest.raises(
        ValueError, match=r"recipes: each batch must be a tuple \(images, labels\); got Tensor"
    ):
        distill(student, None, loader, method="ce", epochs=1, progress=False)


def test_progress_bar_when_asked(device, capsys):
    # progress=True forces the tqdm bar (None would show it only on a TTY, and pytest's stderr is not one).
    _, teacher = _nets(device)
    train_factor(teacher, _tiny_loader(), epochs=1, progress=True)
    assert "train_factor 1/1" in capsys.readouterr().err
    train_factor(teacher, _tiny_loader(), epochs=1, progress=None)
    assert "train_factor" not in capsys.readouterr().err


def test_train_factor_resume_is_exact(device, tmp_path):
    _, teacher = _nets(device)

    def run(epochs, ckpt=None, resume=False):
        torch.manual_seed(7)
        loader = DataLoader(
            TensorDataset(torch.randn(16, 3, 8, 8), torch.zeros(16, dtype=torch.long)), 8, True
        )
        return train_factor(
            teacher,
            loader,
            epochs=epochs,
            checkpoint=ckpt,
            resume=resume,
            optimizer=sgd(0.05),
            progress=False,
        )

    full = run(2)  # each run draws the same data and shuffles from the seeded global RNG
    ckpt = tmp_path / "ae.pt"
    run(1, ckpt)
    resumed = run(2, ckpt, resume=True)
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_mutual_resume_is_exact(device, tmp_path):
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 3

    def run(epochs, ckpt=None, resume=False):
        torch.manual_seed(5)
        a = iekd.models.resnet8(num_classes=3, base_width=4).to(device)
        b = iekd.models.resnet8(num_classes=3, base_width=4).to(device)
        loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
        return mutual(
            a,
            b,
            loader,
            ie=True,
            epochs=epochs,
            checkpoint=ckpt,
            resume=resume,
            optimizer=sgd(0.05),
            progress=False,
        )

    full = run(2)
    ckpt = tmp_path / "dml.pt"
    run(1, ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = run(2, ckpt, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for net in ("model", "peer"):
        got = resumed.model if net == "model" else resumed.extras["peer"]
        ref = full.model if net == "model" else full.extras["peer"]
        for (k, v), w in zip(ref.state_dict().items(), got.state_dict().values()):
            torch.testing.assert_close(v, w, msg=f"{net}.{k}")


def test_ie_dml_raw_feature_option(device):
    # The alternative IE-DML reading (README Deviations 6): the peer's raw feature is the "teacher factor", no
    # online auto-encoders. Two widths, so the IE encoders must map each half to the PEER's channel count.
    torch.manual_seed(0)
    a = iekd.models.resnet8(num_classes=3, base_width=4).to(device)  # layer3: 16 channels
    b = iekd.models.resnet8(num_classes=3, base_width=8).to(device)  # layer3: 32 channels
    hist: list[dict] = []
    res = mutual(
        a,
        b,
        _tiny_loader(),
        ie=True,
        ie_factor="feature",
        epochs=3,
        optimizer=sgd(0.05),
        callback=hist.append,
        progress=False,
    )
    assert "ae_a" not in res.extras and "rec_a" not in hist[0]
    assert res.extras["ie_a"].teacher_channels == 32 and res.extras["ie_b"].teacher_channels == 16
    assert hist[-1]["ce_a"] < hist[0]["ce_a"] and hist[-1]["ce_b"] < hist[0]["ce_b"]
    assert hist[0]["explore_a"] <= 0 <= hist[0]["inherit_b"]
    with pytest.raises(
        ValueError, match=r"mutual: 'ie_factor' must be one of \('online', 'feature'\); got 'ae'"
    ):
        mutual(a, b, _UntouchableLoader(), ie=True, ie_factor="ae")  # type: ignore[arg-type]
