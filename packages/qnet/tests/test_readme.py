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


def test_readme_shipped_model_block_runs(tmp_path, monkeypatch):
    """The "Shipped pretrained model" snippet loads the wheel's ternary ResNet-20 and gives (8, 10) logits."""
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Shipped pretrained model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the shipped-model section has one python block"
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "__readme__"}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert tuple(scope["logits"].shape) == (8, 10)
