"""ModelNet readers and seeded point-cloud transforms."""

from .datasets import (
    ModelNetMesh,
    ModelNetNormalResampled,
    PointCloudFolder,
    read_off,
    read_point_file,
    sample_mesh_surface,
    stack_dataset,
)
from .transforms import (
    Compose,
    Jitter,
    NormalizeUnitSphere,
    RandomPointDropout,
    RandomRotateUp,
    RandomScaleShift,
    default_train_transform,
    normalize_unit_sphere,
)

__all__ = [
    "Compose",
    "Jitter",
    "ModelNetMesh",
    "ModelNetNormalResampled",
    "NormalizeUnitSphere",
    "PointCloudFolder",
    "RandomPointDropout",
    "RandomRotateUp",
    "RandomScaleShift",
    "default_train_transform",
    "normalize_unit_sphere",
    "read_off",
    "read_point_file",
    "sample_mesh_surface",
    "stack_dataset",
]
