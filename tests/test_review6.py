"""Review of the optimizer binding, xn.init's refusals and their messages as a PyTorch user and a book reader meet
them (review6)."""

import numpy as np
import pytest

import xpnet as xn


def test_xn_inits_array_makers_take_a_numpy_integer_size():
    """``xn.init.zeros(n)`` (or ``ones``) with ``n = t.max() + 1`` (a NumPy integer, as ``np.zeros(n)`` takes) was refused as
    "an array of shape ()" to fill in place: a NumPy integer has a shape and a dtype, as an array has."""
    n = np.arange(4).max()  # np.int64(3)
    assert xn.init.zeros(n).shape == xn.init.ones(n).shape == (3,)
    with pytest.raises(TypeError, match=r"got an array of shape \(\): .* write xn.init.zeros_\(w\)$"):
        xn.init.zeros(np.zeros(()))
