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
