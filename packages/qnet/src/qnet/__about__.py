"""Single source of truth for the qnet version (read by hatch)."""

__version__ = "0.7.0"
