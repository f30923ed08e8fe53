"""CIFAR pieces (issue 15): tar-archive reader, batch augmentation, seeded loader, option-A teacher files."""

from __future__ import annotations

import glob
import io
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import iekd
from iekd.data import TensorLoader, cifar_augment, read_image_archive


def _tar(path, members, *, mode="w:gz", dirs=()):
    with tarfile.open(path, mode) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, value in members:
            buf = io.BytesIO()
            Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(buf, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)


class TestReadImageArchive:
    def test_labels_classes_and_pixels(self, tmp_path):
        path = tmp_path / "set.tar.gz"
        _tar(path, [("cat/0.png", 10), ("cat/1.png", 11), ("airplane/0.png", 20), ("readme.txt", 0)])
        s = read_image_archive(path)
        assert s.classes == ["airplane", "cat"]  # sorted names = the CIFAR-10 label order
        assert s.images.shape == (3, 3, 4, 4) and s.images.dtype == torch.uint8
        assert s.labels.tolist() == [1, 1, 0]  # archive order kept
        assert s.images[:, 0, 0, 0].tolist() == [10, 11, 20]
        one = read_image_archive(path, max_per_class=1)
        assert one.labels.tolist() == [1, 0] and one.images[:, 0, 0, 0].tolist() == [10, 20]

    def test_common_top_folder_and_explicit_classes(self, tmp_path):
        path = tmp_path / "set.tar"
        _tar(path, [("train/b/0.png", 1), ("train/a/0.png", 2), ("train/c/0.png", 3)], mode="w")
        s = read_image_archive(path, classes=["c", "a"])
        assert s.classes == ["c", "a"] and s.labels.tolist() == [1, 0]

    def test_errors_name_the_path(self, tmp_path):
        with pytest.raises(
            FileNotFoundError, match=r"read_image_archive: '.*missing\.tar\.gz' is not a file"
        ):
            read_image_archive(tmp_path / "missing.tar.gz")
        junk = tmp_path / "junk.tar.gz"
        junk.write_bytes(b"\x00not an archive" * 50)
        with pytest.raises(ValueError, match=r"read_image_archive: '.*junk\.tar\.gz' is not a tar archive"):
            read_image_archive(junk)
        ok = tmp_path / "ok.tar.gz"
        _tar(ok, [("a/0.png", 1)], dirs=["empty"])
        with pytest.raises(ValueError, match=r"class 'empty' has no images in '.*ok\.tar\.gz'"):
            read_image_archive(ok)
        _tar(ok, [("a/0.png", 1)])
        with pytest.raises(ValueError, match=r"class 'b' has no images in '.*ok\.tar\.gz'"):
            read_image_archive(ok, classes=["a", "b"])
        trunc = tmp_path / "trunc.tar.gz"
        _tar(trunc, [(f"a/{i}.png", i) for i in range(50)])
        trunc.write_bytes(trunc.read_bytes()[:300])
        with pytest.raises(ValueError, match=r"trunc\.tar\.gz"):
            read_image_archive(trunc)


class TestCifarAugment:
    def test_every_output_is_a_crop_of_the_zero_padded_image_or_its_mirror(self):
        x = torch.rand(16, 3, 8, 8)
        out = cifar_augment(x, pad=2, generator=torch.Generator().manual_seed(0))
        padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
        flips = 0
        for i in range(16):  # brute force over all 25 offsets and both orientations
            hits = [
                (dy, dx, f)
                for dy in range(5)
                for dx in range(5)
                for f in (False, True)
                if torch.equal(
                    out[i], (lambda c: c.flip(-1) if f else c)(padded[i, :, dy : dy + 8, dx : dx + 8])
                )
            ]
            assert hits, i
            flips += hits[0][2]
        assert 0 < flips < 16  # both orientations occur

    def test_seeded_and_identity_without_pad_and_flip(self):
        x = torch.rand(4, 3, 8, 8)
        a = cifar_augment(x, generator=torch.Generator().manual_seed(3))
        b = cifar_augment(x, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b)
        assert torch.equal(cifar_augment(x, pad=0, flip=False), x)
        with pytest.raises(
            ValueError, match=r"cifar_augment: 'images' must have shape \(B, C, H, W\); got \(3, 8, 8\)"
        ):
            cifar_augment(x[0])
        with pytest.raises(ValueError, match=r"cifar_augment: 'pad' must be an int >= 0; got -1"):
            cifar_augment(x, pad=-1)


class TestTensorLoader:
    def test_epochs_are_reproducible_for_resume(self):
        x, y = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8), torch.arange(10)
        a = TensorLoader(x, y, batch_size=4, shuffle=True, augment=True, seed=5)
        b = TensorLoader(x, y, batch_size=4, shuffle=True, augment=True, seed=5)
        run_a = [[t.clone() for t in batch] for _ in range(3) for batch in a]  # epochs 0, 1, 2
        b.sampler.set_epoch(2)  # a resumed run starts at epoch 2
        run_b = [[t.clone() for t in batch] for batch in b]
        assert all(torch.equal(p, q) for pa, pb in zip(run_a[-3:], run_b) for p, q in zip(pa, pb))
        assert not torch.equal(run_a[0][1], run_a[3][1])  # epochs reshuffle
        assert len(a) == 3 and len(TensorLoader(x, y, batch_size=4, drop_last=True)) == 2
        xb, yb = next(iter(TensorLoader(x, y, batch_size=10)))
        mean = torch.tensor(iekd.data.IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(iekd.data.IMAGENET_STD).view(1, 3, 1, 1)
        assert torch.allclose(xb, (x.float() / 255 - mean) / std) and torch.equal(yb, y)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match=r"TensorLoader: 'labels' must have shape \(2,\); got \(3,\)"):
            TensorLoader(torch.zeros(2, 3, 4, 4), torch.zeros(3))
        with pytest.raises(ValueError, match=r"TensorLoader: 'batch_size' must be an int >= 1; got 0"):
            TensorLoader(torch.zeros(2, 3, 4, 4), torch.zeros(2), batch_size=0)


class TestForeignCifarResNetWeights:
    def test_key_mapping(self):
        ours = iekd.models.resnet20()
        foreign = {}
        for k, v in ours.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            k = k.replace("stem.0.", "conv1.").replace("stem.1.", "bn1.").replace("fc.", "linear.")
            foreign["module." + k] = v
        mapped = iekd.models.convert_cifar_resnet_state_dict(foreign)
        assert set(mapped) == {k for k in ours.state_dict() if not k.endswith("num_batches_tracked")}

    def test_foreign_file_loads_strictly(self, tmp_path):
        src = iekd.models.resnet8(num_classes=7)
        sd = {
            "module." + k.replace("stem.0.", "conv1.").replace("stem.1.", "bn1.").replace("fc.", "linear."): v
            for k, v in src.state_dict().items()
            if not k.endswith("num_batches_tracked")
        }
        torch.save({"state_dict": sd, "best_prec1": 50.0}, tmp_path / "r8.th")
        m = iekd.models.create_model("resnet8", weights=tmp_path / "r8.th")
        assert m.num_classes == 7 and m.shortcut == "A"
        x = torch.randn(2, 3, 16, 16)
        assert torch.allclose(m.eval()(x), src.eval()(x))
        sd.pop("module.layer1.0.conv1.weight")
        torch.save({"state_dict": sd}, tmp_path / "bad.th")
        with pytest.raises(ValueError, match=r"resnet8: the weights in '.*bad\.th' do not fit"):
            iekd.models.resnet8(weights=tmp_path / "bad.th")

    def test_shared_teacher_files_load_strict_and_classify(self, shared_data):
        files = sorted(glob.glob(os.path.join(shared_data, "cifar10-resnet-teachers", "resnet*.th")))
        archive = os.path.join(shared_data, "cifar10-jpeg", "test.tar.gz")
        if not files or not os.path.isfile(archive):
            pytest.skip("cifar10-resnet-teachers / cifar10-jpeg not in the shared data")
        for f in files:  # strict key matching for every depth
            depth = int(os.path.basename(f)[6:8])
            iekd.models.create_model(f"resnet{depth}", weights=f)
        test = read_image_archive(archive, max_per_class=50)
        assert test.images.shape == (500, 3, 32, 32) and test.labels.bincount().tolist() == [50] * 10
        model = iekd.models.create_model("resnet20", weights=files[0]).eval()
        with torch.no_grad():
            xb, yb = next(iter(TensorLoader(test.images, test.labels, batch_size=500)))
            acc = (model(xb).argmax(1) == yb).float().mean().item()
        assert acc > 0.7  # the folder README measured 81.0 % on all 10,000 (ImageNet mean/std inputs)
