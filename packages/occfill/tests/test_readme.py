"""The README quick start (its first python block) runs as written."""

from __future__ import annotations

import os
import re


def test_readme_quick_start_runs(tmp_path, monkeypatch):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "README.md"), encoding="utf-8") as fh:
        block = re.search(r"```python\n(.*?)```", fh.read(), re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README quick start", "exec"), {})
