"""Repository-level promises: layout, versions table, workflows, nox sessions, no sibling imports."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from _repo import DISTRIBUTION_NAMES, EXPECTED_PACKAGES, PACKAGES, ROOT, distribution_name, package_version

# What this project's test runs actually used (README "Supported versions"); bounds may only widen with a run.
SUPPORTED_PYTHON = ["3.11"]
SUPPORTED_TORCH_MIN = "2.13"

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def test_the_seven_packages_are_there():
    assert PACKAGES == EXPECTED_PACKAGES


@pytest.mark.parametrize("name", EXPECTED_PACKAGES)
def test_package_layout_and_metadata(name):
    pkg = ROOT / "packages" / name
    for rel in (
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        f"src/{name}/__init__.py",
        f"src/{name}/__about__.py",
        f"src/{name}/py.typed",
        "tests",
    ):
        assert (pkg / rel).exists(), f"{name}: missing {rel}"
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert meta["build-system"]["build-backend"] == "hatchling.build"
    project = meta["project"]
    assert project["name"] == DISTRIBUTION_NAMES[name] == distribution_name(name)
    assert "version" in project["dynamic"] and "version" not in project
    assert meta["tool"]["hatch"]["version"]["path"] == f"src/{name}/__about__.py"
    # Lower bounds the project has evidence for: the Python and torch the test matrix actually ran.
    assert project["requires-python"] == f">={SUPPORTED_PYTHON[0]}"
    pythons = sorted(
        c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if re.match(r".*Python :: 3\.\d+$", c)
    )
    assert pythons == SUPPORTED_PYTHON, f"{name}: Python classifiers {pythons} != tested {SUPPORTED_PYTHON}"
    assert f"torch>={SUPPORTED_TORCH_MIN}" in project["dependencies"], (
        f"{name}: torch bound is not the tested one"
    )
    for dep in project["dependencies"]:
        assert "<" not in dep and "==" not in dep, f"{name}: dependency {dep!r} pins an upper bound"
        dist = re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0]
        assert dist not in set(DISTRIBUTION_NAMES.values()) | set(EXPECTED_PACKAGES), (
            f"{name} depends on {dist}"
        )
    readme = (pkg / "README.md").read_text()
    for section in (
        "## Install",
        "## Quick start",
        "## API summary",
        "## Deviations from the paper",
        "## Citation",
    ):
        assert section in readme, f"{name}: README lacks {section!r}"
    changelog = (pkg / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{package_version(name)}]" in changelog, f"{name}: CHANGELOG has no entry for its version"


@pytest.mark.parametrize("name", EXPECTED_PACKAGES)
def test_no_source_file_imports_a_sibling(name):
    siblings = set(EXPECTED_PACKAGES) - {name}
    for path in (ROOT / "packages" / name / "src").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] not in siblings, f"{path} imports sibling {mod}"


def test_readme_names_table_matches_every_pyproject_and_about():
    """The root README's table of distribution name, import name and version is the packages' own."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- versions:start", 1)[1].split("<!-- versions:end", 1)[0]
    rows = re.findall(r"^\| `([\w-]+)` \| `(\w+)` \| ([0-9][^ |]*) \|$", block, re.M)
    expected = [(distribution_name(n), n, package_version(n)) for n in EXPECTED_PACKAGES]
    assert sorted(rows) == sorted(expected)


def test_install_lines_name_the_distribution_not_the_import():
    """`pip install qnet` installs an unrelated project: every install line must say `qnet-torch`."""
    docs = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "packages").glob("*/README.md")]
    pattern = re.compile(r"pip install\s+[\"']?(\w[\w-]*)(?=[\s\[=<>\"']|$)", re.M)
    for path in docs:
        for dist in pattern.findall(path.read_text()):
            if dist in EXPECTED_PACKAGES:
                assert dist == DISTRIBUTION_NAMES[dist], (
                    f"{path}: 'pip install {dist}' must name {DISTRIBUTION_NAMES[dist]}"
                )


def test_readme_states_the_tested_matrix():
    text = (ROOT / "README.md").read_text()
    assert f"torch {SUPPORTED_TORCH_MIN}" in text and f"Python {SUPPORTED_PYTHON[0]}" in text


def test_readme_names_the_two_commands_and_ci_runs_the_test_command():
    text = (ROOT / "README.md").read_text()
    assert "nox -t reproduce" in text and "nox -t cpu" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    assert re.search(r"^nox -t cpu\b", ci, re.M), ".ci/run must run the README's test command"


def _workflow(name: str) -> dict:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_ci_workflow_matrix_and_path_filters():
    wf = _workflow("ci.yml")
    job = wf["jobs"]["tests"]
    matrix = job["strategy"]["matrix"]
    assert matrix["device"] == ["cpu", "cuda"]
    assert matrix["python"] == SUPPORTED_PYTHON
    assert "gpu" in job["runs-on"] and "self-hosted" in job["runs-on"]
    run = " ".join(step.get("run", "") for step in job["steps"])
    assert "tests(package='${{ matrix.package }}', device='${{ matrix.device }}')" in run
    filters = yaml.safe_load(wf["jobs"]["changes"]["steps"][1]["with"]["filters"])

    def flat(items):  # paths-filter flattens lists nested through YAML anchors
        return [x for item in items for x in (flat(item) if isinstance(item, list) else [item])]

    filters = {key: flat(value) for key, value in filters.items()}
    for name in EXPECTED_PACKAGES:
        assert f"packages/{name}/**" in filters[name]
        assert "noxfile.py" in filters[name], f"a noxfile change must test {name}"
    assert f"packages/{EXPECTED_PACKAGES[0]}/**" not in filters[EXPECTED_PACKAGES[1]]


def test_release_workflow_checks_tag_against_version():
    wf = _workflow("release.yml")
    assert wf["on"]["push"]["tags"] == ["*-v[0-9]*"]
    steps = wf["jobs"]["release"]["steps"]
    script = next(s["run"] for s in steps if s.get("id") == "tag")

    # Exercise the tag check itself against the real tree: a right tag passes, a wrong one fails.
    def check(tag: str) -> int:
        body = script.replace("${GITHUB_REF_NAME}", tag).replace('>> "$GITHUB_OUTPUT"', ">/dev/null")
        return subprocess.run(["bash", "-c", body], cwd=ROOT, capture_output=True).returncode

    assert check(f"qnet-v{package_version('qnet')}") == 0
    assert check("qnet-v99.0.0") != 0
    assert check("nosuchpkg-v0.1.0") != 0
    assert any("build(package=" in s.get("run", "") for s in steps)


def test_nox_lists_every_session():
    out = subprocess.run(
        [sys.executable, "-m", "nox", "-l", "--json"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    names = {s["session"] for s in json.loads(out)}
    for name in EXPECTED_PACKAGES:
        for device in ("cpu", "cuda"):
            assert f"tests(package='{name}', device='{device}')" in names
            assert f"bench(package='{name}', device='{device}')" in names
        assert f"build(package='{name}')" in names
        assert f"reproduce(package='{name}')" in names
    assert {"lint", "typecheck", "docs", "integration", "summary"} <= names


def test_docs_have_a_page_per_package():
    config = (ROOT / "mkdocs.yml").read_text()
    for name in EXPECTED_PACKAGES:
        page = ROOT / "docs" / "packages" / f"{name}.md"
        assert page.exists() and f"::: {name}" in page.read_text()
        assert f"packages/{name}/src" in config


def _has_cuda_driver() -> bool:
    return shutil.which("nvidia-smi") is not None or pathlib.Path("/dev/nvidiactl").exists()


@pytest.mark.parametrize("backend", [[], ["--force-venv-backend", "none"]], ids=["venv", "no-venv"])
def test_cuda_sessions_fail_fast_without_cuda(backend):
    """`nox -t cuda` on a CPU machine fails with a CUDA message before creating a venv or installing anything."""
    if _has_cuda_driver():
        pytest.skip("this machine has a CUDA driver")
    env = {k: v for k, v in os.environ.items() if k != "NOX_ASSUME_CUDA"}
    proc = subprocess.run(
        [sys.executable, "-m", "nox", *backend, "-t", "cuda"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert log.count("no CUDA driver") == len(EXPECTED_PACKAGES), log[-3000:]
    assert "Creating virtual environment" not in log and "pip install" not in log, log[-3000:]


def test_gpu_check_script_refuses_without_cuda(tmp_path):
    """The prepared GPU check (issue 23) says at once that it needs CUDA, and writes nothing else."""
    if _has_cuda_driver():
        pytest.skip("this machine has a CUDA driver")
    env = {k: v for k, v in os.environ.items() if k != "NOX_ASSUME_CUDA"}
    proc = subprocess.run(
        ["bash", str(ROOT / "tests-integration" / "gpu_check.sh"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 3
    assert "no CUDA driver" in proc.stderr
    assert not (tmp_path / "out").exists()
