"""Careless-user inputs (issue 24): bad checkpoints, file permissions, non-finite loss inputs, CLI errors."""

from __future__ import annotations

import os
import sys

import pytest
import torch

import iekd
import iekd.functional as IF
from iekd.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
REPRODUCE = os.path.join(HERE, "..", "reproduce")


@pytest.fixture
def bad_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, state_dict={"w": torch.ones(4)})
    raw = good.read_bytes()
    files = {
        "truncated": raw[: len(raw) // 2],
        "garbage": b"this is not a checkpoint\n" * 20,
        "empty": b"",
    }
    out = {}
    for name, payload in files.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(payload)
        out[name] = path
    return out


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_load_checkpoint_names_file_and_says_not_iekd(bad_files, kind):
    path = bad_files[kind]
    with pytest.raises(
        CheckpointError, match=rf"load_checkpoint: '.*{kind}\.pt' is not a valid iekd checkpoint"
    ):
        load_checkpoint(path)


def test_foreign_torch_file_is_not_an_iekd_checkpoint(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(
        ValueError, match=r"foreign\.pt' is not a valid iekd checkpoint \(not written by iekd"
    ):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_model_builders_name_bad_weight_files(bad_files, kind):
    with pytest.raises(CheckpointError, match=rf"resnet20: '.*{kind}\.pt' is not a valid iekd checkpoint"):
        iekd.models.create_model("resnet20", weights=bad_files[kind])
    with pytest.raises(CheckpointError, match=rf"wrn_16_1: '.*{kind}\.pt' is not a valid iekd checkpoint"):
        iekd.models.wrn_16_1(weights=bad_files[kind])


def test_resume_from_garbage_checkpoint_is_clear(bad_files):
    from iekd.recipes import distill

    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 3, (4,))
    with pytest.raises(CheckpointError, match=r"garbage\.pt' is not a valid iekd checkpoint"):
        distill(
            iekd.models.resnet8(num_classes=3),
            None,
            [(x, y)],
            method="ce",
            epochs=1,
            checkpoint=bad_files["garbage"],
            resume=True,
        )


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_checkpoint: no checkpoint file at '.*nope\.pt'"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_checkpoint_has_normal_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "ck.pt"
        save_checkpoint(path, state_dict={"w": torch.zeros(1)})
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    finally:
        os.umask(old)


# ---- opt-in finiteness checks of the losses ---------------------------------------------------------------

_FINITE_CASES = [
    ("kd_loss", lambda a, b, **k: IF.kd_loss(a, b, **k), (4, 5), "student_logits"),
    ("dml_loss", lambda a, b, **k: IF.dml_loss(a, b, **k), (4, 5), "logits"),
    ("factor_distance", lambda a, b, **k: IF.factor_distance(a, b, **k), (2, 3, 4, 4), "x"),
    ("inheritance_loss", lambda a, b, **k: IF.inheritance_loss(a, b, **k), (2, 3, 4, 4), "student_factor"),
    ("exploration_loss", lambda a, b, **k: IF.exploration_loss(a, b, **k), (2, 3, 4, 4), "student_factor"),
    (
        "factor_transfer_loss",
        lambda a, b, **k: IF.factor_transfer_loss(a, b, **k),
        (2, 3, 4, 4),
        "student_factor",
    ),
    (
        "reconstruction_loss",
        lambda a, b, **k: IF.reconstruction_loss(a, b, **k),
        (2, 3, 4, 4),
        "reconstruction",
    ),
    (
        "attention_transfer_loss",
        lambda a, b, **k: IF.attention_transfer_loss(a, b, **k),
        (2, 3, 4, 4),
        "student_feature",
    ),
    ("partial_l2_loss", lambda a, b, **k: IF.partial_l2_loss(a, b, **k), (2, 3, 4, 4), "student"),
]


@pytest.mark.parametrize(("fn", "call", "shape", "first"), _FINITE_CASES, ids=[c[0] for c in _FINITE_CASES])
def test_losses_check_finite_on_request(fn, call, shape, first):
    a, b = torch.randn(shape), torch.randn(shape)
    a.view(-1)[0] = float("nan")
    assert not torch.isfinite(call(a, b)).all()  # off by default: no device sync on the hot path
    with pytest.raises(ValueError, match=rf"{fn}: '{first}' must be finite; got 1 NaN/inf"):
        call(a, b, check_finite=True)
    a.view(-1)[0] = 0.0
    b.view(-1)[1] = float("inf")
    with pytest.raises(ValueError, match=rf"{fn}: '.*' must be finite; got 1 NaN/inf"):
        call(a, b, check_finite=True)
    assert torch.isfinite(call(a, torch.randn(shape), check_finite=True))


def test_ofd_loss_checks_finite_on_request():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t[1, 2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"ofd_loss: 'teacher_feature' must be finite"):
        IF.ofd_loss(s, t, torch.full((3,), -0.5), check_finite=True)


def test_modules_check_finite_on_request():
    ie = iekd.InheritExploreLoss(8, 4, check_finite=True)
    f, fac = torch.randn(2, 8, 4, 4), torch.randn(2, 4, 4, 4)
    fac[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"InheritExploreLoss: 'teacher_factor' must be finite"):
        ie(f, fac)
    ie.check_finite = False  # a plain attribute
    assert not torch.isfinite(ie(f, fac).total)
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"kd_loss: 'teacher_logits' must be finite"):
        iekd.KDLoss(check_finite=True)(z, torch.full((3, 4), float("inf")))
    for mod in (iekd.InheritanceLoss, iekd.ExplorationLoss, iekd.FactorTransferLoss):
        with pytest.raises(ValueError, match=r"must be finite"):
            mod(check_finite=True)(fac, torch.randn_like(fac))
    with pytest.raises(ValueError, match=r"attention_transfer_loss: 'student_feature' must be finite"):
        iekd.AttentionTransferLoss(check_finite=True)(
            torch.full((1, 2, 2, 2), float("nan")), torch.ones(1, 2, 2, 2)
        )
    with pytest.raises(ValueError, match=r"dml_loss: 'logits' must be finite"):
        iekd.DMLLoss(check_finite=True)(torch.full((2, 3), float("nan")), torch.ones(2, 3))


def test_finite_check_is_skipped_while_compiling(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    out = IF.kd_loss(torch.full((2, 3), float("nan")), torch.ones(2, 3), check_finite=True)
    assert torch.isnan(out)


# ---- command-line scripts: one clear line, no traceback -----------------------------------------------------


def _script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_iekd_{name}", os.path.join(REPRODUCE, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, REPRODUCE)
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(REPRODUCE)
    return mod


@pytest.mark.parametrize("name", ["run", "cifar10"])
def test_reproduction_scripts_report_user_errors_in_one_line(tmp_path, capsys, name):
    main = _script(name).main
    for argv in (["--data", str(tmp_path / "nope")], ["--data", str(tmp_path), "--threads", "0"]):
        assert main(["--out", str(tmp_path / "out"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert ("nope" in err[0]) if "nope" in argv[-1] else ("threads" in err[0] or "not found" in err[0])
    assert main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "nope"), "--verbose"]) == 2
    assert "Traceback" in capsys.readouterr().err  # the traceback only on request


def test_cifar10_report_rebuilds_from_run_files_alone(tmp_path):
    """``cifar10.py --report-only``: rows, paired intervals and pending units come from runs/*.json only."""
    import json
    import statistics

    from scipy import stats

    mod = _script("cifar10")
    runs = tmp_path / "runs" / "cpu"
    runs.mkdir(parents=True)
    kd = {1: 60.0, 2: 61.0, 3: 59.5}
    ie = {1: 61.0, 2: 61.5, 3: 61.5}
    meta = {
        "data_sizes": {"train": 4000, "val": 1000, "test": 10000},
        "settings": {},
        "torch": "x",
        "iekd": "y",
    }
    for method, accs in (("kd", kd), ("ie-kd", ie)):
        for seed, acc in accs.items():
            unit = f"{method}-s{seed}"
            payload = {
                "unit": unit,
                "kind": "student",
                "method": method,
                "seed": seed,
                "test_acc": acc,
                **meta,
            }
            payload.update(encoder="frozen" if method == "ie-kd" else None, cpu_s=1.0)
            payload["lambda"] = 50.0 if method == "ie-kd" else None
            (runs / f"{unit}.json").write_text(json.dumps(payload))
    assert mod.main(["--out", str(tmp_path), "--report-only"]) == 0
    report = (tmp_path / "report.md").read_text()
    data = json.loads((tmp_path / "results.json").read_text())["cifar10"]["cpu"]
    row = next(r for r in data["main"] if r["row"].startswith("ie-kd") and not r.get("pending"))
    d = [ie[s] - kd[s] for s in (1, 2, 3)]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(d) / 3**0.5  # independent t quantile
    assert row["paired_vs_base"]["mean"] == pytest.approx(statistics.mean(d))
    assert row["paired_vs_base"]["ci"] == pytest.approx(
        [statistics.mean(d) - half, statistics.mean(d) + half], abs=1e-3
    )
    assert "| ce |  | 0/5 | pending |" in report and "teacher-resnet56" in data["pending"]
    assert "Status: 6 of " in report
