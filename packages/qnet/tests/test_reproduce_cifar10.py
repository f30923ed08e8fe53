"""The CIFAR-10 reproduction script (``reproduce/cifar10.py``): queue order, resumability, report from runs/ alone."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "reproduce", "cifar10.py")


@pytest.fixture(scope="module")
def c10():
    if not os.path.exists(SCRIPT):
        pytest.skip("reproduce/cifar10.py is not next to the tests (installed package only)")
    spec = importlib.util.spec_from_file_location("qnet_reproduce_cifar10", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake(unit, acc, epochs=3):
    r = dict(unit)
    curve = [{"epoch": e + 1, "val_hard": acc - 3 + e, "val_soft": acc - 1} for e in range(epochs)]
    r.update(curve=curve, cpu_s=60.0)
    if unit["kind"] == "val":
        r["val_acc"] = acc
    else:
        r["test_acc"] = acc
    return r


def test_queue_order_and_choice(c10):
    vals = c10.validation_units("cpu")
    assert vals[0]["method"] == "fp"
    done = {u["id"]: _fake(u, 50.0 + (10 if u.get("lr") == c10.LR_GRID[-1] else 0)) for u in vals}
    chosen = c10.choose(done)
    assert chosen["qn"]["lr"] == c10.LR_GRID[-1] and chosen["qn"]["c"] == c10.C_GRID[0]
    units = c10.main_units(c10.SCHEDULES["cpu"], chosen)
    ids = [u["id"] for u in units]
    assert len(ids) == len(set(ids))
    # float reference first, then the W2 / W2/A2 qnet-vs-LSQ pairs
    assert [u["method"] for u in units[:3]] == ["fp"] * 3
    assert {(u["method"], u["setting"]) for u in units[3:15]} == {
        ("qn", "W2"),
        ("lsq", "W2"),
        ("qn", "W2/A2"),
        ("lsq", "W2/A2"),
    }
    # torch.ao only on uniform grids
    assert not [u for u in units if u["method"] == "tao" and u["setting"] in ("W1", "W3(±4)", "W1/A2")]


def test_report_from_runs_alone(c10, tmp_path):
    sched = c10.SCHEDULES["cpu"]
    folder = tmp_path / "runs" / "cpu"
    folder.mkdir(parents=True)
    vals = c10.validation_units("cpu")
    for u in vals:
        (folder / f"{u['id']}.json").write_text(json.dumps(_fake(u, 60.0)))
    chosen = c10.choose({u["id"]: _fake(u, 60.0) for u in vals})
    for u in c10.main_units(sched, chosen)[:9]:  # fp x3, then qn/lsq W2 seeds 0-2
        acc = {"fp": 80.0, "qn": 70.0 + u["seed"], "lsq": 69.0}[u["method"]]
        (folder / f"{u['id']}.json").write_text(json.dumps(_fake(u, acc)))
    assert c10.main(["--out", str(tmp_path), "--report-only"]) == 0
    text = (tmp_path / "cifar10.md").read_text()
    # paired differences qnet - LSQ = 1, 2, 3: mean 2, t-interval 2 +- 4.303 * 1 / sqrt(3) = [-0.48, 4.48]
    assert "+2.00 [-0.48, +4.48] (n=3)" in text
    assert "main_qn_W2-A2_seed0" in text.split("## Pending units")[1]
    assert (tmp_path / "cifar10_soft_hard_gap.png").stat().st_size > 0


def test_tao_model_places_fake_quant_before_convs(c10):
    from qnet.models import CifarResNetA

    net = c10._tao_model(CifarResNetA(20), "W2/A2", torch.randn(8, 3, 32, 32))
    from torch.ao.nn.intrinsic.qat import ConvBn2d
    from torch.ao.quantization import FakeQuantize

    conv = net.layer1[0].conv1
    assert isinstance(conv[0], FakeQuantize) and isinstance(conv[1], ConvBn2d)
    assert isinstance(net.layer1[0].bn1, torch.nn.Identity)
    assert isinstance(net.conv1, torch.nn.Conv2d) and type(net.conv1) is torch.nn.Conv2d  # first conv float
    assert (conv[0].quant_min, conv[0].quant_max) == (0, 3)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_missing_data_is_one_line(c10, tmp_path, capsys):
    assert c10.main(["--out", str(tmp_path), "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0] and "--verbose" in err[0]


def test_a_diverged_candidate_is_never_chosen(c10):
    # a blown-up run records val_acc None (JSON has no NaN); it must not win the choice nor break the report
    vals = [u for u in c10.validation_units("cpu") if u["method"] == "qn"]
    done = {u["id"]: _fake(u, 40.0 + i) for i, u in enumerate(vals)}
    done[vals[-1]["id"]]["val_acc"] = None
    done[vals[0]["id"]], first = dict(done[vals[0]["id"]]), vals[0]["id"]
    done[first]["val_acc"] = None
    chosen = c10.choose(done)
    assert chosen["qn"]["id"] == vals[-2]["id"]


def test_longer_schedule_units_and_section(c10, tmp_path):
    sched = c10.SCHEDULES["cpu"]
    vals = c10.validation_units("cpu")
    chosen = c10.choose({u["id"]: _fake(u, 60.0) for u in vals})
    units = c10.main_units(sched, chosen)
    longs = [u for u in units if u["kind"] == "long"]
    # queued last: qnet and LSQ at W2 then W2/A2, first seed, 4x the epochs, qnet with its chosen c
    assert units[-len(longs) :] == longs
    assert [(u["method"], u["setting"]) for u in longs] == [
        ("qn", "W2"),
        ("lsq", "W2"),
        ("qn", "W2/A2"),
        ("lsq", "W2/A2"),
    ]
    assert {u["epochs"] for u in longs} == {4 * sched["epochs"]} and longs[0]["c"] == chosen["qn"]["c"]
    folder = tmp_path / "runs" / "cpu"
    folder.mkdir(parents=True)
    for u in vals:
        (folder / f"{u['id']}.json").write_text(json.dumps(_fake(u, 60.0)))
    short = [u for u in units if u["kind"] == "main" and u["seed"] == 0 and u["setting"] == "W2"]
    short = {u["id"]: u for u in short if u["method"] in ("qn", "lsq")}
    for u in short.values():
        (folder / f"{u['id']}.json").write_text(json.dumps(_fake(u, {"qn": 65.0, "lsq": 75.0}[u["method"]])))
    for u in longs[:2]:  # the W2 pair finished, W2/A2 pending
        r = _fake(u, {"qn": 74.5, "lsq": 76.0}[u["method"]], epochs=u["epochs"])
        (folder / f"{u['id']}.json").write_text(json.dumps(r))
    assert c10.main(["--out", str(tmp_path), "--report-only"]) == 0
    text = (tmp_path / "cifar10.md").read_text()
    section = text.split("## Longer schedule")[1].split("## Pending units")[0]
    assert "| W2 | 74.50 | 76.00 | -1.50 | 65.00 | 75.00 |" in section
    assert "| W2/A2 | pending | pending | pending |" in section
    # the gap row of the finished qnet unit: soft - hard = 2 - e at epoch e + 1 of the fake curve
    assert "| W2 soft - hard | +2.00 | +1.00 | -1.00 |" in section
    assert "| W2 hard | 71.50 | 72.50 | 74.50 |" in section
    assert (tmp_path / "cifar10_soft_hard_gap_long.png").stat().st_size > 0
    assert "long24_qn_W2-A2_seed0" in text.split("## Pending units")[1]
