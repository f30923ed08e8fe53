"""Package-level facts: version source, public API, no sibling imports."""

import re
import subprocess
import sys

import occfill
from occfill.__about__ import __version__ as about_version

SIBLINGS = {"iekd", "qnet", "rbfnet", "morphface", "hairsynth", "undistort", "occfill"} - {"occfill"}


def test_version_is_semver_and_single_sourced():
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[ab]\d+|rc\d+)?", occfill.__version__)
    assert occfill.__version__ == about_version


def test_public_names_resolve():
    for attr in occfill.__all__:
        assert hasattr(occfill, attr), attr


def test_import_pulls_in_no_sibling_package():
    code = f"import sys, occfill; print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SIBLINGS)!r})))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"occfill imported sibling packages: {out}"
