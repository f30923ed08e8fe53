"""Single source of truth for the morphface version (read by hatch)."""

__version__ = "0.5.1"
