"""Formulas of Quantization Networks: soft/hard quantizers, gradients, initialisation, levels."""

from __future__ import annotations

import functools
import math
import os
import shutil
import sys

import pytest
import torch

import qnet
from qnet import Levels, _chunking, _host_kernel, _native
from qnet import functional as QF


def _sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _soft_by_hand(x: float, b: list[float], s: list[float], T: float, a: float, be: float, o: float) -> float:
    # Eq. 7 written out with Python floats and math.exp: independent of torch.
    return a * (sum(si * _sig(T * (be * x - bi)) for bi, si in zip(b, s)) - o)


@pytest.fixture(params=["host", "native", "general"])
def kernel(request: pytest.FixtureRequest, device: torch.device, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with each fused kernel: the CPU host kernel's eager form (tanh form, ``QNET_NATIVE_KERNEL=0``),
    the native C++ kernel behind it (``QNET_NATIVE_KERNEL=1``) and the general one."""
    if request.param in ("host", "native") and device.type != "cpu":
        pytest.skip(f"the {request.param} kernel serves CPU tensors only")
    if request.param == "native":
        skip_unless_native_builds()
        monkeypatch.setenv(_native.ENV, "1")
    else:
        monkeypatch.setenv(_native.ENV, "0")
    monkeypatch.setattr(QF, "_HOST_KERNEL", request.param != "general")
    return request.param


def skip_unless_native_builds() -> None:
    """Skip where the native kernel cannot exist: a CPU without AVX2/AVX-512 or no C++ compiler."""
    if _native.capability() not in ("AVX2", "AVX512"):
        pytest.skip(f"the native kernel needs an AVX2/AVX-512 CPU; torch reports {_native.capability()}")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler to build the native kernel")


class TestLevels:
    def test_presets(self):
        assert Levels.binary().values == (-1, 1)
        assert Levels.ternary().values == (-1, 0, 1)
        assert Levels.pow2(2).values == (-4, -2, -1, 0, 1, 2, 4)
        assert Levels.symmetric(2).values == (-2, -1, 0, 1, 2)
        assert Levels.uniform(5).values == tuple(range(-15, 16))  # the paper's "5 bits" set
        assert Levels.uniform(2, signed=False).values == (0, 1, 2, 3)
        assert Levels.uniform(1).values == (-1, 1)

    def test_derived_match_paper(self):
        # Paper Sec. 3.1: 3-bit Y = {-4,-2,-1,0,1,2,4} -> n = 6, s = {2,1,1,1,1,2}, o = 4.
        lv = Levels.parse("pm4")
        assert (lv.n, lv.steps, lv.offset, lv.max_abs, lv.bits) == (6, (2, 1, 1, 1, 1, 2), 4, 4, 3)
        b = Levels.binary()
        assert (b.n, b.steps, b.offset, b.bits) == (1, (2,), 1, 1)
        assert Levels.ternary().bits == 2
        assert Levels.parse("uint2").offset == 0

    def test_parse_names(self):
        assert Levels.parse("int3") == Levels.symmetric(3)
        assert Levels.parse("pow2_1").values == (-2, -1, 0, 1, 2)
        assert Levels.parse([0, 1]) == Levels((0, 1))

    def test_errors(self):
        with pytest.raises(ValueError, match=r"strictly increasing"):
            Levels((1, 0))
        with pytest.raises(ValueError, match=r"at least 2"):
            Levels((0,))
        with pytest.raises(TypeError, match=r"integers"):
            Levels((0, 0.5))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"unknown level set name"):
            Levels.parse("quaternary")
        with pytest.raises(ValueError, match=r"'bits' must be an integer in"):
            Levels.uniform(0)
        with pytest.raises(TypeError, match=r"'spec' must be"):
            Levels.parse(3.0)  # type: ignore[arg-type]


class TestSoftQuantize:
    @pytest.mark.usefixtures("kernel")
    def test_reference_values(self, device, dtype):
        b, s, T, a, be, o = [-0.05, 0.05], [1.0, 1.0], 4.0, 0.5, 2.0, 1.0
        xs = [-1.0, -0.1, 0.0, 0.02, 0.3, 2.0]
        want = torch.tensor([_soft_by_hand(x, b, s, T, a, be, o) for x in xs], dtype=dtype)
        got = QF.soft_quantize(
            torch.tensor(xs, device=device, dtype=dtype),
            torch.tensor(b, device=device, dtype=dtype),
            torch.tensor(s, device=device, dtype=dtype),
            T,
            a,
            be,
            o,
        )
        assert got.dtype == dtype and got.device.type == device.type
        torch.testing.assert_close(got.cpu(), want)
        # 0.3 by hand: 0.5 * (sig(2.6) + sig(2.2) - 1) = 0.5 * (0.930862 + 0.900250 - 1) = 0.415556
        assert abs(float(got[4]) - 0.415556) < 1e-5

    def test_gradients_match_closed_form(self, device):
        # Dossier Sec. 2.2: dy/dx = a*be*T*sum s sig(1-sig), dy/da = y/a, dy/dbe = a*T*x*sum s sig(1-sig),
        # dy/db_i = -a*T*s_i*sig_i(1-sig_i); computed here with math.exp, independent of autograd.
        x0, b, s, T, a, be, o = 0.37, [-1.0, 0.2, 1.5], [2.0, 1.0, 1.0], 3.0, 0.7, 1.3, 2.0
        sig = [_sig(T * (be * x0 - bi)) for bi in b]
        ds = sum(si * g * (1 - g) for si, g in zip(s, sig))
        y = _soft_by_hand(x0, b, s, T, a, be, o)
        fk = {"device": device, "dtype": torch.float64}
        x = torch.tensor(x0, **fk, requires_grad=True)
        bt = torch.tensor(b, **fk, requires_grad=True)
        at = torch.tensor(a, **fk, requires_grad=True)
        bet = torch.tensor(be, **fk, requires_grad=True)
        out = QF.soft_quantize(x, bt, torch.tensor(s, **fk), T, at, bet, o)
        out.backward()
        assert abs(float(out.detach()) - y) < 1e-12
        assert abs(float(x.grad) - a * be * T * ds) < 1e-10
        assert abs(float(at.grad) - y / a) < 1e-10
        assert abs(float(bet.grad) - a * T * x0 * ds) < 1e-10
        want_b = [-a * T * si * g * (1 - g) for si, g in zip(s, sig)]
        torch.testing.assert_close(bt.grad.cpu(), torch.tensor(want_b, dtype=torch.float64))

    @pytest.mark.parametrize("chunk", [None, 4])
    @pytest.mark.usefixtures("kernel")
    def test_surrogate_gradient_by_hand(self, device, chunk, monkeypatch):
        # grad_temperature (official code's binary trick): sig(1-sig) taken at T_g, the factor T kept;
        # reference values with math.exp, independent of torch. The forward value must not change.
        if chunk is not None:
            monkeypatch.setattr(_chunking, "CPU_CHUNK", chunk)
        xs, b, s, T, Tg, a, be, o = [-0.9, -0.2, 0.0, 0.37, 1.1], [0.0], [2.0], 40.0, 1.0, 0.7, 1.3, 1.0
        fk = {"device": device, "dtype": torch.float64}
        x = torch.tensor(xs, **fk, requires_grad=True)
        at = torch.tensor(a, **fk, requires_grad=True)
        bet = torch.tensor(be, **fk, requires_grad=True)
        out = QF.soft_quantize(
            x, torch.tensor(b, **fk), torch.tensor(s, **fk), T, at, bet, o, grad_temperature=Tg
        )
        gy = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], **fk)
        out.backward(gy)
        want_y = [_soft_by_hand(v, b, s, T, a, be, o) for v in xs]
        dsg = [
            sum(si * _sig(Tg * (be * v - bi)) * (1 - _sig(Tg * (be * v - bi))) for bi, si in zip(b, s))
            for v in xs
        ]
        torch.testing.assert_close(out.detach().cpu(), torch.tensor(want_y, dtype=torch.float64))
        want_dx = [float(g) * a * be * T * d for g, d in zip(gy, dsg)]
        torch.testing.assert_close(x.grad.cpu(), torch.tensor(want_dx, dtype=torch.float64))
        want_dbeta = sum(float(g) * a * T * v * d for g, v, d in zip(gy, xs, dsg))
        assert abs(float(bet.grad) - want_dbeta) < 1e-9
        want_dalpha = sum(float(g) * y / a for g, y in zip(gy, want_y))  # exact: dy/dalpha = y / alpha
        assert abs(float(at.grad) - want_dalpha) < 1e-9
        # far from the threshold the exact gradient vanishes at T = 40, the surrogate's does not
        assert abs(float(x.grad[0])) > 0.1

    def test_surrogate_gradient_errors(self, device):
        x = torch.randn(4, device=device)
        thr, s = torch.zeros(1, device=device), torch.full((1,), 2.0, device=device)
        with pytest.raises(ValueError, match=r"soft_quantize: 'grad_temperature' must be finite and > 0"):
            QF.soft_quantize(x, thr, s, 5.0, grad_temperature=0.0)
        with pytest.raises(ValueError, match=r"soft_quantize: 'grad_temperature' needs fixed thresholds"):
            QF.soft_quantize(x, thr.clone().requires_grad_(), s, 5.0, grad_temperature=1.0)
        with pytest.raises(ValueError, match=r"Quantizer: 'grad_temperature' must be finite and > 0"):
            qnet.Quantizer("binary", grad_temperature=-1.0)
        with pytest.raises(TypeError, match=r"Quantizer: 'grad_temperature' must be a float or None"):
            qnet.Quantizer("binary", grad_temperature="1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"quantize: 'weight_grad_temperature' applies to method 'qn'"):
            qnet.quantize(
                torch.nn.Linear(3, 3), keep_first_last=False, method="ste", weight_grad_temperature=1.0
            )
        q = qnet.quantize(
            torch.nn.Sequential(torch.nn.Linear(3, 3)).to(device),
            keep_first_last=False,
            weight_levels="binary",
            weight_grad_temperature=1.0,
        )
        assert q[0].weight_quantizer.grad_temperature == 1.0 and "grad_temperature=1.0" in repr(q)

    @pytest.mark.usefixtures("kernel")
    def test_gradcheck(self, device):
        fk = {"device": device, "dtype": torch.float64}
        x = torch.randn(5, 3, **fk, requires_grad=True)
        b = torch.tensor([-0.5, 0.1, 0.8], **fk, requires_grad=True)
        s = torch.tensor([1.0, 2.0, 1.0], **fk)
        a = torch.tensor(0.8, **fk, requires_grad=True)
        be = torch.tensor(1.2, **fk, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda *t: QF.soft_quantize(t[0], t[1], s, 2.5, t[2], t[3], 1.0), (x, b, a, be)
        )

    @pytest.mark.parametrize("half", [torch.float16, torch.float32])
    @pytest.mark.usefixtures("kernel")
    def test_stable_at_huge_temperature(self, device, half):
        lv = Levels.pow2(2)
        thr = torch.tensor([-3.0, -1.5, -0.05, 0.05, 1.5, 3.0], device=device, dtype=half)
        s = torch.tensor(lv.steps, device=device, dtype=half)
        # includes values exactly at thresholds (z = 0) and huge values (T*z would overflow float16)
        x = torch.cat([thr, torch.tensor([-1e4, -1.0, 0.0, 1.0, 1e4], device=device, dtype=half)])
        x.requires_grad_(True)
        y = QF.soft_quantize(x, thr, s, 1e6, 1.0, 1.0, 4.0)
        y.sum().backward()
        assert y.dtype == half
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
        hard = QF.hard_quantize(x.detach(), thr, s, 1.0, 1.0, 4.0)
        off = (x.detach().unsqueeze(-1) - thr).abs().min(-1).values > 0  # away from thresholds: equal to hard
        torch.testing.assert_close(y.detach()[off], hard[off])

    @pytest.mark.usefixtures("kernel")
    def test_converges_to_hard(self, device):
        # Bound: for |beta*x - b_i| >= d for every i, |soft - hard| <= alpha * sum_i s_i * sigmoid(-T d).
        lv = Levels.pow2(2)
        thr = torch.tensor([-3.0, -1.5, -0.05, 0.05, 1.5, 3.0], device=device, dtype=torch.float64)
        s = torch.tensor(lv.steps, device=device, dtype=torch.float64)
        x = torch.linspace(-5, 5, 2001, device=device, dtype=torch.float64)
        d = (x.unsqueeze(-1) - thr).abs().min(-1).values
        hard = QF.hard_quantize(x, thr, s, 0.5, 1.0, 4.0)
        errs = []
        for T in (1.0, 10.0, 100.0, 1000.0):
            err = (QF.soft_quantize(x, thr, s, T, 0.5, 1.0, 4.0) - hard).abs()
            bound = 0.5 * sum(lv.steps) * torch.sigmoid(-T * d)
            assert bool((err <= bound + 1e-12).all())
            errs.append(float(err.mean()))
        assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-2 * errs[0]

    def test_errors(self, device):
        t = torch.zeros(2, device=device)
        with pytest.raises(TypeError, match=r"soft_quantize: 'x' must be a torch.Tensor"):
            QF.soft_quantize([0.0], t, t, 1.0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"soft_quantize: 'x' must have a floating-point dtype"):
            QF.soft_quantize(torch.zeros(3, dtype=torch.int64, device=device), t, t, 1.0)
        with pytest.raises(ValueError, match=r"soft_quantize: 'thresholds' must have shape \(K\)"):
            QF.soft_quantize(t, torch.zeros(2, 2, device=device), t, 1.0)
        with pytest.raises(ValueError, match=r"soft_quantize: 'scales' must have shape \(K\) with K=2"):
            QF.soft_quantize(t, t, torch.zeros(3, device=device), 1.0)
        for bad in (0.0, -1.0, float("inf")):
            with pytest.raises(ValueError, match=r"soft_quantize: 'temperature' must be finite and > 0"):
                QF.soft_quantize(t, t, t, bad)
        with pytest.raises(ValueError, match=r"'alpha' must be a scalar"):
            QF.soft_quantize(t, t, t, 1.0, torch.ones(2))


class TestHardQuantize:
    @pytest.mark.parametrize("spec", ["binary", "ternary", "pm2", "pm4", "int5", "uint2"])
    def test_only_allowed_levels(self, device, spec):
        lv = Levels.parse(spec)
        x = torch.randn(4000, device=device) * 3
        a, be, thr = QF.init_parameters(x, lv)
        s = torch.tensor(lv.steps, device=device, dtype=x.dtype)
        y = QF.hard_quantize(x, thr, s, a, be, float(lv.offset))
        allowed = torch.tensor(lv.values, device=device, dtype=x.dtype) * a
        assert bool(torch.isclose(y.unsqueeze(-1), allowed, rtol=0, atol=1e-6).any(-1).all())
        # codes index the level set: hard(x) == alpha * Y[codes] exactly
        codes = QF.level_codes(x, thr, be)
        assert torch.equal(y, torch.tensor(lv.values, device=device, dtype=x.dtype)[codes] * a)

    def test_step_at_zero_is_one(self, device):
        # Eq. 1: A(0) = 1, so x exactly at a threshold takes the upper level.
        y = QF.hard_quantize(
            torch.tensor([0.0], device=device),
            torch.tensor([0.0], device=device),
            torch.tensor([2.0], device=device),
            1.0,
            1.0,
            1.0,
        )
        assert float(y) == 1.0

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"hard_quantize: 'scales'"):
            QF.hard_quantize(
                torch.zeros(2, device=device), torch.zeros(2, device=device), torch.zeros(1, device=device)
            )


class TestSTEQuantize:
    def test_values_and_gradient(self, device):
        v = torch.tensor([-1.0, 0.0, 1.0], device=device)
        x = torch.tensor([-2.0, -0.6, -0.4, 0.3, 0.6, 2.0], device=device, requires_grad=True)
        y = QF.ste_quantize(x, v, 1.0)
        y.sum().backward()
        assert y.tolist() == [-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]
        assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # clipped identity

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"ste_quantize: 'values' needs at least 2"):
            QF.ste_quantize(torch.zeros(2, device=device), torch.zeros(1, device=device))
        with pytest.raises(ValueError, match=r"'scale' must be finite and > 0"):
            QF.ste_quantize(torch.zeros(2, device=device), torch.zeros(2, device=device), 0.0)


class TestInit:
    def test_beta_alpha_paper(self, device):
        # beta = 5p/(4q): ternary p = 1, q = max|w| = 2 -> beta = 0.625, alpha = 1.6.
        a, b, thr = QF.init_parameters(torch.tensor([-2.0, 0.5, 1.0], device=device), "ternary")
        assert (a, b) == (1.6, 0.625)
        torch.testing.assert_close(thr.cpu(), torch.tensor([-0.05, 0.05]))
        a, b, thr = QF.init_parameters(torch.tensor([-2.0, 0.5, 1.0], device=device), "binary")
        assert thr.tolist() == [0.0]
        a, b, _ = QF.init_parameters(torch.tensor([-0.5, 0.5], device=device), "pm4")
        assert b == pytest.approx(5 * 4 / (4 * 0.5))

    def test_kmeans_on_uniform_distribution(self, device):
        # k-means of U[0, L] into k clusters has centres L(j + 1/2)/k, so thresholds at L j / k.
        # Activations uint2 (4 levels, p = 3) on a dense grid over [0, 2]: beta = 15/8, L = beta * 2 = 3.75.
        x = torch.linspace(0, 2, 40001, device=device, dtype=torch.float64)
        _a, b, thr = QF.init_parameters(x, "uint2")
        assert b == pytest.approx(15 / 8)
        torch.testing.assert_close(
            thr.cpu(), torch.tensor([0.9375, 1.875, 2.8125], dtype=torch.float64), atol=2e-3, rtol=0
        )

    def test_kmeans_on_clusters_forces_middle(self, device):
        # pm2 (5 levels, p = 2), data = five tight clusters at -1, -0.5, 0, 0.5, 1 -> beta = 2.5, scaled
        # centres -2.5, -1.25, 0, 1.25, 2.5 -> midpoints -1.875, -0.625, 0.625, 1.875; paper forces the
        # two around 0 to -0.05 / +0.05.
        g = torch.Generator().manual_seed(0)
        c = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
        x = (c.repeat_interleave(200) + 1e-4 * torch.randn(1000, generator=g, dtype=torch.float64)).to(device)
        x = x / x.abs().max()  # max |x| = 1 exactly
        _, b, thr_k = QF.init_parameters(x, "pm2", init="kmeans")
        _, _, thr_p = QF.init_parameters(x, "pm2")
        assert b == pytest.approx(2.5)
        torch.testing.assert_close(
            thr_k.cpu(), torch.tensor([-1.875, -0.625, 0.625, 1.875], dtype=torch.float64), atol=2e-3, rtol=0
        )
        torch.testing.assert_close(
            thr_p.cpu(), torch.tensor([-1.875, -0.05, 0.05, 1.875], dtype=torch.float64), atol=2e-3, rtol=0
        )

    def test_midpoint(self, device):
        _, _, thr = QF.init_parameters(torch.ones(3, device=device), "pm4", init="midpoint")
        assert thr.tolist() == [-3.0, -1.5, -0.5, 0.5, 1.5, 3.0]

    def test_errors(self, device):
        with pytest.raises(ValueError, match=r"init_parameters: 'x' is all zeros"):
            QF.init_parameters(torch.zeros(4, device=device), "ternary")
        with pytest.raises(ValueError, match=r"init_parameters: 'init' must be"):
            QF.init_parameters(torch.ones(4, device=device), "ternary", init="linear")
        with pytest.raises(ValueError, match=r"init_parameters: 'x' must be finite"):
            QF.init_parameters(torch.tensor([1.0, float("nan")], device=device), "ternary")
        with pytest.raises(ValueError, match=r"kmeans_1d: 'k' must be"):
            QF.kmeans_1d(torch.ones(3, device=device), 0)


def test_public_functional_exports():
    for name in ("soft_quantize", "hard_quantize", "init_parameters", "level_codes", "ste_quantize"):
        assert callable(getattr(qnet.functional, name))


@pytest.mark.usefixtures("kernel")
def test_fused_path_matches_autograd_path(device):
    # soft_quantize uses a fused closed-form backward when thresholds are fixed; compare it with the plain
    # autograd path (thresholds requiring grad) and run gradcheck on it in float64.
    fk = {"device": device, "dtype": torch.float64}
    x = torch.randn(4, 6, **fk, requires_grad=True)
    s = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0, 2.0], **fk)
    b = torch.tensor([-2.0, -1.0, -0.05, 0.05, 1.0, 2.0], **fk)
    a = torch.tensor(0.6, **fk, requires_grad=True)
    be = torch.tensor(1.4, **fk, requires_grad=True)
    y1 = QF.soft_quantize(x, b, s, 3.0, a, be, 4.0)
    g1 = torch.autograd.grad(y1.sum(), (x, a, be))
    y2 = QF.soft_quantize(x, b.clone().requires_grad_(True), s, 3.0, a, be, 4.0)
    g2 = torch.autograd.grad(y2.sum(), (x, a, be))
    torch.testing.assert_close(y1, y2)
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v)
    assert torch.autograd.gradcheck(lambda *t: QF.soft_quantize(t[0], b, s, 3.0, t[1], t[2], 4.0), (x, a, be))
    # temperature given as a tensor (the modules' buffer)
    y3 = QF.soft_quantize(x, b, s, torch.tensor(3.0, **fk), a, be, 4.0)
    torch.testing.assert_close(y3, y1)


def _reference_soft_quantize(x, b, s, t, a, be, o):
    # Straightforward (*, K) broadcast written independently of qnet, same algebraic order as the fused
    # kernel (x * (beta T) - b T) so that float32 values agree to rounding; gradients come from autograd.
    z = x.unsqueeze(-1) * (be * t) - b * t
    return a * ((torch.sigmoid(z) * s).sum(-1) - o)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("temperature", [3.0, 1e6])
@pytest.mark.parametrize("chunk", [7, 1 << 16])
@pytest.mark.usefixtures("kernel")
def test_fused_kernel_matches_reference(device, k, dtype, temperature, chunk, monkeypatch):
    # The fused, chunked kernel against the broadcast reference on random inputs: values and the gradients
    # of x, alpha and beta. chunk=7 forces many CPU chunks plus a ragged last one (1000 = 142 * 7 + 6).
    monkeypatch.setattr(_chunking, "CPU_CHUNK", chunk)
    gen = torch.Generator().manual_seed(100 * k + int(temperature > 10) + chunk)
    fk = {"device": device, "dtype": dtype}
    x = (2 * torch.randn(10, 100, generator=gen, dtype=dtype)).to(device).requires_grad_(True)
    b = torch.sort(torch.randn(k, generator=gen, dtype=dtype)).values.to(device)
    s = torch.randint(1, 4, (k,), generator=gen).to(**fk)
    a = torch.tensor(0.7, **fk, requires_grad=True)
    be = torch.tensor(1.3, **fk, requires_grad=True)
    o = float(s.sum()) / 2
    gy = torch.randn(10, 100, generator=gen, dtype=dtype).to(device)
    y = QF.soft_quantize(x, b, s, temperature, a, be, o)
    g = torch.autograd.grad(y, (x, a, be), gy)
    y_ref = _reference_soft_quantize(x, b, s, temperature, a, be, o)
    g_ref = torch.autograd.grad(y_ref, (x, a, be), gy)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    torch.testing.assert_close(y, y_ref, **tol)
    scale = 1.0 + (temperature if temperature > 10 else 0.0)  # dx ~ alpha beta T s / 4 near a threshold
    torch.testing.assert_close(g[0], g_ref[0], rtol=tol["rtol"], atol=tol["atol"] * scale)
    torch.testing.assert_close(g[1], g_ref[1], **tol)
    torch.testing.assert_close(g[2], g_ref[2], rtol=tol["rtol"] * 10, atol=tol["atol"] * scale)
    assert torch.isfinite(torch.stack([g[1], g[2]])).all() and torch.isfinite(g[0]).all()


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True)])
@pytest.mark.usefixtures("kernel")
def test_fused_kernel_partial_gradients(device, needs, monkeypatch):
    # only some of x / alpha / beta require grad (the backward skips the others), chunked on CPU
    monkeypatch.setattr(_chunking, "CPU_CHUNK", 5)
    fk = {"device": device, "dtype": torch.float64}
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 11, generator=gen, dtype=torch.float64).to(device).requires_grad_(needs[0])
    b = torch.tensor([-0.5, 0.0, 0.7], **fk)
    s = torch.tensor([1.0, 2.0, 1.0], **fk)
    a = torch.tensor(0.9, **fk, requires_grad=needs[1])
    be = torch.tensor(1.1, **fk, requires_grad=needs[2])
    inputs = [v for v, n in zip((x, a, be), needs) if n]
    g = torch.autograd.grad(QF.soft_quantize(x, b, s, 4.0, a, be, 2.0).sum(), inputs)
    g_ref = torch.autograd.grad(_reference_soft_quantize(x, b, s, 4.0, a, be, 2.0).sum(), inputs)
    torch.testing.assert_close(g, g_ref)
    assert torch.autograd.gradcheck(lambda *t: QF.soft_quantize(*t[:1], b, s, 4.0, *t[1:], 2.0), (x, a, be))


@pytest.mark.usefixtures("kernel")
def test_fused_kernel_create_graph(device):
    # create_graph=True still gives the first-order gradients; differentiating them again raises instead of
    # returning a silently incomplete second derivative (the fused backward is first-order only)
    fk = {"device": device, "dtype": torch.float64}
    x = torch.randn(2, 9, **fk, requires_grad=True)
    b = torch.tensor([0.0, 0.5], **fk)
    s = torch.tensor([1.0, 1.0], **fk)
    (g,) = torch.autograd.grad(QF.soft_quantize(x, b, s, 2.0).sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad(_reference_soft_quantize(x, b, s, 2.0, 1.0, 1.0, 0.0).sum(), x)
    torch.testing.assert_close(g, g_ref)
    with pytest.raises(RuntimeError, match=r"does not require grad"):
        g.sum().backward()
    # incoming gradient that itself requires grad (e.g. a gradient penalty): the error names the cause
    w = torch.rand(2, 9, **fk, requires_grad=True)
    (g2,) = torch.autograd.grad((QF.soft_quantize(x, b, s, 2.0) * w).sum(), x, create_graph=True)
    torch.testing.assert_close(g2, g_ref * w.detach())
    with pytest.raises(RuntimeError, match=r"once_differentiable"):
        g2.sum().backward()


@pytest.mark.usefixtures("kernel")
def test_fused_kernel_non_contiguous_input(device, monkeypatch):
    # a transposed (non-contiguous) input: values and gradients follow the logical element order
    monkeypatch.setattr(_chunking, "CPU_CHUNK", 4)
    fk = {"device": device, "dtype": torch.float64}
    x = torch.randn(5, 3, **fk).t().requires_grad_(True)
    b = torch.tensor([-0.3, 0.4], **fk)
    s = torch.tensor([1.0, 2.0], **fk)
    gy = torch.randn(3, 5, **fk)
    y = QF.soft_quantize(x, b, s, 5.0, 0.8, 1.2, 1.0)
    y_ref = _reference_soft_quantize(x, b, s, 5.0, 0.8, 1.2, 1.0)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0], torch.autograd.grad(y_ref, x, gy)[0])


@pytest.mark.usefixtures("kernel")
@pytest.mark.parametrize("zero", ["alpha", "beta"])
def test_fused_kernel_zero_alpha_or_beta(device, zero):
    # alpha = 0 or beta = 0 (the host kernel divides by them in its shortcuts): gradients still equal the
    # broadcast reference's, and nothing is NaN
    fk = {"device": device, "dtype": torch.float64}
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 9, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    b = torch.tensor([-0.4, 0.3], **fk)
    s = torch.tensor([1.0, 1.0], **fk)
    a = torch.tensor(0.0 if zero == "alpha" else 0.8, **fk, requires_grad=True)
    be = torch.tensor(0.0 if zero == "beta" else 1.3, **fk, requires_grad=True)
    gy = torch.randn(4, 9, generator=gen, dtype=torch.float64).to(device)
    y = QF.soft_quantize(x, b, s, 6.0, a, be, 1.0)
    g = torch.autograd.grad(y, (x, a, be), gy)
    y_ref = _reference_soft_quantize(x, b, s, 6.0, a, be, 1.0)
    g_ref = torch.autograd.grad(y_ref, (x, a, be), gy)
    torch.testing.assert_close(y, y_ref)
    for u, v in zip(g, g_ref):
        torch.testing.assert_close(u, v)
    assert all(bool(torch.isfinite(u).all()) for u in g)
    # the zeroed parameter's gradient is not trivially zero: dy/dalpha = base, dy/dbeta = alpha T x g
    assert float(g[1 if zero == "alpha" else 2].abs()) > 1e-3


@pytest.mark.usefixtures("kernel")
def test_fused_kernel_no_grad_and_retain_graph(device):
    # under no_grad the value is the same; with retain_graph a second backward gives the same gradients
    # (the kernel must not modify what it saved)
    fk = {"device": device, "dtype": torch.float64}
    x = torch.randn(3, 17, **fk, requires_grad=True)
    b = torch.tensor([0.2, 0.9, 1.6], **fk)
    s = torch.ones(3, **fk)
    a = torch.tensor(0.7, **fk, requires_grad=True)
    with torch.no_grad():
        y0 = QF.soft_quantize(x, b, s, 5.0, a, 1.1, 0.0)
    y = QF.soft_quantize(x, b, s, 5.0, a, 1.1, 0.0)
    torch.testing.assert_close(y0, y.detach())
    g1 = torch.autograd.grad(y.sum(), (x, a), retain_graph=True)
    g2 = torch.autograd.grad(y.sum(), (x, a))
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_host_kernel_serves_cpu_float(device, monkeypatch):
    # the host kernel is what CPU float32/float64 inputs with fixed thresholds get (so the "host" runs
    # above test what users run); half inputs, learnable thresholds and other devices take the general one
    calls = []
    real = _host_kernel.SoftQuantizeHost.apply
    monkeypatch.setattr(_host_kernel.SoftQuantizeHost, "apply", lambda *a: calls.append(1) or real(*a))
    fk = {"device": device}
    b, s = torch.tensor([0.0], **fk), torch.tensor([2.0], **fk)
    QF.soft_quantize(torch.randn(4, **fk), b, s, 3.0, offset=1.0)
    assert len(calls) == (1 if device.type == "cpu" else 0)
    QF.soft_quantize(torch.randn(4, **fk, dtype=torch.float16), b.half(), s.half(), 3.0, offset=1.0)
    QF.soft_quantize(torch.randn(4, **fk), b.clone().requires_grad_(True), s, 3.0, offset=1.0)
    assert len(calls) == (1 if device.type == "cpu" else 0)


@pytest.mark.usefixtures("kernel")
def test_fused_kernel_parameters_of_another_dtype(device):
    # float32 alpha/beta (a module's parameters) with a float64 input: the gradients arrive in the parameters'
    # dtype and equal the float64 reference's to float32 precision
    x = torch.randn(6, 5, device=device, dtype=torch.float64, requires_grad=True)
    b = torch.tensor([-0.2, 0.4], device=device, dtype=torch.float64)
    s = torch.tensor([1.0, 1.0], device=device, dtype=torch.float64)
    a = torch.tensor(0.9, device=device, requires_grad=True)
    be = torch.tensor(1.2, device=device, requires_grad=True)
    y = QF.soft_quantize(x, b, s, 4.0, a, be, 1.0)
    assert y.dtype == torch.float64
    g = torch.autograd.grad(y.sum(), (x, a, be))
    a64, be64 = a.detach().double().requires_grad_(True), be.detach().double().requires_grad_(True)
    g_ref = torch.autograd.grad(_reference_soft_quantize(x, b, s, 4.0, a64, be64, 1.0).sum(), (x, a64, be64))
    assert g[1].dtype == torch.float32 and g[2].dtype == torch.float32
    torch.testing.assert_close(g[0], g_ref[0])
    torch.testing.assert_close(g[1], g_ref[1].float())
    torch.testing.assert_close(g[2], g_ref[2].float())


@pytest.mark.parametrize("grad_temperature", [None, 1.0])
def test_compiled_graph_matches_eager(device, grad_temperature):
    # under torch.compile (aot_eager: AOT autograd traces forward and backward, no C++ compiler needed) the
    # general kernel is traced on whole tensors in one graph: values and every gradient equal the eager
    # (host kernel) ones
    torch._dynamo.reset()
    fk = {"device": device, "dtype": torch.float32}
    x0 = torch.randn(4, 33, **fk)
    thr = torch.tensor([-0.3, 0.1, 0.8], **fk)
    s = torch.tensor([1.0, 2.0, 1.0], **fk)

    def run(fn):
        x = x0.clone().requires_grad_(True)
        a = torch.tensor(0.7, **fk, requires_grad=True)
        be = torch.tensor(1.4, **fk, requires_grad=True)
        y = fn(x, a, be)
        return (y, *torch.autograd.grad(y.square().sum(), (x, a, be)))

    def f(x, a, be):
        return QF.soft_quantize(x, thr, s, 9.0, a, be, 2.0, grad_temperature=grad_temperature)

    want = run(f)
    got = run(torch.compile(f, backend="aot_eager", fullgraph=True))
    # the eager side is the tanh-form host kernel on CPU: equal up to float32 rounding (gradients up to ~4)
    for u, v in zip(got, want):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=2e-5)


class TestNativeKernel:
    """The fused C++ kernel (required with ``QNET_NATIVE_KERNEL=1``); its values and gradients are also checked
    against the references by every test using the ``kernel`` fixture."""

    @pytest.fixture(autouse=True)
    def _native_on(self, device, monkeypatch):
        if device.type != "cpu":
            pytest.skip("the native kernel serves CPU tensors only")
        skip_unless_native_builds()
        monkeypatch.setenv(_native.ENV, "1")

    def test_gradients_do_not_depend_on_the_thread_count(self):
        # the dot products are summed per fixed block, then in order: bit-identical for 1 and 2 threads
        g = torch.Generator().manual_seed(0)
        x = torch.randn(300_001, generator=g, requires_grad=True)
        a = torch.tensor(0.8, requires_grad=True)
        b = torch.tensor(1.2, requires_grad=True)
        thr, s = torch.tensor([-0.5, 0.5]), torch.ones(2)
        grads = []
        threads = torch.get_num_threads()
        try:
            for n in (1, 2):
                torch.set_num_threads(n)
                y = QF.soft_quantize(x, thr, s, 4.0, a, b, 1.0)
                grads.append(torch.autograd.grad(y, (x, a, b), torch.ones_like(y)))
        finally:
            torch.set_num_threads(threads)
        for one, two in zip(*grads):
            assert torch.equal(one, two)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("repeat", [1, 40], ids=["scalar-tail", "vector-lanes"])
    def test_saturates_exactly_and_propagates_nan(self, dtype, repeat):
        # 5 values end up in the scalar tail; repeated 40 times (200 values) they fill every vector lane too
        inf, nan = float("inf"), float("nan")
        x = torch.tensor([-1e30, -inf, 3.0, inf, nan], dtype=dtype).repeat(repeat).requires_grad_()
        thr, s = torch.tensor([0.0], dtype=dtype), torch.tensor([2.0], dtype=dtype)
        y = QF.soft_quantize(x, thr, s, 1e6, 1.0, 1.0, 1.0).view(repeat, 5)
        assert (y[:, :4] == torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=dtype)).all()
        assert y[:, 4].isnan().all()
        (gx,) = torch.autograd.grad(y.sum(), x)
        gx = gx.view(repeat, 5)
        assert (gx[:, :4] == 0).all() and gx[:, 4].isnan().all()

    def test_takes_the_host_dispatch(self, monkeypatch):
        # served through the host kernel's autograd function, by the compiled module's forward
        calls = []
        mod = _native.module()
        monkeypatch.setattr(_native, "module", lambda: calls.append(1) or mod)
        x = torch.randn(10, requires_grad=True)
        QF.soft_quantize(x, torch.tensor([0.0]), torch.ones(1), 2.0).sum().backward()
        assert len(calls) == 2  # forward and backward


def test_native_kernel_switch(monkeypatch):
    monkeypatch.setenv(_native.ENV, "0")
    assert _native.module() is None
    for raw, want in (("", "auto"), ("auto", "auto"), (" 1 ", "on"), ("0", "off"), ("OFF", "off")):
        monkeypatch.setenv(_native.ENV, raw)
        assert _native.mode() == want
    monkeypatch.setenv(_native.ENV, "yes")
    with pytest.raises(ValueError, match=r"QNET_NATIVE_KERNEL must be one of .*got 'yes'"):
        _native.module()


def test_native_kernel_is_the_default_where_it_builds(monkeypatch):
    skip_unless_native_builds()
    monkeypatch.delenv(_native.ENV, raising=False)
    assert _native.module() is not None
    calls = []
    mod = _native.module()
    monkeypatch.setattr(_native, "module", lambda: calls.append(1) or mod)
    x = torch.randn(10, requires_grad=True)
    QF.soft_quantize(x, torch.tensor([0.0]), torch.ones(1), 2.0).sum().backward()
    assert len(calls) == 2  # a plain call with no variable set takes the native kernel both ways


def test_native_kernel_auto_falls_back_with_the_reason(monkeypatch, caplog):
    # no compiler: auto mode warns once, names the reason and runs the eager kernel with the same values
    if _native.capability() not in ("AVX2", "AVX512"):
        pytest.skip("on this CPU auto mode never tries to build")
    monkeypatch.delenv(_native.ENV, raising=False)
    monkeypatch.setenv("CXX", "no-such-compiler-qnet")
    monkeypatch.setattr(_native, "_auto", functools.cache(_native._auto.__wrapped__))
    with caplog.at_level("WARNING", logger="qnet._native"):
        assert _native.module() is None
        assert _native.module() is None
    assert caplog.text.count("not available") == 1 and "no-such-compiler-qnet" in caplog.text
    x = torch.linspace(-2, 2, 9)
    y = QF.soft_quantize(x, torch.tensor([-0.5, 0.5]), torch.ones(2), 3.0, 1.0, 1.0, 1.0)
    want = [_soft_by_hand(v, [-0.5, 0.5], [1.0, 1.0], 3.0, 1.0, 1.0, 1.0) for v in x.tolist()]
    torch.testing.assert_close(y, torch.tensor(want), rtol=1e-5, atol=1e-6)


def test_native_kernel_stale_build_lock_is_cleared(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    assert not _native.clear_stale_lock(str(tmp_path))  # fresh: another build may hold it
    old = lock.stat().st_mtime - 2 * _native.STALE_LOCK_S
    os.utime(lock, (old, old))
    assert _native.clear_stale_lock(str(tmp_path)) and not lock.exists()
    assert not _native.clear_stale_lock(str(tmp_path))  # nothing left to clear


def test_native_kernel_build_directory_names_the_versions(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    d = _native.build_directory("k")
    assert d.startswith(str(tmp_path)) and d.endswith("k")
    assert f"py{sys.version_info.major}{sys.version_info.minor}" in d and "torch" in d and "+" not in d


def test_native_kernel_on_an_unsupported_cpu_falls_back_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv(_native.ENV, "1")
    monkeypatch.setattr(_native, "capability", lambda: "NEON")
    with caplog.at_level("WARNING", logger="qnet._native"):
        assert _native.module() is None
    assert "AVX2/AVX-512" in caplog.text and "NEON" in caplog.text


def test_native_kernel_build_failure_names_the_switch(monkeypatch):
    import torch.utils.cpp_extension as ext

    def broken(**kwargs):
        raise OSError("c++: command not found")

    monkeypatch.setattr(ext, "load", broken)
    with pytest.raises(
        RuntimeError, match=r"could not be built.*command not found.*ninja.*QNET_NATIVE_KERNEL=0"
    ):
        _native._build.__wrapped__("AVX2")
