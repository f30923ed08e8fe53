"""Smoke test of the reproduction script (``reproduce/run.py``, not part of the wheel) in its --quick mode.

It keeps the script in step with the library's API: the recorded report in ``reports/hairsynth`` is only as good as
the script that writes it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "reproduce" / "run.py"


def test_reproduction_script_runs_and_writes_its_report(shared_data, device, tmp_path):
    if not SCRIPT.exists():
        pytest.skip("reproduce/run.py is not next to the tests (installed package only)")
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--out",
        str(tmp_path),
        "--data",
        shared_data,
        "--quick",
        "--device",
        device.type,
    ]
    # the timeout only guards against a hang; nothing here measures speed
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert rows and (tmp_path / "report.md").read_text().startswith("# ")
    assert all(math.isfinite(r["ours"]) for r in rows if r["ours"] is not None)
    psnr = [r["ours"] for r in rows if r["metric"] == "masked_psnr"]
    assert psnr and all(0 < p < 100 for p in psnr)
