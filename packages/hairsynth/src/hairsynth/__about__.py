"""Single source of truth for the hairsynth version (read by hatch)."""

__version__ = "0.4.0"
