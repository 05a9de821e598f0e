"""mlapi: a self-hosted computer-vision API gateway."""

__version__ = "0.1.0"
