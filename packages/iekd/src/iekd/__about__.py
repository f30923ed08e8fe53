"""Single source of truth for the iekd version (read by hatch)."""

__version__ = "0.4.0"
