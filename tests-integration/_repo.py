"""Facts about the repository layout shared by the integration tests."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml"))
EXPECTED_PACKAGES = sorted(["iekd", "qnet", "rbfnet", "morphface", "hairsynth", "undistort", "occfill"])
# Import name (= folder name) -> distribution name on the package index. PyPI's `qnet` is an unrelated
# 2016 project (quantum feedback networks), so ours is published as `qnet-torch`.
DISTRIBUTION_NAMES = {name: name for name in EXPECTED_PACKAGES} | {"qnet": "qnet-torch"}


def distribution_name(name: str) -> str:
    """The ``[project] name`` of ``packages/<name>/pyproject.toml``."""
    text = (ROOT / "packages" / name / "pyproject.toml").read_text()
    match = re.search(r'^name\s*=\s*"([^"]+)"', text, re.M)
    if match is None:
        raise AssertionError(f"no [project] name in {name}/pyproject.toml")
    return match.group(1)


def package_version(name: str) -> str:
    """The version string in ``packages/<name>/src/<name>/__about__.py`` (the single source)."""
    text = (ROOT / "packages" / name / "src" / name / "__about__.py").read_text()
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if match is None:
        raise AssertionError(f"no __version__ in {name}/__about__.py")
    return match.group(1)


def first_python_block(markdown: str) -> str:
    """The first fenced ```python block of a Markdown text (the README quick start)."""
    match = re.search(r"^```python\n(.*?)^```", markdown, re.S | re.M)
    if match is None:
        raise AssertionError("no ```python block found")
    return match.group(1)
