"""Recommenders, one file per model, all on the :class:`SeqRecModule` seam."""

from generec.models.base import SeqRecModule

__all__ = ["SeqRecModule"]
