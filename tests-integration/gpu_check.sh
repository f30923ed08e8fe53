#!/usr/bin/env bash
# The CUDA half of the test matrix in one command, for a GPU machine with CUDA and torch preinstalled and no
# network. For every package: the CUDA test session (fast subset: -m "not slow"; GPU_CHECK_SLOW=1 runs all)
# and the CUDA benchmark at a reduced size, each under a per-package time cap, then one summary.
#
#   bash tests-integration/gpu_check.sh OUT_DIR [package ...]
#
# Environment: GPU_CHECK_TEST_CAP (s, default 150 per package), GPU_CHECK_BENCH_CAP (s, default 60),
# GPU_CHECK_JOBS (packages tested at once, default 3), GPU_CHECK_SLOW=1 (include slow tests).
# Writes OUT_DIR/summary.json (pass/fail counts per package, benchmark JSON, torch/CUDA/GPU versions,
# packages that hit their cap) plus per-package logs, JUnit XML and benchmark JSON. A package that hits its
# cap is reported as "timed out", never waited for. Exit status: 0 when every package's tests passed.
set -uo pipefail

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: bash tests-integration/gpu_check.sh OUT_DIR [package ...]" >&2
    exit 2
fi
out_arg=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

# Refuse at once, before any work, where there is no CUDA: neither a driver nor a torch that sees a GPU.
if ! command -v nvidia-smi >/dev/null 2>&1 && [ ! -e /dev/nvidiactl ] && [ "${NOX_ASSUME_CUDA:-0}" != 1 ]; then
    echo "gpu_check: no CUDA driver on this machine (no nvidia-smi, no /dev/nvidiactl): run it on a GPU machine" >&2
    exit 3
fi
if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: torch.cuda.is_available() is False for $python (or torch is missing): nothing to check" >&2
    exit 3
fi

out=$(mkdir -p "$out_arg" && cd "$out_arg" && pwd)
if [ $# -gt 0 ]; then packages=("$@"); else
    packages=(); for d in "$root"/packages/*/pyproject.toml; do packages+=("$(basename "$(dirname "$d")")"); done
fi
test_cap=${GPU_CHECK_TEST_CAP:-150}
bench_cap=${GPU_CHECK_BENCH_CAP:-60}
jobs=${GPU_CHECK_JOBS:-3}
marker=(-m "not slow")
[ "${GPU_CHECK_SLOW:-0}" = 1 ] && marker=()

# Reduced benchmark sizes: enough rounds for a ratio, few enough to fit the cap.
bench_args() {
    case "$1" in
        iekd) echo "--steps 10" ;;
        qnet) echo "--repeat 3" ;;
        rbfnet | morphface) echo "--quick" ;;
        hairsynth | occfill) echo "--repeats 2" ;;
        undistort) echo "--reps 3" ;;
        *) echo "" ;;
    esac
}

# nox (no venvs: torch is preinstalled) when it is there; otherwise the same thing the session does.
have_nox=0
"$python" -m nox --version >/dev/null 2>&1 && have_nox=1

run_tests() {
    local p=$1 rc
    local junit="$out/$p-junit.xml" log="$out/$p-tests.log"
    local start=$(date +%s)
    if [ $have_nox = 1 ]; then
        (cd "$root" && timeout -k 10 "$test_cap" "$python" -m nox --force-venv-backend none \
            -s "tests(package='$p', device='cuda')" -- -p no:cacheprovider -q "${marker[@]}" --junitxml="$junit") \
            >"$log" 2>&1
    else
        (cd "$root/packages/$p" && PYTHONPATH="$root/packages/$p/src" OMP_NUM_THREADS=1 \
            SHARED_DATA="${SHARED_DATA:-$root/../shared/data}" "$(echo "$p" | tr a-z A-Z)_TEST_DEVICE=cuda" \
            timeout -k 10 "$test_cap" "$python" -m pytest -p no:cacheprovider -q "${marker[@]}" --junitxml="$junit") \
            >"$log" 2>&1
    fi
    rc=$?
    echo "{\"rc\": $rc, \"seconds\": $(( $(date +%s) - start ))}" >"$out/$p-tests.status"
}

run_bench() {
    local p=$1 rc
    local start=$(date +%s)
    (cd "$root" && PYTHONPATH="$root/packages/$p/src" timeout -k 10 "$bench_cap" "$python" \
        "packages/$p/benchmarks/run.py" --device cuda --out "$out/bench-cuda-$p.json" $(bench_args "$p")) \
        >"$out/$p-bench.log" 2>&1
    rc=$?
    echo "{\"rc\": $rc, \"seconds\": $(( $(date +%s) - start ))}" >"$out/$p-bench.status"
}

export -f run_tests run_bench bench_args
export out root python test_cap bench_cap have_nox
export GPU_CHECK_MARKER="${marker[*]:-}"

echo "gpu_check: ${#packages[@]} packages, tests cap ${test_cap}s (${jobs} at a time), bench cap ${bench_cap}s, out $out"
# Tests in parallel (16 cores, one GPU); benchmarks one at a time afterwards so their timings do not contend.
printf '%s\n' "${packages[@]}" | xargs -P "$jobs" -I{} bash -c 'marker=(-m "not slow"); [ -z "$GPU_CHECK_MARKER" ] && marker=(); run_tests {}'
for p in "${packages[@]}"; do run_bench "$p"; done

"$python" - "$out" "$root" "${packages[@]}" <<'EOF'
import datetime, json, pathlib, platform, subprocess, sys
import xml.etree.ElementTree as ET

import torch

out, root, packages = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
try:
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = ""
summary = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "commit": commit,
    "python": platform.python_version(),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "gpu": torch.cuda.get_device_name(0),
    "packages": {},
}
for p in packages:
    status = json.loads((out / f"{p}-tests.status").read_text())
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    junit = out / f"{p}-junit.xml"
    if junit.exists():
        for suite in ET.parse(junit).getroot().iter("testsuite"):
            tests, fail, err, skip = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
            counts["failed"] += fail
            counts["errors"] += err
            counts["skipped"] += skip
            counts["passed"] += tests - fail - err - skip
    timed_out = status["rc"] in (124, 137)
    bench_status = json.loads((out / f"{p}-bench.status").read_text())
    bench_file = out / f"bench-cuda-{p}.json"
    summary["packages"][p] = {
        "tests": {**counts, "rc": status["rc"], "seconds": status["seconds"], "timed_out": timed_out},
        "bench": {
            "rc": bench_status["rc"],
            "seconds": bench_status["seconds"],
            "timed_out": bench_status["rc"] in (124, 137),
            "results": json.loads(bench_file.read_text()) if bench_file.exists() else None,
        },
    }
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"gpu_check summary ({summary['gpu']}, torch {summary['torch']}, CUDA {summary['cuda']}):")
for p, r in summary["packages"].items():
    t, b = r["tests"], r["bench"]
    verdict = "TIMED OUT" if t["timed_out"] else ("ok" if t["rc"] == 0 else "FAILED")
    bench = "timed out" if b["timed_out"] else ("ok" if b["rc"] == 0 else f"failed rc={b['rc']}")
    print(f"  {p:10s} tests {verdict:9s} {t['passed']} passed, {t['failed'] + t['errors']} failed, "
          f"{t['skipped']} skipped in {t['seconds']} s; bench {bench} in {b['seconds']} s")
sys.exit(0 if all(r["tests"]["rc"] == 0 for r in summary["packages"].values()) else 1)
EOF
