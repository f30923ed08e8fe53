"""Single source of truth for the undistort version (read by hatch)."""

__version__ = "0.6.0"
