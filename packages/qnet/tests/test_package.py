"""Package-level facts: version source, public API, no sibling imports."""

import os
import re
import subprocess
import sys

import pytest

import qnet
from qnet.__about__ import __version__ as about_version

SIBLINGS = {"iekd", "qnet", "rbfnet", "morphface", "hairsynth", "undistort", "occfill"} - {"qnet"}


def test_version_is_semver_and_single_sourced():
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[ab]\d+|rc\d+)?", qnet.__version__)
    assert qnet.__version__ == about_version


def test_public_names_resolve():
    for attr in qnet.__all__:
        assert hasattr(qnet, attr), attr


def test_import_pulls_in_no_sibling_package():
    code = "import sys, qnet; print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in %r)))" % (  # noqa: UP031
        sorted(SIBLINGS),
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"qnet imported sibling packages: {out}"


def test_distribution_name_is_qnet_torch():
    # issue 24: PyPI's `qnet` is an unrelated 2016 project; the distribution is `qnet-torch`, import `qnet`
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    path = os.path.join(os.path.dirname(__file__), "..", "pyproject.toml")
    if not os.path.exists(path):
        pytest.skip("pyproject.toml is not next to the tests (installed package only)")
    with open(path, "rb") as f:
        assert tomllib.load(f)["project"]["name"] == "qnet-torch"
