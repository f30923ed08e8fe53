"""Data readers: ImageFolder and meta.jsonl layouts, pairing, masks, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from occfill.data import PairedFaces, pil_to_tensor, tensor_to_pil


def _folder(tmp_path, ids=("a", "b"), n=3, size=20):
    rng = np.random.default_rng(0)
    for name in ids:
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                tmp_path / name / f"{i}.png"
            )
    return tmp_path


class TestPairedFaces:
    def test_image_folder_pairs_same_identity_different_photo(self, tmp_path):
        ds = PairedFaces.from_image_folder(_folder(tmp_path), size=16)
        assert len(ds) == 6 and ds.identity_names == ["a", "b"] and ds.num_identities == 2
        for i in range(len(ds)):
            s = ds[i]
            assert s["image"].shape == (3, 16, 16) and s["mask"].shape == (1, 16, 16)
            assert not torch.equal(s["image"], s["reference"])
            # the reference is one of the other photos of the same identity
            same = [j for j in ds.by_label[int(s["label"])] if j != i]
            assert any(torch.equal(s["reference"], ds[j]["image"]) for j in same)
            assert not bool(s["has_pose"]) and bool(torch.isnan(s["landmarks"]).all())

    def test_epochs_change_reference_and_random_masks(self, tmp_path):
        ds = PairedFaces.from_image_folder(_folder(tmp_path, n=6), size=16, mask="random", seed=3)
        a = [ds[i] for i in range(len(ds))]
        ds.set_epoch(1)
        b = [ds[i] for i in range(len(ds))]
        assert any(not torch.equal(x["reference"], y["reference"]) for x, y in zip(a, b))
        assert any(not torch.equal(x["mask"], y["mask"]) for x, y in zip(a, b))
        ds.set_epoch(0)
        assert all(torch.equal(x["mask"], ds[i]["mask"]) for i, x in enumerate(a))

    def test_real_faces(self, shared_data):
        root = os.path.join(shared_data, "faces-24id")
        ds = PairedFaces.from_image_folder(
            root, identities=["Tom_Hanks", "Will_Smith"], size=64, preload=False
        )
        s = ds[0]
        assert (
            s["image"].shape == (3, 64, 64)
            and 0.0 <= float(s["image"].min())
            and float(s["image"].max()) <= 1.0
        )
        assert ds.identity_names == ["Tom_Hanks", "Will_Smith"]

    def test_render_meta(self, shared_data):
        root = os.path.join(shared_data, "ict-faces-128")
        ds = PairedFaces.from_meta_jsonl(root, identities=[0, 1], size=64, mask="landmarks")
        assert len(ds) == 24 and ds.num_identities == 2
        with open(os.path.join(root, "meta.jsonl")) as fh:
            row = json.loads(fh.readline())
        s = ds[0]
        assert bool(s["has_pose"])
        assert torch.allclose(s["angles"], torch.tensor([row["pitch"], row["yaw"], row["roll"]]))
        # landmarks scaled 128 -> 64
        assert torch.allclose(s["landmarks"], torch.tensor(row["landmarks68"]) / 2)
        lm = s["landmarks"][36:48].long()
        assert bool((s["mask"][0, lm[:, 1], lm[:, 0]] == 1).all())

    def test_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="from_image_folder: no folder"):
            PairedFaces.from_image_folder(tmp_path / "nope")
        root = _folder(tmp_path, n=1)
        with pytest.raises(ValueError, match="every identity needs >= 2 images"):
            PairedFaces.from_image_folder(root)
        with pytest.raises(ValueError, match="'mask' must be one of"):
            PairedFaces.from_image_folder(root, mask="oval")
        with pytest.raises(ValueError, match="PairedFaces: 'size' must be > 0; got 0"):
            PairedFaces.from_image_folder(root, size=0)
        with pytest.raises(TypeError, match="PairedFaces: 'size' must be an int; got float"):
            PairedFaces.from_image_folder(root, size=32.0)
        with pytest.raises(ValueError, match="PairedFaces: 'mask_shape' must be one of"):
            PairedFaces.from_image_folder(root, mask_shape="oval")
        two = tmp_path / "two"
        two.mkdir()
        with pytest.raises(ValueError, match="mask='landmarks' needs landmarks"):
            PairedFaces.from_image_folder(_folder(two, n=2), mask="landmarks")
        with pytest.raises(FileNotFoundError, match=r"no meta\.jsonl"):
            PairedFaces.from_meta_jsonl(tmp_path)


def test_pil_tensor_round_trip():
    t = torch.randint(0, 256, (3, 5, 7)).float() / 255
    assert torch.equal(pil_to_tensor(tensor_to_pil(t)), t)
    with pytest.raises(ValueError, match=r"tensor_to_pil: 'image' must have shape \(C, H, W\)"):
        tensor_to_pil(torch.rand(2, 4, 4))
