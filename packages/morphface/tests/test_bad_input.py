"""Bad input as a careless user gives it (issue 24): clear errors naming the file or argument, with ``match=``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from mf_helpers import synthetic_model

from morphface import AttributeGenerator, LinearFaceModel
from morphface.checkpoint import build_from_checkpoint, load_checkpoint, save_checkpoint
from morphface.cli import main
from morphface.io import load_ict_npz

INVALID = r"is not a valid .* \(truncated or not written by morphface\)"


def _truncate(src: str, dst: str, keep: float = 0.5) -> str:
    with open(src, "rb") as fh:
        data = fh.read()
    with open(dst, "wb") as fh:
        fh.write(data[: int(len(data) * keep)])
    return dst


def _garbage(dst: str) -> str:
    with open(dst, "wb") as fh:
        fh.write(os.urandom(2048))
    return dst


@pytest.fixture
def saved(tmp_path):
    m, _ = synthetic_model(dtype=torch.float32)
    paths = {}
    for ext in (".npz", ".safetensors"):
        p = str(tmp_path / f"model{ext}")
        m.save(p)
        paths[ext] = p
    ck = str(tmp_path / "gen.pt")
    save_checkpoint(ck, {"generator": AttributeGenerator(16, base_channels=4, n_down=2, latent_dim=4)})
    paths[".pt"] = ck
    return paths


class TestTruncatedFiles:
    @pytest.mark.parametrize("ext", [".npz", ".safetensors"])
    @pytest.mark.parametrize("kind", ["truncated", "garbage"])
    def test_linear_model_load(self, saved, tmp_path, ext, kind):
        bad = str(tmp_path / f"bad{ext}")
        _truncate(saved[ext], bad) if kind == "truncated" else _garbage(bad)
        with pytest.raises(ValueError, match=r"LinearFaceModel.load: .*bad" + ext + ".*" + INVALID) as ei:
            LinearFaceModel.load(bad)
        assert "PytorchStreamReader" not in str(ei.value).split("(")[0]

    def test_linear_model_load_foreign_npz(self, tmp_path):
        p = str(tmp_path / "foreign.npz")
        np.savez(p, x=np.zeros(3))
        with pytest.raises(ValueError, match="foreign.npz.*" + INVALID):
            LinearFaceModel.load(p)

    @pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
    def test_checkpoint_loaders(self, saved, tmp_path, kind):
        bad = str(tmp_path / "bad.pt")
        if kind == "truncated":
            _truncate(saved[".pt"], bad)
        elif kind == "garbage":
            _garbage(bad)
        else:
            open(bad, "wb").close()
        with pytest.raises(
            ValueError, match=r"load_checkpoint: .*bad\.pt.* is not a valid morphface checkpoint "
        ):
            load_checkpoint(bad)
        with pytest.raises(ValueError, match=r"bad\.pt.*" + INVALID):
            build_from_checkpoint(bad, "generator")

    def test_checkpoint_of_another_kind(self, tmp_path):
        p = str(tmp_path / "other.pt")
        torch.save({"state_dict": {}}, p)
        with pytest.raises(ValueError, match=r"other\.pt.*morphface checkpoint \(package=None\)"):
            load_checkpoint(p)

    def test_ict_npz(self, tmp_path):
        bad = _garbage(str(tmp_path / "ict.npz"))
        with pytest.raises(
            ValueError, match=r"load_ict_npz: .*ict\.npz.* is not a valid ICT-FaceKit shapes archive"
        ):
            load_ict_npz(bad)


class TestPermissions:
    def test_atomic_writes_use_normal_permissions(self, saved, tmp_path):
        umask = os.umask(0)
        os.umask(umask)
        for p in saved.values():
            mode = stat.S_IMODE(os.stat(p).st_mode)
            assert mode == 0o666 & ~umask, (p, oct(mode))  # not mkstemp's 0600
            assert mode & stat.S_IRGRP or umask & stat.S_IRGRP
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]  # no temp file left


class TestNonFiniteCoefficients:
    @pytest.mark.parametrize("arg", ["identity", "expression"])
    @pytest.mark.parametrize("bad", [float("nan"), float("inf")])
    def test_vertices_rejects(self, arg, bad):
        m, _ = synthetic_model()
        a = torch.zeros(2, m.n_identity, dtype=torch.float64)
        b = torch.zeros(2, m.n_expression, dtype=torch.float64)
        (a if arg == "identity" else b)[1, 0] = bad
        with pytest.raises(
            ValueError, match=rf"LinearFaceModel.vertices: '{arg}' must be finite; got 1 NaN/inf"
        ):
            m.vertices(a, b)


class TestCLIErrors:
    def test_missing_model_one_line(self, tmp_path, capsys):
        rc = main(["sample", "--model", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1
        assert "morphface: error:" in err[0] and "nope.npz" in err[0] and "Traceback" not in err[0]

    def test_garbage_checkpoint_one_line(self, saved, tmp_path, capsys):
        bad = _garbage(str(tmp_path / "g.pt"))
        rc = main(["export", "--model", saved[".npz"], "--generator", bad, "--out", str(tmp_path / "e")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1
        assert "g.pt" in err[0] and "not a valid morphface checkpoint" in err[0]

    def test_verbose_reraises(self, saved, tmp_path):
        bad = _garbage(str(tmp_path / "g.npz"))
        with pytest.raises(ValueError, match=r"g\.npz.*" + INVALID):
            main(["--verbose", "sample", "--model", bad, "--out", str(tmp_path / "o")])

    def test_subprocess_exit_status(self, tmp_path):
        """The real entry point: one stderr line, non-zero status, no traceback."""
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "morphface",
                "preview",
                "--mesh",
                str(tmp_path / "x.obj"),
                "--out",
                "y.png",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=120,
        )
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode != 0 and len(lines) == 1 and "x.obj" in lines[0], r.stderr


class TestFitArguments:
    def test_expression_bound_and_contour(self):
        from morphface import fit

        m, _ = synthetic_model()
        lm = m.landmarks(m.vertices(torch.zeros(1, m.n_identity, dtype=torch.float64)))
        with pytest.raises(ValueError, match=r"fit: 'expression_bound' must be in \(0, 1\]; got 1.5"):
            fit(m, lm, expression_bound=1.5)
        with pytest.raises(ValueError, match=r"fit: 'contour' rows must be in \[0, 14\]; got \[3, 20\]"):
            fit(m, lm, contour=[3, 20])
        with pytest.raises(
            ValueError, match=r"fit: 'contour' must be 'auto', None or a sequence of rows; got 'jaw'"
        ):
            fit(m, lm, contour="jaw")
