"""Short seeded training runs on real data: losses fall, the method beats its baseline, the pose
discriminator learns pose consistency, the identity encoder separates identities; resume; DDP (slow)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from occfill.checkpoint import load_checkpoint
from occfill.data import FaceRecord, PairedFaces
from occfill.functional import composite, discriminator_loss, occlude
from occfill.masks import eye_box_mask
from occfill.models import CompletionGenerator, PoseDiscriminator
from occfill.pose import pose_map
from occfill.recipes import (
    CompletionConfig,
    evaluate_completion,
    train_completion,
    train_identity_encoder,
)

SIZE = 32


def _faces(shared_data, n_ids=8, n_train=30, n_test=10):
    """Real faces: 8 identities, 30 training and 10 held-out photos each (different photos, same people)."""
    root = os.path.join(shared_data, "faces-24id")
    names = sorted(os.listdir(root))[:n_ids]
    tr, te = [], []
    for lab, name in enumerate(names):
        files = sorted(os.listdir(os.path.join(root, name)))[: n_train + n_test]
        tr += [FaceRecord(os.path.join(root, name, f), lab) for f in files[:n_train]]
        te += [FaceRecord(os.path.join(root, name, f), lab) for f in files[n_train:]]
    return PairedFaces(tr, size=SIZE), PairedFaces(te, size=SIZE)


@pytest.fixture(scope="module")
def faces(shared_data):
    return _faces(shared_data)


@pytest.fixture(scope="module")
def encoder(faces):
    torch.manual_seed(0)
    train, _ = faces
    losses = []
    enc = train_identity_encoder(
        train,
        num_classes=8,
        steps=60,
        batch_size=32,
        base_channels=8,
        embedding_dim=32,
        input_size=SIZE,
        lr=3e-3,
        callback=lambda s, m: losses.append(m["loss"]),
    )
    return enc, losses


def _small_config(**kw):
    return CompletionConfig(base_channels=8, depth=3, d_base_channels=8, d_layers=2, use_pose=False, **kw)


@pytest.mark.slow
def test_identity_encoder_separates_identities(encoder, faces, device):
    enc, losses = encoder
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    _, test = faces
    enc = enc.to(device)
    with torch.no_grad():
        x = torch.stack([test[i]["image"] for i in range(len(test))]).to(device)
        y = torch.tensor([r.label for r in test.records], device=device)
        e = enc(x)
    sim = e @ e.T
    same = (y[:, None] == y[None]) & ~torch.eye(len(y), dtype=torch.bool, device=device)
    diff = y[:, None] != y[None]
    # held-out photos: same-person similarity clearly above different-person (measured ~0.39 vs ~0.07)
    assert float(sim[same].mean()) > float(sim[diff].mean()) + 0.15


@pytest.mark.slow
def test_completion_loss_falls_and_beats_inpainting_baseline(encoder, faces, device):
    train, test = faces
    enc = encoder[0]
    results, hist = {}, {}
    for name, cfg in (("full", _small_config()), ("baseline", _small_config(use_reference=False))):
        h: list[float] = []
        res = train_completion(
            train,
            config=cfg,
            encoder=enc,
            steps=60,
            batch_size=16,
            device=device,
            seed=0,
            callback=lambda s, m, h=h: h.append(m["rec"]),
        )
        hist[name] = h
        results[name] = (res, evaluate_completion(res.generator, test, encoder=enc, device=device))
    for h in hist.values():
        assert sum(h[-5:]) / 5 < 0.85 * sum(h[:5]) / 5
    full, base = results["full"][1], results["baseline"][1]
    # with the reference photo the ocular region is reconstructed better on held-out photos
    assert full["ssim"] > base["ssim"]
    assert full["psnr"] > base["psnr"]
    # same-identity reference -> output closer to the ground truth's identity than a stranger's reference
    # (measured: cos 0.704 with the right reference vs 0.666 with a stranger's; full vs baseline SSIM
    # 0.580 vs 0.529, PSNR 15.45 vs 15.19 dB). reports/occfill/report.md ("The tests' setting") reruns this
    # exact setting with the reproduction's pinning (one thread, deterministic algorithms): 0.591 vs 0.537,
    # 15.58 vs 15.31 dB. These directions hold for this 32-px setting; the 128-px report rows are another one.
    gen = results["full"][0].generator
    batch = next(iter(torch.utils.data.DataLoader(test, batch_size=len(test))))
    yv, s, m = batch["image"].to(device), batch["reference"].to(device), batch["mask"].to(device)
    lab = batch["label"]
    other = torch.tensor([int(torch.nonzero(lab != lab[i])[i % 10]) for i in range(len(lab))])
    g = torch.Generator(device=device)
    with torch.no_grad():
        sims = []
        for ref in (s, yv[other.to(device)]):
            g.manual_seed(0)
            out = composite(gen(occlude(yv, m), ref, None, mask=m, generator=g), yv, m)
            sims.append(float(F.cosine_similarity(enc(out), enc(yv)).mean()))
    assert sims[0] > sims[1]


@pytest.mark.slow
def test_pose_discriminator_learns_pose_consistency(shared_data, device):
    """D_p sees (image, L) vs (image, L') with L' the pose of another render: after a short training it
    scores the true pose map higher on held-out identities (untrained: about half the time)."""
    root = os.path.join(shared_data, "ict-faces-128")
    train = PairedFaces.from_meta_jsonl(root, identities=range(30), size=SIZE)
    test = PairedFaces.from_meta_jsonl(root, identities=range(90, 100), size=SIZE)
    torch.manual_seed(0)
    d = PoseDiscriminator(base_channels=8, n_layers=3, spectral_norm=False).to(device)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, drop_last=True)
    step = 0
    while step < 200:
        for batch in loader:
            x, a = batch["image"].to(device), batch["angles"].to(device)
            lm, wrong = pose_map(a, SIZE, SIZE), pose_map(a.roll(1, dims=0), SIZE, SIZE)
            loss = discriminator_loss(d(x, lm), d(x, wrong), kind="bce")
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == 200:
                break
    d.eval()
    batch = next(iter(torch.utils.data.DataLoader(test, batch_size=len(test))))
    x, a = batch["image"].to(device), batch["angles"].to(device)
    # L' = the pose of the render whose yaw differs most, so the pair is really mismatched
    other = (a[:, 1][:, None] - a[:, 1][None]).abs().argmax(dim=1)
    with torch.no_grad():
        right = d(x, pose_map(a, SIZE, SIZE)).mean(dim=(1, 2, 3))
        wrong = d(x, pose_map(a[other], SIZE, SIZE)).mean(dim=(1, 2, 3))
    # measured 0.87 after 200 steps (0.3-0.5 after 40 steps)
    assert float((right > wrong).float().mean()) >= 0.75


def test_resume_and_checkpoint(faces, device, tmp_path):
    train, _ = faces
    cfg = _small_config(identity_weight=0.0)
    path = tmp_path / "g.pt"
    train_completion(train, config=cfg, steps=3, batch_size=4, device=device, checkpoint=path)
    ck = load_checkpoint(path)
    assert ck["step"] == 3 and set(ck["modules"]) == {"global"} and ck["arch"] == "occfill_generator"
    res = train_completion(
        train, config=cfg, steps=5, batch_size=4, device=device, checkpoint=path, resume=True
    )
    assert len(res.history) == 2 and load_checkpoint(path)["step"] == 5
    with pytest.raises(
        ValueError, match=r"train_completion: config\.identity_weight=0\.1 needs an 'encoder'"
    ):
        train_completion(train, config=_small_config(), steps=1)
    with pytest.raises(ValueError, match="train_identity_encoder: 'steps' must be > 0"):
        train_identity_encoder(train, num_classes=8, steps=0)


def test_recipe_options_run(shared_data, device, tmp_path):
    """Every optional branch of the completion recipe runs (local D, mismatched pose negatives, LSGAN, mask
    channel) on posed renders, and the identity-encoder recipe resumes from its checkpoint."""
    root = os.path.join(shared_data, "ict-faces-128")
    ds = PairedFaces.from_meta_jsonl(root, identities=range(4), size=SIZE, mask="landmarks")
    cfg = CompletionConfig(
        base_channels=4,
        depth=3,
        d_base_channels=4,
        d_layers=2,
        identity_weight=0.0,
        local_discriminator=True,
        pose_mismatch=True,
        gan="lsgan",
        mask_channel=True,
    )
    res = train_completion(ds, config=cfg, steps=2, batch_size=4, device=device, checkpoint=tmp_path / "g.pt")
    assert set(res.discriminators) == {"global", "pose", "local"}
    assert {"d_local", "g_local", "d_pose", "g_pose"} <= set(res.history[-1])
    assert set(load_checkpoint(tmp_path / "g.pt")["modules"]) == {"global", "pose", "local"}
    kw = {
        "num_classes": 4,
        "batch_size": 4,
        "base_channels": 4,
        "embedding_dim": 8,
        "input_size": SIZE,
        "device": device,
    }
    train_identity_encoder(ds, steps=2, checkpoint=tmp_path / "e.pt", **kw)
    steps: list[int] = []
    train_identity_encoder(
        ds, steps=3, checkpoint=tmp_path / "e.pt", resume=True, callback=lambda s, m: steps.append(s), **kw
    )
    assert steps == [3] and load_checkpoint(tmp_path / "e.pt")["step"] == 3


def test_dataset_smaller_than_one_batch_raises_instead_of_hanging(shared_data):
    """Regression: with ``drop_last`` a dataset smaller than one batch gave no batch at all, and both
    recipes looped over empty epochs forever. They now refuse it before building anything."""
    root = os.path.join(shared_data, "ict-faces-128")
    ds = PairedFaces.from_meta_jsonl(root, identities=range(1), size=SIZE)  # 12 renders of one identity
    assert len(ds) == 12
    with pytest.raises(
        ValueError,
        match=r"train_completion: 'dataset' must hold at least batch_size=16 samples per process; got 12",
    ):
        train_completion(ds, config=_small_config(identity_weight=0.0), steps=1, batch_size=16)
    with pytest.raises(
        ValueError, match=r"train_identity_encoder: 'dataset' must hold at least batch_size=13"
    ):
        train_identity_encoder(ds, num_classes=1, steps=1, batch_size=13)
    with pytest.raises(
        TypeError, match="train_completion: 'dataset' must be a sized map-style Dataset; got int"
    ):
        train_completion(3, config=_small_config(identity_weight=0.0), steps=1)  # type: ignore[arg-type]


def test_completion_config_is_validated():
    with pytest.raises(
        ValueError, match=r"CompletionConfig: 'gan' must be one of \('hinge', 'lsgan', 'bce'\); got 'wgan'"
    ):
        CompletionConfig(gan="wgan")
    with pytest.raises(ValueError, match="CompletionConfig: 'noise' must be one of"):
        CompletionConfig(noise="bottleneck")
    with pytest.raises(ValueError, match="CompletionConfig: 'depth' must be > 0; got 0"):
        CompletionConfig(depth=0)
    with pytest.raises(TypeError, match="CompletionConfig: 'base_channels' must be an int; got float"):
        CompletionConfig(base_channels=8.0)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"CompletionConfig: 'identity_weight' must be a number >= 0; got -0\.1"
    ):
        CompletionConfig(identity_weight=-0.1)
    with pytest.raises(ValueError, match="CompletionConfig: 'lr' must be > 0"):
        CompletionConfig(lr=0.0)
    with pytest.raises(ValueError, match=r"CompletionConfig: 'betas' must be two numbers in \[0, 1\)"):
        CompletionConfig(betas=(0.5, 1.0))
    assert CompletionConfig(betas=[0.0, 0.9]).betas == (0.0, 0.9)  # type: ignore[arg-type]


def test_recipe_argument_errors(faces, device):
    train, test = faces
    with pytest.raises(
        TypeError, match=r"train_completion: 'config' must be a CompletionConfig .*; got dict"
    ):
        train_completion(train, config={"gan": "hinge"}, steps=1)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"train_completion: 'encoder' must be an nn\.Module or None; got str"
    ):
        train_completion(train, config=_small_config(), encoder="vgg", steps=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train_identity_encoder: 'num_classes' must be an int; got float"):
        train_identity_encoder(train, num_classes=8.0, steps=1)  # type: ignore[arg-type]
    g = CompletionGenerator(base_channels=4, depth=2, pose_channels=0)
    with pytest.raises(
        TypeError, match="evaluate_completion: 'generator' must be a CompletionGenerator; got str"
    ):
        evaluate_completion("g", test)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="evaluate_completion: 'batch_size' must be > 0; got 0"):
        evaluate_completion(g, test, batch_size=0, device=device)
    with pytest.raises(ValueError, match="evaluate_completion: 'dataset' must not be empty"):
        evaluate_completion(g, [], device=device)


def test_any_embedding_module_plugs_in_as_identity_network(faces, device):
    """The identity network is pluggable: a plain ``nn.Sequential`` giving ``(B, D)`` (standing in for
    user-supplied VGG-Face weights) drives the identity loss, stays frozen, and the generator still trains."""
    train, _ = faces
    torch.manual_seed(0)
    user_net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).to(device)
    before = [p.detach().clone() for p in user_net.parameters()]
    res = train_completion(
        train,
        config=_small_config(identity_weight=1.0),
        encoder=user_net,
        steps=2,
        batch_size=4,
        device=device,
    )
    assert all("identity" in h and 0.0 <= h["identity"] <= 2.0 for h in res.history)
    assert all(torch.equal(a, b) for a, b in zip(before, user_net.parameters()))


def test_identity_loss_compares_the_output_with_the_reference(device):
    """As drawn in the paper's figure, the identity prior is the REFERENCE S: the frozen encoder embeds S
    (no gradient) and the composited output (with gradient), never the ground truth y."""

    class _Pairs(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(i)
            return {
                "image": torch.rand(3, 16, 16, generator=g) * 0.5 + 0.5,  # y in [0.5, 1]
                "reference": torch.full((3, 16, 16), 0.25),  # S: a constant 0.25 image
                "mask": eye_box_mask(16, 16)[0],
                "angles": torch.zeros(3),
                "label": torch.tensor(0),
            }

    class _Spy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(3, 4)
            self.seen: list[tuple[torch.Tensor, bool]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append((x.detach().clone(), torch.is_grad_enabled()))
            return self.proj(x.mean(dim=(2, 3)))

    spy = _Spy().to(device)
    cfg = CompletionConfig(base_channels=4, depth=2, d_base_channels=4, d_layers=1, identity_weight=1.0)
    train_completion(_Pairs(), config=cfg, encoder=spy, steps=1, batch_size=4, device=device)
    (ref_in, ref_grad), (out_in, out_grad) = spy.seen
    assert not ref_grad and bool((ref_in == 0.25).all())  # S, without gradient
    assert out_grad and float(out_in.min()) >= 0.0 and not bool((out_in == 0.25).all())  # the output
