"""The cascade's networks and the model registry."""

from ._registry import create_model, list_models, register_model
from .nets import (
    CompletionDiscriminator,
    CompletionNet,
    DistanceNet,
    FlowNet,
    SegNet,
    UNet,
    completiondisc_paper,
    completiondisc_small,
    completionnet_paper,
    completionnet_small,
    distancenet_paper,
    distancenet_small,
    flownet_paper,
    flownet_small,
    segnet_small,
)

__all__ = [
    "CompletionDiscriminator",
    "CompletionNet",
    "DistanceNet",
    "FlowNet",
    "SegNet",
    "UNet",
    "completiondisc_paper",
    "completiondisc_small",
    "completionnet_paper",
    "completionnet_small",
    "create_model",
    "distancenet_paper",
    "distancenet_small",
    "flownet_paper",
    "flownet_small",
    "list_models",
    "register_model",
    "segnet_small",
]
