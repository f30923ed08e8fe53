"""The shipped release model: loads offline, is what the CLI opens, reproduces its model-card metric."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from hairsynth import Stroke, Synthesizer, load_checkpoint
from hairsynth import functional as HF
from hairsynth.synthesizer import pretrained_weights_path

WEIGHTS = pretrained_weights_path()
pytestmark = pytest.mark.skipif(
    not os.path.isfile(WEIGHTS), reason=f"the release weights {WEIGHTS} are not in this installation"
)


def test_pretrained_loads_offline_and_edits_a_full_size_photo():
    syn = Synthesizer.pretrained()
    assert syn.model.resolution == 128 and syn.model.stroke_width == (2.0, 4.0)
    assert syn.model.upsample == "resize" and syn.model.feather == "inside"
    assert os.path.getsize(WEIGHTS) < 12e6
    img = torch.rand(3, 256, 320)
    mask = torch.zeros(256, 320)
    mask[40:200, 60:260] = 1
    out = syn.synthesize(img, mask, [Stroke([(80, 60), (240, 180)], (0.7, 0.3, 0.1), 6.0)])
    assert out.shape == img.shape
    outside = (mask == 0).expand_as(img)
    assert torch.equal(out[outside], img[outside]) and not torch.equal(out, img)


def test_cli_opens_the_shipped_model_by_default():
    from hairsynth.cli import _synth

    syn = _synth(argparse.Namespace(weights=None, arch=None, device="cpu"))
    ref = load_checkpoint(WEIGHTS)["state_dict"]
    got = syn.model.state_dict()
    assert all(torch.equal(got[k], v.float()) for k, v in ref.items())


@torch.no_grad()
def test_model_card_metric_reproduces(shared_data):
    """README model card: masked L1 / PSNR on the first 8 held-out celeb1k-hair test photos at 128 px."""
    from hairsynth.data import HairPairDataset

    card = load_checkpoint(WEIGHTS)["metrics"]
    ds = HairPairDataset(
        os.path.join(shared_data, "celeb1k-hair"),
        "test",
        size=128,
        stroke_width=(2.0, 4.0),
        augment=False,
        deterministic=True,
        seed=0,
        limit=8,
    )
    model = Synthesizer.pretrained().model
    b = [ds[i] for i in range(len(ds))]
    img, mask = torch.stack([s["image"] for s in b]), torch.stack([s["mask"] for s in b])
    sc, sm = torch.stack([s["stroke_color"] for s in b]), torch.stack([s["stroke_mask"] for s in b])
    out = model(img, mask, sc, sm)["output"]
    # rel 1e-2: the same file and photos gave masked L1 0.11106 on one x86 machine and 0.11063 (the card) on
    # another (deterministic on each: not ISA or thread dependent, the cause is not pinned down); other models
    # differ by far more (the 100- and 650-step models: 0.103 vs 0.084 on held-out photos)
    assert float(HF.masked_l1(out, img, mask)) == pytest.approx(card["card_celeb_test8_masked_l1"], rel=1e-2)
    assert float(HF.psnr(out, img, mask).mean()) == pytest.approx(
        card["card_celeb_test8_masked_psnr"], rel=1e-2
    )
    # and it beats leaving the region grey (a sanity floor for a trained model)
    grey = HF.composite(img, torch.full_like(img, 0.5), mask)
    assert float(HF.masked_l1(out, img, mask)) < float(HF.masked_l1(grey, img, mask))


def test_readme_model_card_matches_the_shipped_checkpoint():
    """The README's model card states the steps and card metric of the weights that actually ship."""
    import re

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    ck = load_checkpoint(WEIGHTS)
    budget = re.search(r"^\| Budget \| ([\d,]+) steps", text, re.M)
    assert budget is not None, "README model card has no '| Budget | N steps' row"
    assert int(budget.group(1).replace(",", "")) == ck["step"]
    card = re.search(r"masked L1 (\d\.\d{4}) and masked PSNR (\d+\.\d{2}) dB", text)
    assert card is not None, "README model card has no 'masked L1 x and masked PSNR y dB' card check"
    assert float(card.group(1)) == pytest.approx(ck["metrics"]["card_celeb_test8_masked_l1"], abs=5e-5)
    assert float(card.group(2)) == pytest.approx(ck["metrics"]["card_celeb_test8_masked_psnr"], abs=5e-3)
