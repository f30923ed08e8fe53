"""ModelNet readers (class folders, PointNet++ text, OFF meshes, PointNet HDF5), seeded point-cloud
transforms, and the batch adapters (PyG-style flat batches, ``(points, label)`` tuples)."""

from .batching import as_dense_batch, collate_flat, flat_to_dense
from .datasets import (
    ModelNetMesh,
    ModelNetNormalResampled,
    PointCloudFolder,
    read_off,
    read_point_file,
    sample_mesh_surface,
    stack_dataset,
)
from .hdf5 import ModelNetHDF5
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
    "ModelNetHDF5",
    "ModelNetMesh",
    "ModelNetNormalResampled",
    "NormalizeUnitSphere",
    "PointCloudFolder",
    "RandomPointDropout",
    "RandomRotateUp",
    "RandomScaleShift",
    "as_dense_batch",
    "collate_flat",
    "default_train_transform",
    "flat_to_dense",
    "normalize_unit_sphere",
    "read_off",
    "read_point_file",
    "sample_mesh_surface",
    "stack_dataset",
]
