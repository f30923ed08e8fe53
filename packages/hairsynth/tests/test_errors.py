"""Bad files and bad command lines: clear errors naming the file, normal checkpoint permissions (issue 24)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from hairsynth import PerceptualLoss, create_model, load_checkpoint, load_strokes, save_checkpoint
from hairsynth.cli import main


class _Custom:
    pass


NOT_VALID = r"is not a valid hairsynth checkpoint \(truncated or not written by hairsynth\)"


@pytest.fixture
def good_ckpt(tmp_path):
    model = create_model("hairsynth_tiny")
    path = tmp_path / "good.pt"
    save_checkpoint(path, model, arch="hairsynth_tiny", config=model.config)
    return path


@pytest.fixture
def truncated(good_ckpt, tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(good_ckpt.read_bytes()[:2000])
    return path


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(os.urandom(3000))
    return path


class TestBadCheckpointFiles:
    @pytest.mark.parametrize("which", ["truncated", "garbage"])
    def test_load_checkpoint(self, which, request):
        path = request.getfixturevalue(which)
        with pytest.raises(ValueError, match=rf"load_checkpoint: '.*{path.name}' {NOT_VALID}"):
            load_checkpoint(path)

    @pytest.mark.parametrize("which", ["truncated", "garbage"])
    def test_create_model_weights(self, which, request):
        path = request.getfixturevalue(which)
        with pytest.raises(ValueError, match=rf"{path.name}' {NOT_VALID}"):
            create_model("hairsynth_tiny", weights=path)

    def test_pickle_with_code_is_refused(self, tmp_path):
        path = tmp_path / "code.pt"
        torch.save(
            {"state_dict": {}, "obj": _Custom()}, path
        )  # an arbitrary class instance: not weights-only
        with pytest.raises(ValueError, match=rf"code.pt' {NOT_VALID}"):
            load_checkpoint(path)

    def test_perceptual_vgg_file(self, garbage):
        with pytest.raises(
            ValueError, match=r"garbage.pt' is not a valid VGG-19 state_dict file \(truncated"
        ):
            PerceptualLoss(garbage)

    def test_strokes_file(self, tmp_path):
        path = tmp_path / "s.json"
        path.write_text('{"strokes": [{"points": [[1, 2')
        with pytest.raises(
            ValueError, match=r"load_strokes: '.*s.json' is not a valid hairsynth strokes file"
        ):
            load_strokes(path)
        with pytest.raises(FileNotFoundError, match=r"load_strokes: no strokes file at '.*nope.json'"):
            load_strokes(tmp_path / "nope.json")


class TestCheckpointPermissions:
    @pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
    def test_mode_is_0666_minus_umask(self, tmp_path, umask):
        """``tempfile.mkstemp`` creates 0600 files; the checkpoint must get what ``open()`` would give."""
        old = os.umask(umask)
        try:
            path = tmp_path / f"m{umask:o}.pt"
            save_checkpoint(path, create_model("hairsynth_tiny"), arch="hairsynth_tiny")
            ref = tmp_path / f"ref{umask:o}"
            ref.write_bytes(b"")  # a plain open() under the same umask
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask == stat.S_IMODE(ref.stat().st_mode)


class TestCliUserErrors:
    def _run(self, argv, capsys):
        rc = main(argv)
        err = capsys.readouterr().err
        return rc, err

    def test_missing_image(self, tmp_path, capsys):
        rc, err = self._run(
            ["extract-strokes", "--image", str(tmp_path / "no.jpg"), "--mask", "x", "--out", "o"], capsys
        )
        lines = [ln for ln in err.splitlines() if ln.startswith("hairsynth: error")]
        assert rc == 1 and "Traceback" not in err
        assert len(lines) == 1 and "--image: no such file" in lines[0] and "no.jpg" in lines[0]

    def test_not_an_image(self, tmp_path, capsys, garbage):
        rc, err = self._run(["edit", str(garbage)], capsys)
        assert rc == 1 and "Traceback" not in err
        assert "hairsynth: error: image: " in err and "garbage.pt' is not a readable image" in err

    def test_garbage_weights(self, tmp_path, capsys, garbage, shared_data):
        img = os.path.join(shared_data, "figaro1k", "training", "images", "Frame00001.jpg")
        mask = os.path.join(shared_data, "figaro1k", "training", "masks", "Frame00001.png")
        strokes = tmp_path / "s.json"
        strokes.write_text("[]")
        argv = ["synthesize", "--image", img, "--mask", mask, "--strokes", str(strokes), "--out", "o.png"]
        rc, err = self._run([*argv, "--weights", str(garbage)], capsys)
        assert rc == 1 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert (
            "garbage.pt' is not a valid hairsynth checkpoint (truncated or not written by hairsynth)" in err
        )

    def test_verbose_shows_the_traceback(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"--image: no such file"):
            main(
                [
                    "--verbose",
                    "extract-strokes",
                    "--image",
                    str(tmp_path / "no.jpg"),
                    "--mask",
                    "m",
                    "--out",
                    "o",
                ]
            )

    def test_bad_resume_file(self, tmp_path, capsys, shared_data):
        argv = ["train", "--data", os.path.join(shared_data, "celeb1k-hair"), "--split", "val"]
        rc, err = self._run([*argv, "--out", str(tmp_path), "--resume", str(tmp_path / "no.pt")], capsys)
        assert rc == 1 and "--resume: no such file" in err and "Traceback" not in err
