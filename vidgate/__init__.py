"""vidgate: a self-hosted video-generation gateway."""

__version__ = "0.1.0"
