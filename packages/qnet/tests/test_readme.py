"""The README quick start runs verbatim (the integration tests run it again in a fresh venv)."""

from __future__ import annotations

import os
import re


def test_readme_quick_start_runs(tmp_path, monkeypatch):
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    with open(readme, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks, "README has no python block"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})


def test_readme_sections():
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    for section in (
        "## Install",
        "## Quick start",
        "## API summary",
        "## Deviations from the paper",
        "## Citation",
    ):
        assert section in text
