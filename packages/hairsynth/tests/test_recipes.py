"""Data reader and training recipe on real hair photos (CelebAMask-HQ subset)."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from hairsynth import create_model, load_checkpoint, save_checkpoint
from hairsynth import functional as HF
from hairsynth.data import HairPairDataset, find_pairs
from hairsynth.recipes import TrainConfig, evaluate, train


@pytest.fixture
def celeb(shared_data):
    return os.path.join(shared_data, "celeb1k-hair")


class TestData:
    def test_sample(self, celeb):
        ds = HairPairDataset(
            celeb, "train", size=64, limit=4, augment=False, deterministic=True, stroke_count=(2, 4)
        )
        s = ds[1]
        assert s["image"].shape == (3, 64, 64) and s["mask"].shape == (1, 64, 64)
        assert s["stroke_color"].shape == (3, 64, 64) and s["stroke_mask"].shape == (1, 64, 64)
        assert s["stroke_mask"].sum() > 0
        # strokes lie in the hair (their centre lines do; a width-4 stroke may exceed it by 2 px = dilation)
        assert (s["stroke_mask"] * (1 - s["mask"])).sum() <= 0.05 * s["stroke_mask"].sum()
        assert torch.equal(ds[1]["stroke_mask"], s["stroke_mask"])  # deterministic
        assert (s["mask"] >= s["hair_mask"]).all()

    def test_figaro_layout(self, shared_data):
        """Figaro-1k (``training/images`` + ``training/masks``, masks named like the photos) reads the same way."""
        ds = HairPairDataset(
            os.path.join(shared_data, "figaro1k"),
            "training",
            size=64,
            limit=2,
            augment=False,
            deterministic=True,
        )
        s = ds[0]
        assert s["image"].shape == (3, 64, 64) and 0 < s["hair_mask"].mean() < 1
        assert s["stroke_mask"].sum() > 0

    def test_colorless_and_errors(self, celeb, tmp_path):
        ds = HairPairDataset(celeb, "val", size=32, limit=2, colorless_strokes=True, deterministic=True)
        s = ds[0]
        assert torch.equal(s["stroke_color"], s["stroke_mask"].expand(3, -1, -1))
        with pytest.raises(FileNotFoundError, match=r"find_pairs: expected folders"):
            find_pairs(tmp_path)
        with pytest.raises(ValueError, match=r"HairPairDataset: 'size' must be an int >= 16"):
            HairPairDataset(celeb, "val", size=8)
        with pytest.raises(IndexError, match=r"HairPairDataset: index 5 out of range"):
            ds[5]
        with pytest.raises(ValueError, match=r"HairPairDataset: 'mask_dilation' must be an int >= 0; got -1"):
            HairPairDataset(celeb, "val", size=32, mask_dilation=-1)
        with pytest.raises(
            ValueError, match=r"HairPairDataset: 'stroke_width' must be \(low, high\) with 0 < low"
        ):
            HairPairDataset(celeb, "val", size=32, stroke_width=(0.0, 1.0))
        with pytest.raises(ValueError, match=r"HairPairDataset: 'limit' must be None or an int >= 1; got 0"):
            HairPairDataset(celeb, "val", size=32, limit=0)


def _fill_baseline(ds):
    """Non-learned baseline: fill the region with the mean colour of the guide strokes."""
    outs = []
    for i in range(len(ds)):
        s = ds[i]
        sm = s["stroke_mask"]
        col = (s["stroke_color"] * sm).sum((1, 2)) / sm.sum().clamp_min(1)
        outs.append(
            HF.composite(s["image"][None], col.view(1, 3, 1, 1).expand(1, 3, *sm.shape[-2:]), s["mask"][None])
        )
    return outs


def test_training_loss_falls_and_beats_fill_baseline(celeb, device, tmp_path):
    torch.manual_seed(0)
    tr = HairPairDataset(celeb, "train", size=64, limit=32)
    va = HairPairDataset(celeb, "val", size=64, limit=8, augment=False, deterministic=True)
    cfg = TrainConfig(
        arch="hairsynth_tiny", steps=100, batch_size=8, lr=2e-3, adv_weight=0.0, fm_weight=0.0, log_every=10
    )
    res = train(cfg, tr, out_dir=tmp_path, progress=False, device=device)
    l1 = [h["l1"] for h in res["history"]]
    assert min(l1[-2:]) < 0.8 * l1[0], l1
    model = res["model"].eval()
    ours, base = 0.0, 0.0
    with torch.no_grad():
        for i, b in zip(range(len(va)), _fill_baseline(va)):
            s = va[i]
            args = [s[k][None].to(device) for k in ("image", "mask", "stroke_color", "stroke_mask")]
            ours += float(HF.masked_l1(model(*args)["output"], args[0], args[1]))
            base += float(HF.masked_l1(b.to(device), args[0], args[1]))
    # measured on CPU: ~0.143 (ours) vs ~0.164 (fill) mean masked L1 over 8 held-out photos
    assert ours < 0.92 * base, (ours, base)
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 100 and ck["config"]["train"]["steps"] == 100


def test_adversarial_step_and_resume(celeb, device, tmp_path):
    ds = HairPairDataset(celeb, "val", size=32, limit=4)
    cfg = TrainConfig(
        arch="hairsynth_tiny",
        model_kwargs={"num_downs": 3},
        steps=2,
        batch_size=2,
        checkpoint_every=1,
        log_every=1,
    )
    seen = []
    res = train(
        cfg, ds, out_dir=tmp_path, progress=False, device=device, callback=lambda st, logs: seen.append(st)
    )
    assert seen == [1, 2] and {"loss_d", "g_adv", "fm"} <= set(res["history"][-1])
    cfg2 = TrainConfig(**{**cfg.__dict__, "steps": 3})
    res2 = train(cfg2, ds, out_dir=tmp_path, resume=tmp_path / "last.pt", progress=False, device=device)
    assert res2["step"] == 3 and len(res2["history"]) == 1
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["step"] == 3 and "discriminators" in ck["extra_state_dicts"]
    m = evaluate(res2["model"], ds, batch_size=2)
    assert set(m) == {"l1", "psnr", "ssim"} and 0 <= m["l1"] <= 1


def test_perceptual_term_with_user_weights(celeb, device, tmp_path):
    """The optional VGG perceptual loss: a user-supplied torchvision-style VGG-19 file enters the generator loss."""
    from hairsynth import VGG19Features

    # random weights saved with torchvision's key names stand in for the user's VGG-19 file
    torch.save(
        {f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}, tmp_path / "vgg.pth"
    )
    ds = HairPairDataset(celeb, "val", size=32, limit=2)
    kw = dict(
        arch="hairsynth_tiny",
        model_kwargs={"num_downs": 3},
        steps=1,
        batch_size=2,
        log_every=1,
        adv_weight=0.0,
    )
    kw["fm_weight"] = 0.0
    with_p = train(
        TrainConfig(**kw, perceptual_weight=1.0, perceptual_weights=str(tmp_path / "vgg.pth")),
        ds,
        progress=False,
        device=device,
    )["history"][-1]
    without = train(TrainConfig(**kw), ds, progress=False, device=device)["history"][-1]
    assert with_p["perceptual"] > 0 and "perceptual" not in without
    # same seed, same first batch: the generator loss differs by exactly the perceptual term
    assert with_p["loss_g"] == pytest.approx(without["loss_g"] + with_p["perceptual"], rel=1e-4)


def test_config_errors():
    with pytest.raises(ValueError, match=r"TrainConfig: 'perceptual_weight' > 0 needs 'perceptual_weights'"):
        TrainConfig(perceptual_weight=1.0)
    with pytest.raises(ValueError, match=r"TrainConfig: 'gan_mode' must be"):
        TrainConfig(gan_mode="wgan")
    with pytest.raises(TypeError, match=r"train: 'config' must be a TrainConfig"):
        train({}, [])  # type: ignore[arg-type]
    # log_every=0 used to fail with ZeroDivisionError after the first training step
    with pytest.raises(ValueError, match=r"TrainConfig: 'log_every' must be an int >= 1; got 0"):
        TrainConfig(log_every=0)
    with pytest.raises(ValueError, match=r"TrainConfig: 'checkpoint_every' must be an int >= 1; got 0"):
        TrainConfig(checkpoint_every=0)
    with pytest.raises(ValueError, match=r"TrainConfig: 'steps' must be an int >= 1; got 2.5"):
        TrainConfig(steps=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"TrainConfig: 'lr' must be > 0; got 0.0"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match=r"TrainConfig: 'adv_weight' must be >= 0; got -1.0"):
        TrainConfig(adv_weight=-1.0)


def test_resume_and_evaluate_errors(celeb, device, tmp_path):
    ds = HairPairDataset(celeb, "val", size=32, limit=2)
    model = create_model("hairsynth_tiny", num_downs=3).to(device)
    # a weights-only checkpoint (no optimiser state) cannot be resumed from: it names what is missing
    save_checkpoint(tmp_path / "w.pt", model, arch="hairsynth_tiny", config=model.config)
    cfg = TrainConfig(arch="hairsynth_tiny", model_kwargs={"num_downs": 3}, steps=2, batch_size=2)
    with pytest.raises(
        ValueError, match=r"train: 'resume' checkpoint .* lacks \['optimizer', 'discriminators'"
    ):
        train(cfg, ds, resume=tmp_path / "w.pt", progress=False, device=device)
    with pytest.raises(ValueError, match=r"train: 'dataset' is empty"):
        train(cfg, [], progress=False, device=device)
    with pytest.raises(TypeError, match=r"evaluate: 'model' must be a HairSynthesisNet; got Linear"):
        evaluate(torch.nn.Linear(2, 2), ds)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"evaluate: 'batch_size' must be an int >= 1; got 0"):
        evaluate(model, ds, batch_size=0)
    with pytest.raises(ValueError, match=r"evaluate: 'device' is meta but the model is on"):
        evaluate(model, ds, device="meta")


def _ddp_worker(rank: int, port: int, root: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        ds = HairPairDataset(root, "val", size=32, limit=4)
        cfg = TrainConfig(arch="hairsynth_tiny", model_kwargs={"num_downs": 3}, steps=1, batch_size=1)
        train(cfg, ds, out_dir=out, progress=False, device="cpu")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_process_gloo_step(celeb, tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as sck:
        sck.bind(("127.0.0.1", 0))
        port = sck.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, celeb, str(tmp_path)), nprocs=2, join=True)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1


def _states(path):
    ck = torch.load(path, weights_only=True)
    sd, dsd = ck["state_dict"], ck["extra_state_dicts"]["discriminators"]
    return {
        "G1": {k: v for k, v in sd.items() if k.startswith("synthesis.")},
        "G2": {k: v for k, v in sd.items() if k.startswith("refinement.")},
        "D1": {k: v for k, v in dsd.items() if k.startswith("nets.0.")},
        "D2": {k: v for k, v in dsd.items() if k.startswith("nets.1.")},
    }


def _moved(a, b):
    """Names of the parts (G1, G2, D1, D2) whose trainable tensors differ between two checkpoints."""
    # spectral-norm power-iteration vectors (`_u`/`_v`) are buffers updated by every discriminator forward
    # pass, trained or not; only parameters count as "moved"
    return {
        part
        for part in a
        if any(not torch.equal(a[part][k], b[part][k]) for k in a[part] if not k.endswith(("_u", "_v")))
    }


class TestStagedSchedule:
    def test_phases(self):
        cfg = TrainConfig(steps=10, schedule="staged", stage_steps=(2, 3))
        assert [cfg.phase(i) for i in range(7)] == ["synthesis"] * 2 + ["refinement"] * 3 + ["joint"] * 2
        # default: a third of the steps each (9 // 3 = 3)
        assert [TrainConfig(steps=9, schedule="staged").phase(i) for i in (2, 3, 5, 6)] == [
            "synthesis",
            "refinement",
            "refinement",
            "joint",
        ]
        assert {TrainConfig(steps=4).phase(i) for i in range(4)} == {"joint"}
        assert TrainConfig(schedule="staged", stage_steps=[1, 2]).to_dict()["stage_steps"] == [1, 2]

    def test_each_phase_moves_only_its_parameters(self, celeb, device, tmp_path):
        """G1 then G2 then joint: a resume chain, one checkpoint per step, parts compared between them."""
        ds = HairPairDataset(celeb, "val", size=32, limit=4)
        base = dict(
            arch="hairsynth_tiny",
            model_kwargs={"num_downs": 3},
            batch_size=2,
            schedule="staged",
            stage_steps=(2, 2),
            disc_layers=2,
        )
        paths, resume = [], None
        for steps in range(1, 6):  # steps 0-1 synthesis, 2-3 refinement, 4 joint
            out = tmp_path / f"s{steps}"
            res = train(
                TrainConfig(steps=steps, **base),
                ds,
                out_dir=out,
                resume=resume,
                progress=False,
                device=device,
            )
            assert res["step"] == steps
            # frozen parts are trainable again once train returns
            assert all(p.requires_grad for p in res["model"].parameters())
            paths.append(out / "last.pt")
            resume = paths[-1]
        st = [_states(p) for p in paths]
        assert _moved(st[0], st[1]) == {"G1", "D1"}  # step 1: synthesis phase
        assert _moved(st[1], st[2]) == {"G2", "D2"}  # step 2: refinement phase, G1 frozen
        assert _moved(st[2], st[3]) == {"G2", "D2"}  # step 3: refinement phase
        assert _moved(st[3], st[4]) == {"G1", "G2", "D1", "D2"}  # step 4: joint fine-tuning

    def test_user_frozen_parameters_stay_frozen(self, celeb, device):
        ds = HairPairDataset(celeb, "val", size=32, limit=2)
        model = create_model("hairsynth_tiny", num_downs=3)
        first = model.synthesis.last_conv
        first.requires_grad_(False)
        before = first.weight.detach().clone()
        cfg = TrainConfig(
            steps=2, batch_size=2, schedule="staged", stage_steps=(1, 0), adv_weight=0.0, fm_weight=0.0
        )
        res = train(cfg, ds, model=model, progress=False, device=device)
        assert res["model"] is model
        assert torch.equal(first.weight.detach().cpu(), before.cpu()) and not first.weight.requires_grad

    def test_errors(self, celeb):
        ds = HairPairDataset(celeb, "val", size=32, limit=2)
        with pytest.raises(
            ValueError, match=r"TrainConfig: 'schedule' must be 'joint' or 'staged'; got 'g1'"
        ):
            TrainConfig(schedule="g1")
        with pytest.raises(ValueError, match=r"TrainConfig: 'stage_steps' must be None or two ints >= 0"):
            TrainConfig(schedule="staged", stage_steps=(1, -1))
        with pytest.raises(
            ValueError, match=r"train: schedule='staged' needs a model with a refinement network"
        ):
            train(
                TrainConfig(steps=1, schedule="staged", model_kwargs={"use_refinement": False}),
                ds,
                progress=False,
            )
        with pytest.raises(TypeError, match=r"train: 'model' must be a HairSynthesisNet or None; got Linear"):
            train(TrainConfig(steps=1), ds, model=torch.nn.Linear(2, 2), progress=False)  # type: ignore[arg-type]
