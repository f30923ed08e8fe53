"""Smoke test of the reproduction script (``reproduce/run.py``, not part of the wheel) on a tiny configuration.

It keeps the script in step with the library's API: the recorded report in ``reports/qnet`` is only as good as
the script that writes it.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "reproduce", "run.py")


@pytest.fixture(scope="module")
def run_module():
    if not os.path.exists(SCRIPT):
        pytest.skip("reproduce/run.py is not next to the tests (installed package only)")
    spec = importlib.util.spec_from_file_location("qnet_reproduce_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_reproduction_with_width_study(run_module, shared_data, device, tmp_path):
    if not os.path.isdir(os.path.join(shared_data, "faces-24id")):
        pytest.skip("faces-24id not available")
    argv = ["--out", str(tmp_path), "--data", shared_data, "--quick", "--settings", "W2", "--widths", "8,12"]
    argv += ["--device", device.type]
    assert run_module.main(argv) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    # FP32 row + one setting; every accuracy is a percentage and the ternary qnet run beats chance (1/24)
    assert [r["setting"] for r in res["rows"]] == ["FP32 (start point)", "W2 qnet vs STE"]
    assert 100 / 24 < res["rows"][0]["ours"] <= 100
    assert res["runs"]["W2"]["qn"][0]["acc"] > 1 / 24
    widths = res["width_study"]
    assert [w["width"] for w in widths] == [8, 12]
    for w in widths:
        assert 0 <= w["fp"] <= 100
        for setting in run_module.WIDTH_SETTINGS:
            for method in ("qn", "ste"):
                accs = w[f"{setting} {method}"]
                assert len(accs) == 1 and all(0 <= a <= 100 for a in accs)
    report = (tmp_path / "report.md").read_text()
    assert "Width study" in report and "| 12 |" in report
    assert (tmp_path / "binary_wa_vs_width.png").stat().st_size > 0


@pytest.mark.parametrize("widths", ["8,x", "0"])
def test_bad_widths_exit_with_usage_error(run_module, shared_data, tmp_path, widths, capsys):
    if not os.path.isdir(os.path.join(shared_data, "faces-24id")):
        pytest.skip("faces-24id not available")
    assert run_module.main(["--out", str(tmp_path), "--data", shared_data, "--widths", widths]) == 2
    assert "--widths" in capsys.readouterr().err
