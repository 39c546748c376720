"""Errors the filters raise. Kept apart so every filter module can name them without importing
another filter's dependencies."""

from __future__ import annotations


class ModelError(RuntimeError):
    """A model file or directory is missing, unreadable or corrupt.

    The message always names the path (and, for models winnow trains itself, the command that
    creates it), because on a cluster without egress there is nothing to download instead.
    """
