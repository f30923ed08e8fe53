"""qnet benchmark: layer overhead, conversion/export, size, frozen inference, and QAT peers.

    python packages/qnet/benchmarks/run.py --device cpu --out bench-results/qnet-cpu.json [--data ../shared/data]

Measures (median wall time of repeated runs):
  * forward+backward of QConv2d / QLinear (ternary weights; ternary weights + 2-bit inputs) vs nn.Conv2d /
    nn.Linear;
  * one SGD training step of CIFAR ResNet-20 (batch 64, 32x32): float, qnet W2, qnet W2/A2, STE W2, and
    torch.ao.quantization eager fake-quant QAT with the same bit widths (ternary weights as a 3-level
    symmetric per-tensor int range, 2-bit unsigned activations);
  * time to quantize + export ResNet-20, the real exported file size ratio, frozen-model inference time;
  * with --data: accuracy after the same number of fine-tuning steps (small CNN, faces-24id at 16x16) for
    qnet, STE and torch.ao QAT, all starting from one full-precision model, W2 and W2/A2 (torch.ao eager
    QAT fake-quantizes each quantized module's output, i.e. conv outputs before BatchNorm/ReLU, while qnet
    and STE quantize the ReLU outputs feeding each layer; accuracy is measured without BN re-estimation).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

import qnet
from qnet.models import create_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], Any], device: torch.device, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _fwd_bwd(mod: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        mod.zero_grad(set_to_none=True)
        mod(x).sum().backward()

    return run


def bench_layers(device: torch.device, repeat: int) -> list[dict[str, Any]]:
    rows = []
    x4 = torch.rand(64, 64, 32, 32, device=device)
    x2 = torch.rand(256, 512, device=device)
    cases = [
        ("conv 64->64 3x3, 64x64x32x32", nn.Conv2d(64, 64, 3, padding=1).to(device), x4, qnet.QConv2d),
        ("linear 512->512, batch 256", nn.Linear(512, 512).to(device), x2, qnet.QLinear),
    ]
    for name, base, x, qcls in cases:
        t_base = _time(_fwd_bwd(base, x), device, repeat)
        qw: Any = qcls.from_float(base, weight_levels="ternary")  # type: ignore[attr-defined]
        t_w = _time(_fwd_bwd(qw.train(), x), device, repeat)
        qa: Any = qcls.from_float(base, weight_levels="ternary", act_levels="uint2")  # type: ignore[attr-defined]
        qa.input_quantizer.init_from(x)
        t_wa = _time(_fwd_bwd(qa.train(), x), device, repeat)
        rows.append(
            {
                "layer": name,
                "float_ms": 1e3 * t_base,
                "qnet_w2_ms": 1e3 * t_w,
                "qnet_w2a2_ms": 1e3 * t_wa,
                "w2_overhead": t_w / t_base,
                "w2a2_overhead": t_wa / t_base,
            }
        )
    return rows


def _ao_fake_quant(kind: str) -> Any:
    """torch.ao FakeQuantize constructor: ternary symmetric weights or 2-bit unsigned activations."""
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver

    lo, hi, dtype, qscheme = (
        (-1, 1, torch.qint8, torch.per_tensor_symmetric)
        if kind == "weight"
        else (0, 3, torch.quint8, torch.per_tensor_affine)
    )
    return FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=lo, quant_max=hi, dtype=dtype, qscheme=qscheme
    )


def _ao_qat(model: nn.Module, act: bool) -> nn.Module:
    from torch.ao.quantization import QConfig, prepare_qat

    wfq = _ao_fake_quant("weight")
    afq = _ao_fake_quant("act") if act else torch.nn.Identity
    m = copy.deepcopy(model).train()
    m.qconfig = QConfig(activation=afq, weight=wfq)  # type: ignore[assignment]
    # same policy as qnet: first conv and last linear stay float
    first = next(mod for mod in m.modules() if isinstance(mod, nn.Conv2d))
    first.qconfig = None  # type: ignore[assignment]
    m.fc.qconfig = None  # type: ignore[union-attr,assignment]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_qat(m, inplace=True)
    return m


EAGER = " (eager kernel)"


@contextlib.contextmanager
def _kernel_for(name: str) -> Iterator[None]:
    """Run models named ``... (eager kernel)`` with ``QNET_NATIVE_KERNEL=0``, the others on the default path."""
    old = os.environ.get("QNET_NATIVE_KERNEL")
    if name.endswith(EAGER):
        os.environ["QNET_NATIVE_KERNEL"] = "0"
    else:
        os.environ.pop("QNET_NATIVE_KERNEL", None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("QNET_NATIVE_KERNEL", None)
        else:
            os.environ["QNET_NATIVE_KERNEL"] = old


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, y)


def _round_robin(
    models: dict[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    repeat: int,
    *,
    compiled: bool = False,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _cross_entropy,
) -> dict[str, list[float]]:
    """Seconds per SGD training step of each model, ``repeat`` rounds of one step per model.

    Round-robin so that load changes on a shared machine hit all models alike; 3 warm-up steps each (lazy
    initialisation, the allocator, and the compilation with ``compiled``). Models named ``... (eager
    kernel)`` run with ``QNET_NATIVE_KERNEL=0``, the others on qnet's default path.
    """
    steps = {}
    for name, m in models.items():
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
        run: Any = torch.compile(m) if compiled else m

        def step(run: Any = run, opt: torch.optim.Optimizer = opt, name: str = name) -> None:
            with _kernel_for(name):
                x.grad = None
                opt.zero_grad(set_to_none=True)
                loss(run(x), y).backward()
                opt.step()

        for _ in range(3):
            step()
        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeat):
        for name, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def _ratio_rows(times: dict[str, list[float]], prefix: str, suffix: str = "") -> list[dict[str, Any]]:
    """Median step time and the median over rounds of (model step / float step of the same round)."""
    rows = []
    for name, ts in times.items():
        ratios = [t / f for t, f in zip(ts, times["float"])]
        rows.append(
            {
                "model": f"{prefix}{name}{suffix}",
                "step_ms": 1e3 * statistics.median(ts),
                "vs_float": statistics.median(ratios),
                "vs_float_min": min(ratios),
                "vs_float_max": max(ratios),
            }
        )
    return rows


def _brevitas(model: nn.Module, act: bool, *, keep_first: bool = True) -> nn.Module | None:
    """Brevitas QAT peer of qnet's conversion, or ``None`` when brevitas is not installed.

    Every ``Conv2d`` but the first (qnet's policy; the last layer is a Linear and stays float) becomes a
    ``brevitas.nn.QuantConv2d`` with 2-bit narrow-range weights (ternary, per-tensor learned float scale); with
    ``act`` a 2-bit unsigned ``QuantIdentity`` quantizes its input (the ReLU output), where qnet quantizes it.
    """
    try:
        import brevitas.nn as qnn
        from brevitas.quant import Uint8ActPerTensorFloat
    except ImportError:
        return None
    m = copy.deepcopy(model).train()
    convs = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)]
    for name, conv in convs[1:] if keep_first else convs:
        q = qnn.QuantConv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            groups=conv.groups,
            bias=conv.bias is not None,
            weight_bit_width=2,
        )
        with torch.no_grad():
            q.weight.copy_(conv.weight)
            if conv.bias is not None:
                q.bias.copy_(conv.bias)
        new: nn.Module = (
            nn.Sequential(qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=2), q) if act else q
        )
        parent_name, _, child = name.rpartition(".")
        setattr(m.get_submodule(parent_name) if parent_name else m, child, new)
    return m


def _ao_conv(conv: nn.Conv2d) -> nn.Module:
    """torch.ao QAT of one conv, fake-quant where it belongs: 2-bit unsigned on its input, ternary weights."""
    from torch.ao.nn.qat import Conv2d as QATConv2d
    from torch.ao.quantization import QConfig

    wfq, afq = _ao_fake_quant("weight"), _ao_fake_quant("act")
    conv = copy.deepcopy(conv)
    conv.qconfig = QConfig(activation=afq, weight=wfq)  # type: ignore[assignment]
    return nn.Sequential(afq(), QATConv2d.from_float(conv)).train()


def _square_mean(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return out.square().mean()


def bench_layer_steps(device: torch.device, repeat: int) -> list[dict[str, Any]]:
    """Training steps of one 64->64 3x3 conv, batch 32 at 32x32 (the issue-16 case), round-robin.

    The W2/A2 models quantize the conv's (non-negative) input to 2 unsigned bits and its weights to ternary
    levels; rows: float, qnet on its default path and with the eager kernel, STE, ``torch.ao`` QAT and Brevitas
    (when installed). The input requires grad, as for a layer inside a network.
    """
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device)
    # the input requires grad as inside a network (every layer but the first passes a gradient back), and a
    # learned activation scale needs the conv's input gradient anyway
    x = torch.randn(32, 64, 32, 32, device=device).relu().requires_grad_()
    y = torch.zeros(1, device=device)  # unused by the loss

    def q(**kw: Any) -> nn.Module:
        return qnet.quantize(nn.Sequential(copy.deepcopy(conv)), keep_first_last=False, **kw)

    w2a2 = q(weight_levels="ternary", act_levels="uint2", calibration=[x])
    models: dict[str, nn.Module] = {
        "float": nn.Sequential(conv),
        "qnet W2": q(weight_levels="ternary"),
        "qnet W2" + EAGER: q(weight_levels="ternary"),
        "qnet W2/A2": w2a2,
        "qnet W2/A2" + EAGER: copy.deepcopy(w2a2),
        "STE W2/A2": q(weight_levels="ternary", act_levels="uint2", calibration=[x], method="ste"),
        "torch.ao QAT W2/A2": _ao_conv(conv),
    }
    for act in (False, True):
        b = _brevitas(nn.Sequential(conv), act, keep_first=False)
        if b is not None:
            models["Brevitas W2/A2" if act else "Brevitas W2"] = b.to(device)
    _warm_native()
    times = _round_robin(models, x, y, device, repeat, loss=_square_mean)
    return _ratio_rows(times, "conv 64->64 3x3, batch 32x64x32x32: ")


def _warm_native() -> None:
    """Build (or load) qnet's native kernel before anything is timed; logs why when it is unavailable."""
    from qnet import _native

    with _kernel_for(""):
        _native.module()


def bench_steps(device: torch.device, repeat: int, *, compiled: bool = False) -> list[dict[str, Any]]:
    """ResNet-20 training steps of float, qnet, STE, torch.ao QAT and Brevitas models, round-robin.

    qnet runs on its default path (the native kernel where it builds) and, in the ``(eager kernel)`` rows, with
    ``QNET_NATIVE_KERNEL=0``. With ``compiled``: float and qnet W2/A2 only, both under ``torch.compile``.
    """
    torch.manual_seed(0)
    base = create_model("resnet20", num_classes=10).to(device)
    x = torch.randn(64, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (64,), device=device)
    w2a2 = qnet.quantize(base, weight_levels="ternary", act_levels="uint2", calibration=[x])
    if compiled:
        models = {"float": base, "qnet W2/A2": w2a2}
    else:
        models = {
            "float": base,
            "qnet W2": qnet.quantize(base, weight_levels="ternary"),
            "qnet W2/A2": w2a2,
            "qnet W2/A2" + EAGER: copy.deepcopy(w2a2),
            "STE W2": qnet.quantize(base, weight_levels="ternary", method="ste"),
            "torch.ao QAT W2": _ao_qat(base, act=False),
            "torch.ao QAT W2/A2": _ao_qat(base, act=True),
        }
        for act in (False, True):
            b = _brevitas(base, act)
            if b is not None:
                models["Brevitas W2/A2" if act else "Brevitas W2"] = b.to(device)
    if device.type == "cpu":
        _warm_native()
    times = _round_robin(models, x, y, device, repeat, compiled=compiled)
    return _ratio_rows(times, "resnet20 ", " (torch.compile)" if compiled else "")


def bench_export(device: torch.device, repeat: int) -> list[dict[str, Any]]:
    rows = []
    torch.manual_seed(0)
    base = create_model("resnet20", num_classes=10).to(device).eval()
    x = torch.randn(64, 3, 32, 32, device=device)
    with torch.no_grad():
        t_float = _time(lambda: base(x), device, repeat)
    for levels in ("binary", "ternary", "pm4"):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.safetensors")
            t0 = time.perf_counter()
            q = qnet.quantize(base, weight_levels=levels)
            sizes = qnet.export(q, path)
            t_conv = time.perf_counter() - t0
            frozen = qnet.load(path, copy.deepcopy(base))
            with torch.no_grad():
                t_frozen = _time(lambda f=frozen: f(x), device, repeat)
                same = bool(torch.equal(frozen(x), q.eval()(x)))
        rows.append(
            {
                "levels": levels,
                "quantize_export_s": t_conv,
                "file_bytes": sizes["file_bytes"],
                "float32_bytes": sizes["float32_bytes"],
                "size_ratio": sizes["ratio"],
                "quantized_layers_ratio": sizes["quantized_ratio"],
                "frozen_infer_ms": 1e3 * t_frozen,
                "float_infer_ms": 1e3 * t_float,
                "frozen_equals_hard": same,
            }
        )
    return rows


def bench_accuracy(device: torch.device, data: str, epochs: int) -> list[dict[str, Any]]:
    from torch.utils.data import DataLoader

    from qnet.data import ImageFolderDataset, stratified_split
    from qnet.recipes import evaluate, train

    ds = ImageFolderDataset(
        os.path.join(data, "faces-24id"), size=16, mean=[0.56, 0.44, 0.37], std=[0.28, 0.24, 0.23]
    )
    tr, te = stratified_split(ds.labels, 0.25)
    dtr, dte = ds.subset(tr, flip=True), ds.subset(te)

    def loader(d: Any, shuffle: bool, seed: int = 0) -> DataLoader:
        return DataLoader(d, batch_size=64, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))

    torch.manual_seed(0)
    net = create_model("small_cnn", num_classes=24, width=16).to(device)
    train(net, loader(dtr, True), epochs=10, lr=0.05, milestones=(7,), weight_decay=5e-4, grad_clip=None)
    rows = [
        {
            "method": "float (start point)",
            "accuracy": evaluate(net, loader(dte, False))["accuracy"],
            "step_ms": None,
        }
    ]
    for name in ("qnet W2", "STE W2", "torch.ao QAT W2", "qnet W2/A2", "STE W2/A2", "torch.ao QAT W2/A2"):
        torch.manual_seed(1)
        ld = loader(dtr, True, 1)
        act = name.endswith("/A2")
        al = "uint2" if act else None
        scheds: list[qnet.TemperatureSchedule] = []
        if name.startswith("qnet"):
            m = qnet.quantize(net, weight_levels="ternary", act_levels=al, calibration=ld if act else None)
            scheds.append(qnet.TemperatureSchedule(m, increment=60.0, steps_per_epoch=len(ld), kind="weight"))
            if act:
                scheds.append(
                    qnet.TemperatureSchedule(m, increment=10.0, steps_per_epoch=len(ld), kind="input")
                )
        elif name.startswith("STE"):
            m = qnet.quantize(
                net, weight_levels="ternary", act_levels=al, method="ste", calibration=ld if act else None
            )
        else:
            m = _ao_qat(net, act=act)
        t0 = time.perf_counter()
        qlr = 0.001 if act else 0.01
        hist = train(m, ld, epochs=epochs, lr=0.01, quantizer_lr=qlr, temperature=scheds, device=device)
        dt = (time.perf_counter() - t0) / hist[-1]["step"]
        rows.append(
            {"method": name, "accuracy": evaluate(m, loader(dte, False))["accuracy"], "step_ms": 1e3 * dt}
        )
    return rows


def _onnx_breakdown(path: str) -> dict[str, int]:
    """Bytes of an ONNX file by kind: int8 initialisers, float initialisers (by layer family), graph rest."""
    import onnx

    m = onnx.load(path)
    out: dict[str, int] = {}
    for t in m.graph.initializer:
        n = len(onnx.numpy_helper.to_array(t).tobytes())
        if t.data_type == onnx.TensorProto.INT8:
            key = "int8 weights (18 ternary convs)"
        elif t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 4:
            key = "float conv weights (first conv)"
        elif t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2:
            key = "float linear weight (fc)"
        else:  # BN scale/shift/mean/var, biases, per-layer scales, zero points, shape constants
            key = "float vectors (BN, biases, scales, zero points)"
        out[key] = out.get(key, 0) + n
    out["graph, names and protobuf framing"] = os.path.getsize(path) - sum(out.values())
    return out


def bench_onnx(repeat: int, model: str = "random", data: str | None = None) -> list[dict[str, Any]]:
    """onnxruntime fp32 vs QDQ option-A ResNet-20: file sizes and latency at batch 1 / 64, 1 / 2 threads.

    ``model="random"``: a randomly initialised ResNet-20 quantized here (W2, W2/A2; latency and size do not
    depend on the weights). ``model="shipped"``: the float start point (the akamaster file under ``data``, or
    random weights of the same size without it) against the ternary ResNet-20 shipped in the wheel, plus a
    byte breakdown of the QDQ file.
    """
    import numpy as np
    import onnxruntime as ort

    torch.manual_seed(0)
    net = qnet.models.resnet20_a().eval()
    if model == "shipped" and data is not None:
        teacher = os.path.join(data, "cifar10-resnet-teachers", "resnet20-12fca82f.th")
        if os.path.isfile(teacher):
            net = qnet.models.resnet20_a(weights=teacher).eval()
    calib = torch.randn(64, 3, 32, 32)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        paths: dict[str, str] = {}
        no_qdq: set[str] = set()
        pt = os.path.join(d, "float.pt")
        torch.save(net.state_dict(), pt)
        fp = os.path.join(d, "fp32.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (calib[:1],),
                fp,
                dynamo=False,
                opset_version=13,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        paths["onnx fp32"] = fp
        sizes = {"float .pt (state_dict)": os.path.getsize(pt), "onnx fp32": os.path.getsize(fp)}
        if model == "shipped":
            q = qnet.models.create_model("resnet20_a_ternary", weights="cifar10")
            shipped = qnet.models.shipped_weights_path("resnet20_a_ternary", "cifar10")
            sizes["qnet bit-packed W2 (shipped file)"] = os.path.getsize(shipped)
            path = os.path.join(d, "shipped_W2.onnx")
            qnet.export_onnx(q, calib[:1], path)
            paths["onnx QDQ W2 (shipped)"] = path
            paths["onnx QDQ W2 (shipped), ORT QDQ handling off"] = path
            no_qdq.add("onnx QDQ W2 (shipped), ORT QDQ handling off")
            sizes["onnx QDQ W2 (shipped)"] = os.path.getsize(path)
            for part, n in _onnx_breakdown(path).items():
                sizes[f"  of which: {part}"] = n
        for name, al in (("W2", None), ("W2/A2", "uint2")) if model == "random" else ():
            q = qnet.quantize(
                net,
                weight_levels="ternary",
                act_levels=al,
                calibration=[calib] if al else None,
                act_init="midpoint",
            )
            qnet.freeze(q, bn_loader=[calib])
            packed = os.path.join(d, f"{name.replace('/', '')}.safetensors")
            qnet.export(q, packed)
            sizes[f"qnet bit-packed {name}"] = os.path.getsize(packed)
            path = os.path.join(d, f"{name.replace('/', '')}.onnx")
            qnet.export_onnx(q, calib[:1], path)
            paths[f"onnx QDQ {name}"] = path
            sizes[f"onnx QDQ {name}"] = os.path.getsize(path)
        for name, size in sizes.items():
            rows.append({"what": "file size", "model": name, "bytes": size})
        for threads in (1, 2):
            for batch in (1, 64):
                x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
                sessions = {}
                for name, path in paths.items():
                    so = ort.SessionOptions()
                    so.intra_op_num_threads = threads
                    so.inter_op_num_threads = 1
                    if name in no_qdq:  # DequantizeLinear of constant weights folded at load: a float graph
                        so.add_session_config_entry("session.disable_quant_qdq", "1")
                    sessions[name] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                times: dict[str, list[float]] = {n: [] for n in sessions}
                for _ in range(repeat):  # round-robin: every model sees the same machine state
                    for name, sess in sessions.items():
                        t0 = time.perf_counter()
                        sess.run(None, {"input": x})
                        times[name].append(time.perf_counter() - t0)
                base = statistics.median(times["onnx fp32"])
                for name, ts in times.items():
                    med = statistics.median(ts)
                    rows.append(
                        {
                            "what": "latency",
                            "model": name,
                            "threads": threads,
                            "batch": batch,
                            "median_ms": 1000 * med,
                            "speedup_vs_fp32": base / med,
                        }
                    )
    keys = ["what", "model", "bytes", "threads", "batch", "median_ms", "speedup_vs_fp32"]
    return [{k: r.get(k, "") for k in keys} for r in rows]


def _table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = [f"\n## {title}", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--out", default="bench-results/qnet-cpu.json")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--data", default=None, help="shared data folder (enables the accuracy comparison)")
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of the accuracy comparison")
    ap.add_argument(
        "--parts",
        default="layers,layer_steps,steps,export,accuracy",
        help="comma-separated subset of layers,layer_steps,steps,export,accuracy,compile,onnx (layer_steps: one "
        "64->64 conv's training step vs float, STE, torch.ao and Brevitas (when installed); compile: inductor, "
        "needs a C++ compiler, not in the default; onnx: onnxruntime fp32 vs QDQ latency and file sizes, needs "
        "qnet-torch[onnx])",
    )
    ap.add_argument(
        "--onnx-model",
        default="random",
        choices=("random", "shipped"),
        help="onnx part: a random ResNet-20 quantized here (W2, W2/A2) or the shipped ternary ResNet-20 against "
        "its float start point (with --data: the akamaster weights)",
    )
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"layers", "layer_steps", "steps", "export", "accuracy", "compile", "onnx"}
    if unknown:
        print(f"--parts: unknown part(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    data = args.data
    if data is None and "accuracy" in parts:
        cand = os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "shared", "data"
        )
        data = cand if os.path.isdir(os.path.join(cand, "faces-24id")) else None
    res: dict[str, Any] = {
        "package": "qnet",
        "version": qnet.__version__,
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "layers": bench_layers(device, args.repeat) if "layers" in parts else [],
        "layer_step": bench_layer_steps(device, args.repeat) if "layer_steps" in parts else [],
        "train_step": bench_steps(device, args.repeat) if "steps" in parts else [],
        "export": bench_export(device, args.repeat) if "export" in parts else [],
        "compiled_step": bench_steps(device, args.repeat, compiled=True) if "compile" in parts else [],
        "onnx": bench_onnx(args.repeat, args.onnx_model, args.data) if "onnx" in parts else [],
        "onnx_model": args.onnx_model if "onnx" in parts else None,
    }
    if data is not None and "accuracy" in parts:
        res["accuracy"] = bench_accuracy(device, data, args.epochs)
    out = "\n".join(
        [
            f"# qnet {qnet.__version__} benchmark on {args.device} ({res['device_name']}, torch {torch.__version__})",
            _table("Layer forward+backward (ms)", res["layers"]),
            _table("One conv layer's training step (ms)", res["layer_step"]),
            _table("ResNet-20 training step, batch 64 (ms)", res["train_step"]),
            _table("Quantize + export ResNet-20", res["export"]),
            _table("ResNet-20 training step under torch.compile, batch 64 (ms)", res["compiled_step"]),
            _table("onnxruntime option-A ResNet-20: fp32 vs QDQ (file sizes, latency)", res["onnx"]),
            _table(
                f"Accuracy after the same fine-tuning ({args.epochs} epochs, faces-24id 16x16)",
                res.get("accuracy", []),
            ),
        ]
    )
    print(out)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
