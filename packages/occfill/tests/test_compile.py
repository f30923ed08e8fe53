"""torch.compile gives the eager results for the public networks and the pose map (slow)."""

from __future__ import annotations

import pytest
import torch

from occfill.models import CompletionGenerator, PoseDiscriminator
from occfill.pose import pose_map


@pytest.mark.slow
def test_compiled_equals_eager(device):
    torch.manual_seed(0)
    g = CompletionGenerator(base_channels=4, depth=2, noise="none").to(device).eval()
    d = PoseDiscriminator(base_channels=4, n_layers=2).to(device).eval()
    x = torch.rand(2, 3, 16, 16, device=device)
    lmap = pose_map(torch.rand(2, 3, device=device), 16, 16)
    want_g, want_d = g(x, x, lmap), d(x, lmap)
    got_g = torch.compile(g)(x, x, lmap)
    got_d = torch.compile(d)(x, lmap)
    assert torch.allclose(got_g, want_g, atol=1e-5) and torch.allclose(got_d, want_d, atol=1e-5)
