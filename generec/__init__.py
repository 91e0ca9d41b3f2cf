"""generec: a research framework for generative and sequential recommendation."""

__version__ = "0.1.0"
