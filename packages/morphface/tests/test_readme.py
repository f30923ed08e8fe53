"""The README quick start runs as documented (the integration suite runs it again from the wheel)."""

from __future__ import annotations

import os
import re

import pytest


# CPU only on purpose: the quick start is documented as a CPU snippet needing no files.
def test_readme_quick_start_runs(tmp_path, monkeypatch, capsys):
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    if not os.path.isfile(readme):
        pytest.skip("README.md not next to the tests")
    with open(readme, encoding="utf-8") as fh:
        code = re.findall(r"```python\n(.*?)```", fh.read(), flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    assert "torch.Size([64, 64, 3])" in capsys.readouterr().out
