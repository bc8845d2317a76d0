"""Datasets: toy sets embedded in code, and (see the datasets issue) MNIST/Fashion-MNIST loaders."""

from .toy import spiral

__all__ = ["spiral"]
