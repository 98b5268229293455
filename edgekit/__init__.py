"""edgekit: take a small vision model to the edge in one command."""

__version__ = "0.1.0"
