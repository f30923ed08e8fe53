"""Package-level facts: version source, public API, no sibling imports."""

import re
import subprocess
import sys

import iekd
from iekd.__about__ import __version__ as about_version

SIBLINGS = {"iekd", "qnet", "rbfnet", "morphface", "hairsynth", "undistort", "occfill"} - {"iekd"}


def test_version_is_semver_and_single_sourced():
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[ab]\d+|rc\d+)?", iekd.__version__)
    assert iekd.__version__ == about_version


def test_public_names_resolve():
    for attr in iekd.__all__:
        assert hasattr(iekd, attr), attr


def test_import_pulls_in_no_sibling_package():
    names = sorted(SIBLINGS)
    code = (
        f"import sys, iekd; print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {names!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"iekd imported sibling packages: {out}"
