"""The README quick start runs verbatim (the integration tests run it too, from the wheel)."""

from __future__ import annotations

import os
import re


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None, "README has no python block"
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "README-quickstart", "exec"), {"__name__": "__readme__"})
