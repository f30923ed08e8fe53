"""Test configuration for qnet.

The device comes from ``--device`` or the ``QNET_TEST_DEVICE`` environment variable (set by the nox
``tests`` session). Asking for CUDA on a machine without it is an error, never a silent skip.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default=os.environ.get("QNET_TEST_DEVICE", "cpu"),
        choices=("cpu", "cuda"),
        help="device the tests run on (default: $QNET_TEST_DEVICE or cpu)",
    )
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--device") == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(
            "qnet tests: device 'cuda' was requested (--device or QNET_TEST_DEVICE) but "
            "torch.cuda.is_available() is False; refusing to run instead of skipping every test"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_cuda = config.getoption("--device") == "cuda"
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    skip_cuda = pytest.mark.skip(reason="needs --device cuda")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and not on_cuda:
            item.add_marker(skip_cuda)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device every test tensor and module is placed on."""
    return torch.device(request.config.getoption("--device"))


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> str:
    """Path of the repository's ``../shared/data`` (tests only; never needed by users)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(2, 6):
        cand = os.path.normpath(os.path.join(here, *[".."] * up, "..", "shared", "data"))
        if os.path.isdir(cand):
            return cand
    env = os.environ.get("SHARED_DATA")
    if env and os.path.isdir(env):
        return env
    pytest.skip("../shared/data not found (set SHARED_DATA)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def cifar_test(shared_data):
    """``(images uint8 (10000, 3, 32, 32), labels)`` of the JPEG CIFAR-10 test split, decoded once per session."""
    path = os.path.join(shared_data, "cifar10-jpeg", "test.tar.gz")
    if not os.path.isfile(path):
        pytest.skip("cifar10-jpeg/test.tar.gz not under the shared data")
    from qnet.data import read_image_archive

    x, y, _ = read_image_archive(path)
    return x, y
