"""Data readers: ImageFolder (synthetic + the real faces-24id set), CIFAR python batches, splits."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from iekd.data import ImageTensorDataset, read_cifar, read_image_folder, stratified_split


def _write_folder(root, sizes=((20, 20), (30, 10))):
    for c, cls in enumerate(["b_cls", "a_cls"]):
        os.makedirs(root / cls)
        for i, size in enumerate(sizes):
            arr = np.full((size[1], size[0], 3), 40 * c + i, dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    (root / "notes.txt").write_text("not a class")


def test_image_folder_synthetic(tmp_path):
    _write_folder(tmp_path)
    s = read_image_folder(tmp_path, size=8)
    assert s.images.shape == (4, 3, 8, 8) and s.images.dtype == torch.uint8
    assert s.classes == ["a_cls", "b_cls"] and s.labels.tolist() == [0, 0, 1, 1]
    assert int(s.images[0, 0, 0, 0]) == 40  # class a_cls was written with value 40 * 1 + 0
    with pytest.raises(ValueError, match="images differ in size"):
        read_image_folder(tmp_path, size=None)
    with pytest.raises(FileNotFoundError, match=r"read_image_folder: .* is not a folder"):
        read_image_folder(tmp_path / "nope")


def test_image_folder_real_faces(shared_data):
    root = os.path.join(shared_data, "faces-24id")
    if not os.path.isdir(root):
        pytest.skip("faces-24id not present")
    s = read_image_folder(root, size=32, max_per_class=3)
    assert s.images.shape == (72, 3, 32, 32) and len(s.classes) == 24
    assert 20 < float(s.images.float().mean()) < 235  # real photos, neither blank nor saturated


def test_cifar_reader(tmp_path):
    # Write CIFAR-10-format batches (the official layout: dict with 'data' (N, 3072) uint8 and 'labels').
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": [1, 2, 3, 4]}, fh)
    tr = read_cifar(tmp_path, train=True)
    te = read_cifar(folder, train=False)
    assert tr.images.shape == (20, 3, 32, 32) and te.images.shape == (4, 3, 32, 32)
    assert te.labels.tolist() == [1, 2, 3, 4] and tr.classes[0] == "c0"
    with pytest.raises(FileNotFoundError, match="read_cifar: no CIFAR python batches"):
        read_cifar(tmp_path / "x")


def test_stratified_split_is_seeded_and_disjoint():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 2)
    tr, te = stratified_split(labels, test_fraction=0.2, seed=1)
    tr2, te2 = stratified_split(labels, test_fraction=0.2, seed=1)
    assert torch.equal(te, te2) and torch.equal(tr, tr2)
    assert set(tr.tolist()).isdisjoint(te.tolist()) and len(tr) + len(te) == 17
    assert torch.bincount(labels[te]).tolist() == [2, 1, 1]
    with pytest.raises(ValueError, match="stratified_split: 'test_fraction' must lie in"):
        stratified_split(labels, test_fraction=1.0)


def test_dataset_normalise_and_augment():
    imgs = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    ds = ImageTensorDataset(imgs, torch.tensor([0, 1, 2]), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x, y = ds[1]
    torch.testing.assert_close(x, (imgs[1].float() / 255 - 0.5) / 0.5)
    assert int(y) == 1
    aug = ImageTensorDataset(imgs, torch.tensor([0, 1, 2]), augment=True, pad=2)
    assert aug[0][0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match=r"ImageTensorDataset: 'labels' must have shape \(3,\)"):
        ImageTensorDataset(imgs, torch.tensor([0, 1]))


def test_cifar100_reader(tmp_path):
    # CIFAR-100 python layout: 'meta' with 'fine_label_names', 'train'/'test' dicts with 'fine_labels'.
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": ["c"]}, fh)
    for name, n in (("train", 6), ("test", 3)):
        data = {
            "data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            "fine_labels": list(range(90, 90 + n)),
        }
        data["coarse_labels"] = [0] * n
        with open(folder / name, "wb") as fh:
            pickle.dump(data, fh)
    tr = read_cifar(tmp_path, train=True)
    te = read_cifar(tmp_path, train=False)
    assert tr.images.shape == (6, 3, 32, 32) and te.labels.tolist() == [90, 91, 92]
    assert len(tr.classes) == 100 and tr.classes[90] == "f90"
    # Row-major CHW layout of the official files: the first 1024 bytes are the red plane.
    raw = pickle.load(open(folder / "test", "rb"))["data"]
    assert int(te.images[1, 0, 0, 1]) == int(raw[1, 1]) and int(te.images[1, 1, 0, 0]) == int(raw[1, 1024])


def test_bad_argument_types_are_named(tmp_path):
    # audit (issue 3): every data entry point names the argument and what it got
    with pytest.raises(TypeError, match=r"read_image_folder: 'size' must be an int or None; got str"):
        read_image_folder(tmp_path, size="32")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"stratified_split: 'labels' must be a torch\.Tensor; got list"):
        stratified_split([0, 1, 0, 1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ImageTensorDataset: 'images' must be a torch\.Tensor; got ndarray"):
        ImageTensorDataset(np.zeros((2, 3, 4, 4)), torch.zeros(2))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match=r"read_cifar: "):
        read_cifar(tmp_path)
