"""Model classes: the linear identity/expression model and the UV-space attribute networks."""

from .linear import LinearFaceModel

__all__ = ["LinearFaceModel"]
