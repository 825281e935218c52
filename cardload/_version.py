"""The version of cardload, in one place (the distribution reads it from here)."""

__version__ = "0.3.0"
