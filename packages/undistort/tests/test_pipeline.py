"""Undistorter: the whole cascade on tensors, PIL and NumPy images; calibration; persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from undistort import Undistorter, create_model
from undistort.warp import warp

TINY = (4, 8, 8)


@pytest.fixture
def und(device):
    return (
        Undistorter(
            create_model("flownet_small", widths=TINY),
            create_model("distancenet_small", widths=(4, 8), blocks=(1, 1)),
            create_model("completionnet_small", width=4, dilations=(2,)),
            create_model("segnet_small", widths=(4, 8)),
            work_size=32,
        )
        .to(device)
        .eval()
    )


class TestUndistorter:
    def test_tensor_roundtrip_shapes(self, und, device):
        img = torch.rand(2, 3, 50, 40, device=device)
        out = und(img)
        assert out["corrected"].shape == (2, 3, 50, 40)
        assert out["flow"].shape == (2, 2, 50, 40)
        assert out["distance"].shape == (2,)
        # fresh FlowNet predicts zero flow, so the corrected image is the input outside holes
        keep = out["holes"] == 0
        assert torch.allclose(
            out["corrected"].masked_select(keep), img.masked_select(keep.expand_as(img)), atol=1e-4
        )  # grid_sample rounding

    def test_flow_is_rescaled_to_input_pixels(self, und, device):
        # a constant work-resolution flow of 1 px (work size 32) is 2 px at 64 px
        with torch.no_grad():
            und.flow_net.net.head.bias[0] = math.atanh(1.0 / 16 / und.flow_net.max_flow)
        out = und(torch.rand(1, 3, 64, 64, device=device), distance=50.0)
        assert torch.allclose(out["flow"][:, 0], torch.full((1, 64, 64), 2.0, device=device), atol=1e-4)
        assert torch.allclose(out["distance"], torch.tensor([50.0], device=device))

    def test_known_flow_warp_consistency(self, und, device):
        img = torch.rand(1, 3, 32, 32, device=device)
        out = und(img, distance=40.0)
        assert torch.allclose(
            out["corrected"] * (1 - out["holes"]),
            warp(img, out["flow"], padding_mode="border") * (1 - out["holes"]),
            atol=1e-6,
        )

    def test_pil_and_numpy(self, und):
        arr = (np.random.default_rng(0).random((40, 36, 3)) * 255).astype(np.uint8)
        out, info = und.undistort(arr)
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == arr.shape
        pil, info = und.undistort(Image.fromarray(arr))
        assert isinstance(pil, Image.Image) and pil.size == (36, 40)
        assert info["flow"].shape == (1, 2, 40, 36)
        fl, _ = und.undistort(arr.astype(np.float32) / 255)
        assert fl.dtype == np.float32

    def test_bad_images(self, und, device):
        with pytest.raises(ValueError, match=r"Undistorter\.undistort: 'image' must have 3 channels"):
            und.undistort(torch.rand(1, 4, 32, 32, device=device))
        with pytest.raises(ValueError, match=r"Undistorter\.undistort: 'image' must be non-empty"):
            und.undistort(torch.rand(3, 0, 32, device=device))
        with pytest.raises(ValueError, match=r"Undistorter\.undistort: 'image' must be finite"):
            und.undistort(torch.full((3, 8, 8), math.nan, device=device))
        with pytest.raises(ValueError, match=r"Undistorter\.undistort: 'image' must have shape \(H, W, 3\)"):
            und.undistort(np.zeros((8, 8), dtype=np.uint8))
        with pytest.raises(
            TypeError,
            match=r"Undistorter\.undistort: 'image' must be a torch\.Tensor, PIL\.Image or numpy\.ndarray",
        ):
            und.undistort([[0.0]])
        with pytest.raises(
            ValueError, match=r"Undistorter: 'distance' must be finite and > 0 \(cm\); got \[-1\.0\]"
        ):
            und(torch.rand(1, 3, 8, 8, device=device), distance=-1.0)
        with pytest.raises(
            ValueError, match=r"Undistorter: 'distance' must be finite and > 0 \(cm\); got \[nan\]"
        ):
            und(torch.rand(1, 3, 8, 8, device=device), distance=math.nan)
        # a float image in [0, 255] (forgot to divide by 255) is refused, not silently corrected
        with pytest.raises(
            ValueError,
            match=r"Undistorter\.undistort: 'image' must lie in \[-0\.001, 1\.001\]; got values in \[0, 255\].*divide 8-bit",
        ):
            und.undistort(torch.linspace(0, 255, 3 * 8 * 8, device=device).view(3, 8, 8))
        with pytest.raises(ValueError, match=r"Undistorter: 'image' must lie in \[-0\.001, 1\.001\]"):
            und(torch.full((1, 3, 8, 8), -0.5, device=device))
        with pytest.raises(ValueError, match=r"Undistorter\.estimate_camera: 'image' must lie in"):
            und.estimate_camera(np.full((8, 8, 3), 2.0, dtype=np.float32))

    def test_estimate_camera_by_hand(self, und, device):
        # mask rows 8..23 -> 16 px head height on a 32 px image; d = exp(bias) = sqrt(25*160) = 63.25 cm;
        # f = d * 16 / head_height_cm (pinhole similar triangles)
        mask = torch.zeros(1, 1, 32, 32, device=device)
        mask[..., 8:24, 10:20] = 1
        cam = und.estimate_camera(torch.rand(1, 3, 32, 32, device=device), mask=mask)
        d = (25 * 160) ** 0.5
        assert float(cam["distance"][0]) == pytest.approx(d, rel=1e-4)
        assert float(cam["focal"][0]) == pytest.approx(d * 16 / und.head_height_cm, rel=1e-4)
        assert float(cam["focal_35mm"][0]) == pytest.approx(float(cam["focal"][0]) * 36 / 32)

    def test_save_load(self, und, device, tmp_path):
        with torch.no_grad():
            und.flow_net.net.head.weight.normal_()
        und.save(tmp_path / "und.pt")
        back = Undistorter.load(tmp_path / "und.pt").to(device)
        img = torch.rand(1, 3, 32, 32, device=device)
        a, b = und(img), back(img)
        assert torch.allclose(a["corrected"], b["corrected"], atol=1e-6)
        assert back.work_size == 32

    def test_requires_distance_source(self, device):
        u = Undistorter(create_model("flownet_small", widths=TINY), work_size=16).to(device)
        with pytest.raises(ValueError, match="Undistorter: no 'distance' given and no distance_net"):
            u(torch.rand(1, 3, 16, 16, device=device))
        with pytest.raises(TypeError, match="Undistorter: 'flow_net' must be a FlowNet"):
            Undistorter(torch.nn.Linear(1, 1))  # type: ignore[arg-type]

    def test_constructor_errors(self):
        flow = create_model("flownet_small", widths=TINY)
        with pytest.raises(
            TypeError, match="Undistorter: 'distance_net' must be a DistanceNet or None; got Linear"
        ):
            Undistorter(flow, torch.nn.Linear(1, 1))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Undistorter: 'seg_net' must be a SegNet or None; got FlowNet"):
            Undistorter(flow, seg_net=flow)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"Undistorter: 'hole_threshold' must lie in \(0, 1\); got 1\.5"):
            Undistorter(flow, hole_threshold=1.5)
        with pytest.raises(ValueError, match="Undistorter: 'work_size' must be > 0; got 0"):
            Undistorter(flow, work_size=0)


class TestFlowGate:
    """The do-no-harm gate scales each image's flow by ``clamp((m - lo) / (hi - lo), 0, 1)``."""

    @staticmethod
    def _constant_flow(und: Undistorter, px: float) -> None:
        # a constant work-size flow of ``px`` pixels along x (work size 32): its mean magnitude is ``px``
        with torch.no_grad():
            und.flow_net.net.head.bias[0] = math.atanh(px / 16 / und.flow_net.max_flow)

    @pytest.mark.parametrize(
        ("gate", "expected_64px"),
        [
            (None, 1.0),  # 0.5 px at work size 32 is 1 px at 64 px
            ((0.1, 0.4), 1.0),  # m = 0.5 >= hi: unchanged
            ((0.25, 0.75), 0.5),  # halfway: (0.5 - 0.25) / 0.5 = 0.5
            ((0.6, 0.8), 0.0),  # m <= lo: exactly the identity
        ],
    )
    def test_scales_flow_by_hand_values(self, und, device, gate, expected_64px):
        self._constant_flow(und, 0.5)
        und.flow_gate = gate
        img = torch.rand(1, 3, 64, 64, device=device)
        out = und(img, distance=50.0)
        torch.testing.assert_close(
            out["flow"][:, 0], torch.full((1, 64, 64), expected_64px, device=device), atol=1e-4, rtol=0
        )
        if expected_64px == 0.0:
            keep = out["holes"] == 0
            assert torch.allclose(
                out["corrected"].masked_select(keep), img.masked_select(keep.expand_as(img)), atol=1e-5
            )

    def test_saved_and_validated(self, und, tmp_path):
        g = Undistorter(und.flow_net, und.distance_net, work_size=32, flow_gate=(0.15, 0.25))
        assert "flow_gate=(0.15, 0.25)" in repr(g)
        g.save(tmp_path / "g.pt")
        assert Undistorter.load(tmp_path / "g.pt").flow_gate == (0.15, 0.25)
        with pytest.raises(
            ValueError, match=r"'flow_gate' must satisfy 0 <= lo < hi \(finite, px\); got \(0.3, 0.2\)"
        ):
            Undistorter(und.flow_net, flow_gate=(0.3, 0.2))
        with pytest.raises(ValueError, match="'flow_gate' must be None or a pair"):
            Undistorter(und.flow_net, flow_gate=0.2)  # type: ignore[arg-type]
        # assigning the attribute (as the README shows) is checked too, and leaves the old gate on failure
        with pytest.raises(ValueError, match=r"Undistorter.flow_gate: 'flow_gate' must satisfy 0 <= lo < hi"):
            g.flow_gate = (0.2, float("nan"))
        assert g.flow_gate == (0.15, 0.25)
        g.flow_gate = [0.1, 0.3]  # type: ignore[assignment]  # any pair of numbers, stored as floats
        assert g.flow_gate == (0.1, 0.3)


class TestChannelsLastEquivalence:
    """The ``channels_last`` speed-up must not change results beyond float rounding.

    Reference: the same seeded weights in PyTorch's default contiguous layout (``channels_last=False``),
    i.e. exactly the code path of the previous implementation. The default ``*_small`` widths are used
    (the benchmarked configuration), with every layer re-randomised so the flow, holes and completion
    are all non-trivial.
    """

    @staticmethod
    def _build(channels_last: bool, device: torch.device) -> Undistorter:
        torch.manual_seed(0)
        und = Undistorter(
            create_model("flownet_small"),
            create_model("distancenet_small"),
            create_model("completionnet_small"),
            create_model("segnet_small"),
            work_size=64,
            channels_last=channels_last,
        )
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in und.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        return und.to(device).eval()

    def test_outputs_match_contiguous_layout(self, device):
        ref, fast = self._build(False, device), self._build(True, device)
        w = fast.flow_net.net.down[0][0].weight
        assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
        assert ref.flow_net.net.down[0][0].weight.is_contiguous()
        img = torch.rand(2, 3, 96, 80, generator=torch.Generator().manual_seed(2)).to(device)
        with torch.inference_mode():
            a, b = ref(img), fast(img)
        assert a["flow"].abs().max() > 0.5  # the flow is non-trivial (pixels)
        assert a["holes"].sum() > 0  # so the completion branch contributes
        for k in ("corrected", "flow", "distance", "mask"):
            torch.testing.assert_close(b[k], a[k], atol=1e-4, rtol=1e-4, msg=k)
        # the hole mask is thresholded: allow a handful of pixels to flip at the boundary
        assert (a["holes"] != b["holes"]).float().mean() < 1e-3

    def test_save_load_keeps_layout_flag(self, device, tmp_path):
        und = self._build(False, device)
        und.save(tmp_path / "u.pt")
        back = Undistorter.load(tmp_path / "u.pt")
        assert back.channels_last is False
        assert "channels_last=False" in repr(back)
