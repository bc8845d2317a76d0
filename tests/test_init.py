"""Initialisers: ``skip_init`` builds layers without weights, only where it was entered."""

import threading

import numpy as np

import xpnet as xn
from xpnet import init


def test_skip_init_gives_placeholders_in_its_own_thread_only():
    built = {}

    def build_elsewhere():
        built["other"] = xn.layers.Linear(3, 2)

    with init.skip_init():
        here = xn.layers.Linear(3, 2)
        thread = threading.Thread(target=build_elsewhere)  # as xn.load runs while another thread builds a model
        thread.start()
        thread.join()
    assert not here.params["W"].flags.writeable and here.params["W"].strides == (0, 0)
    w = built["other"].params["W"]
    assert w.flags.writeable and 0 not in w.strides and np.all(w != 0)
    after = xn.layers.Linear(3, 2).params["W"]
    assert after.flags.writeable and np.all(after != 0)


def test_uniform_takes_an_int_size_as_zeros_does():
    """xn.init.uniform(3, 0.1) raised "'int' object is not iterable" where zeros(3) and ones(3) give (3,) (review6's
    note): the size of a bias drawn uniformly, as PyTorch's Linear draws its bias."""
    init.seed(0)
    for size in (3, np.int64(3), (3,)):
        b = init.uniform(size, 0.1)
        assert b.shape == (3,) and b.dtype == np.float32 and np.all(np.abs(b) <= 0.1) and np.any(b != 0)
