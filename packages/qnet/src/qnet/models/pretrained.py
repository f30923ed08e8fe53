"""Quantized models whose trained weights ship inside the wheel (loaded offline, never downloaded)."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from ._registry import register_model
from .resnet_a import IMAGENET_MEAN, IMAGENET_STD, CifarResNetA, resnet20_a

__all__ = ["SHIPPED_WEIGHTS", "resnet20_a_ternary", "shipped_weights_path"]

SHIPPED_WEIGHTS: dict[str, dict[str, dict[str, Any]]] = {
    "resnet20_a_ternary": {
        "cifar10": {
            "file": "resnet20_a_cifar10_ternary.safetensors",
            "num_classes": 10,
            "classes": (
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "weight_levels": "ternary",
            "act_levels": None,
            # model card (README "Shipped pretrained model"): accuracy of the frozen model on the 10,000 images
            # of the cifar10-jpeg test split, from reports/qnet/shipped/train_shipped.json
            "test_correct": 7530,
            "test_images": 10000,
            # the fast test's subset: every 5th test image (2,000 images, 200 per class)
            "subset_stride": 5,
            "subset_correct": 1499,
            "float_start_test_correct": 8103,
        }
    }
}
"""Shipped weights per registered model: file name inside ``qnet/models/weights``, preprocessing and the
model card's numbers."""


def shipped_weights_path(model: str, name: str) -> str:
    """Path of a weight file shipped in the wheel.

    Args:
        model: a registered model with shipped weights (``"resnet20_a_ternary"``).
        name: the weights' name (``"cifar10"``).

    Returns:
        The file's path (inside the installed package).

    Raises:
        ValueError: no such shipped weights.
    """
    if model not in SHIPPED_WEIGHTS or name not in SHIPPED_WEIGHTS[model]:
        avail = {m: sorted(w) for m, w in SHIPPED_WEIGHTS.items()}
        raise ValueError(
            f"shipped_weights_path: no shipped weights {name!r} for {model!r}; available: {avail}"
        )
    return str(
        resources.files("qnet.models").joinpath("weights").joinpath(SHIPPED_WEIGHTS[model][name]["file"])
    )


@register_model
def resnet20_a_ternary(*, weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> CifarResNetA:
    """Option-A CIFAR ResNet-20 with ternary weights ({-1, 0, +1} times a per-layer scale), as qnet trains it.

    First convolution and last linear layer are float (the paper's rule); activations are float.

    Args:
        weights: ``None`` (a randomly initialised float ResNet-20 converted by ``qnet.quantize`` with
            ternary weights, ready to train), ``"cifar10"`` (the frozen model shipped in the wheel, trained
            with qnet from the akamaster float ResNet-20 on the CIFAR-10 JPEG copy; see the README's model
            card), or the path of a file written by :func:`qnet.export` for this architecture. A shipped name
            takes precedence over a file of the same name in the working directory.
        **kwargs: :class:`~qnet.models.CifarResNetA` arguments except ``depth`` (with ``"cifar10"``: only
            values matching the shipped model, e.g. ``num_classes=10``).

    Returns:
        The model: frozen and in eval mode when ``weights`` is given. Inputs are RGB in ``[0, 1]``
        normalised with :data:`~qnet.models.IMAGENET_MEAN` / :data:`~qnet.models.IMAGENET_STD`, shape
        ``(B, 3, 32, 32)``; outputs ``(B, 10)`` logits.

    Raises:
        FileNotFoundError: ``weights`` is neither a shipped name nor an existing file.
        ValueError: a keyword conflicts with the shipped model, or the file is not a qnet export of this
            architecture.

    Examples:
        >>> import torch
        >>> from qnet.models import create_model
        >>> net = create_model("resnet20_a_ternary", weights="cifar10")
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    from ..convert import quantize
    from ..export import load

    shipped = SHIPPED_WEIGHTS["resnet20_a_ternary"]
    if isinstance(weights, str) and weights in shipped:
        card = shipped[weights]
        for k, v in kwargs.items():
            if k == "num_classes" and v != card["num_classes"]:
                raise ValueError(
                    f"resnet20_a_ternary: 'num_classes' is {card['num_classes']} for weights {weights!r}; got {v!r}"
                )
            if k == "in_chans" and v != 3:
                raise ValueError(f"resnet20_a_ternary: 'in_chans' is 3 for weights {weights!r}; got {v!r}")
        path: str | os.PathLike[str] = shipped_weights_path("resnet20_a_ternary", weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"resnet20_a_ternary: the shipped file {path!r} is missing from this installation"
            )
    elif weights is not None:
        path = weights
        if not os.path.isfile(os.fspath(path)):
            raise FileNotFoundError(
                f"resnet20_a_ternary: 'weights' must be one of {sorted(shipped)} or an existing qnet.export "
                f"file; got {os.fspath(path)!r}"
            )
    model = resnet20_a(**kwargs)
    if weights is None:
        return quantize(model, weight_levels="ternary", inplace=True)  # type: ignore[return-value]
    load(path, model)
    return model
