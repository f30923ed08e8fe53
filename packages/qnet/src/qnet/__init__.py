"""Quantization Networks: learned sigmoid-sum low-bit quantization for PyTorch."""

import logging

from . import checkpoint, data, functional, models, recipes
from .__about__ import __version__
from .convert import (
    DEFAULT_LAYER_MAP,
    TemperatureSchedule,
    calibrate,
    freeze,
    quantize,
    quantized_layers,
    quantizers,
    recalibrate_bn,
    set_phase,
)
from .deploy import fold_batchnorm
from .export import export, load, pack_codes, unpack_codes
from .levels import Levels
from .nn import LSQQuantizer, QConv2d, QLinear, Quantizer, STEQuantizer, make_quantizer
from .onnx_export import export_onnx

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_LAYER_MAP",
    "LSQQuantizer",
    "Levels",
    "QConv2d",
    "QLinear",
    "Quantizer",
    "STEQuantizer",
    "TemperatureSchedule",
    "__version__",
    "calibrate",
    "checkpoint",
    "data",
    "export",
    "export_onnx",
    "fold_batchnorm",
    "freeze",
    "functional",
    "load",
    "make_quantizer",
    "models",
    "pack_codes",
    "quantize",
    "quantized_layers",
    "quantizers",
    "recalibrate_bn",
    "recipes",
    "set_phase",
    "unpack_codes",
]
