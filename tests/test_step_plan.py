"""An optimizer's step plan (xpnet.optim.step_plan) never serves a stale answer: every change to the model between
two steps that the plan could miss is followed by the next step, as a fresh optimizer's step would be."""

import copy

import numpy as np
import pytest

import xpnet as xn

from conftest import require_cuda

LR = 0.1


def _model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(6, 5), xn.layers.ReLU(), xn.layers.Linear(5, 3))


def _backward(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 6)).astype(model.named_params()["0.W"].dtype)
    y = model.forward(x)
    model.backward(np.ones_like(y) / y.size, input_grad=False)


def _step_checked(model, opt, trained):
    """One step; each parameter named in ``trained`` must move by -LR * its gradient, every other stay as it was."""
    params, grads = model.named_params(), model.named_grads()
    before = {k: np.array(p) for k, p in params.items()}
    expected = {k: before[k] - np.asarray(LR, before[k].dtype) * grads[k] if k in trained else before[k]
                for k in before}
    opt.step(model)
    for k, p in model.named_params().items():
        np.testing.assert_array_equal(p, expected[k], err_msg=k)


def _warm(model, opt, steps=2):
    for i in range(steps):
        _backward(model, i)
        _step_checked(model, opt, set(model.named_params()))


def test_parameter_replaced_by_an_array_of_the_same_shape_is_the_one_updated():
    model, opt = _model(), xn.optim.SGD(LR)
    _warm(model, opt)
    old = model.layers[0].params["W"]
    kept = np.array(old)
    model.layers[0].params["W"] = np.array(old) * 2
    _backward(model, 5)
    _step_checked(model, opt, set(model.named_params()))
    np.testing.assert_array_equal(old, kept)  # the array no longer in the model is left alone


def test_frozen_layer_is_left_and_unfrozen_layer_trains_again():
    model, opt = _model(), xn.optim.SGD(LR)
    _warm(model, opt)
    model.layers[0].requires_grad_(False)
    _backward(model, 3)
    _step_checked(model, opt, {"2.W", "2.b"})
    model.layers[0].requires_grad_(True)
    _backward(model, 4)
    _step_checked(model, opt, set(model.named_params()))


def test_layer_replaced_or_appended_trains():
    model, opt = _model(), xn.optim.SGD(LR)
    _warm(model, opt)
    model[2] = xn.layers.Linear(5, 3)
    _backward(model, 6)
    _step_checked(model, opt, set(model.named_params()))
    model.append(xn.layers.Linear(3, 2))
    _backward(model, 7)
    assert "3.W" in model.named_grads()
    _step_checked(model, opt, set(model.named_params()))


def test_a_leaf_replaced_by_a_container_under_its_name_trains_what_is_inside():
    """A Sequential of leaf layers is held against its children, without the walk: a child with children of its
    own under the same name (a ReLU's place taken by a Sequential) sends the step to the full walk, which finds them,
    at this step and the next."""
    model, opt = _model(), xn.optim.SGD(LR)
    _warm(model, opt)
    model[1] = xn.Sequential(xn.layers.ReLU(), xn.layers.Linear(5, 5))
    for seed in (8, 9):
        _backward(model, seed)
        assert "1.1.W" in model.named_grads()
        _step_checked(model, opt, set(model.named_params()))


def test_parameter_added_to_a_layer_trains():
    model, opt = _model(), xn.optim.SGD(LR)
    _warm(model, opt)
    layer = model.layers[2]
    layer.params["extra"] = np.ones(3, np.float32)
    _backward(model, 8)
    layer.grads["extra"] = np.full(3, 0.5, np.float32)
    _step_checked(model, opt, set(model.named_params()))


def test_model_moved_to_another_dtype_and_loaded_state_train():
    model, opt = _model(), xn.optim.SGD(LR)
    _warm(model, opt)
    model.to("cpu", dtype="float64")
    _backward(model, 9)
    _step_checked(model, opt, set(model.named_params()))
    other = _model().to("cpu", dtype="float64")
    model.load_state_dict(other.state_dict())
    _backward(model, 10)
    _step_checked(model, opt, set(model.named_params()))


def test_zero_grad_leaves_out_what_no_backward_reached():
    model = _model()
    opt = xn.optim.SGD(model, lr=LR)
    _warm(model, opt)
    opt.zero_grad()
    x = np.ones((4, 5), np.float32)
    y = model.layers[2].forward(x)
    model.layers[2].backward(np.ones_like(y))  # the first layer gets no gradient
    _step_checked(model, opt, {"2.W", "2.b"})


def test_gradients_checked_at_every_step():
    model, opt = _model(), xn.optim.SGD(LR)
    _warm(model, opt)
    _backward(model, 11)
    model.layers[0].grads["W"] = model.layers[0].grads["W"].astype(np.float64)
    with pytest.raises(ValueError, match="0.W"):
        opt.step(model)
    _backward(model, 12)
    model.layers[2].grads["kernel"] = np.ones(3, np.float32)  # under no parameter's name
    with pytest.raises(ValueError, match="kernel"):
        opt.step(model)
    del model.layers[2].grads["kernel"]
    _backward(model, 13)
    del model.layers[2].grads["b"]
    with pytest.raises(RuntimeError, match="2.b"):
        opt.step(model)


def test_momentum_state_follows_a_replaced_layer():
    model, opt = _model(), xn.optim.SGD(LR, momentum=0.9)
    for i in range(2):
        _backward(model, i)
        opt.step(model)
    model[2] = xn.layers.Linear(5, 4)  # another shape under the same names: its state starts afresh (v = g)
    _backward(model, 3)
    g = np.array(model.named_grads()["2.W"])
    before = np.array(model.layers[2].params["W"])
    opt.step(model)
    np.testing.assert_array_equal(model.layers[2].params["W"], before - np.float32(LR) * g)


def test_a_copied_optimizer_holds_no_arrays_of_the_model():
    model, opt = _model(), xn.optim.SGD(LR)
    _warm(model, opt)
    assert opt._plan is not None
    assert copy.deepcopy(opt)._plan is None
    _backward(model, 14)
    _step_checked(model, opt, set(model.named_params()))


@pytest.mark.gpu
def test_on_cupy_each_step_takes_the_full_walk_and_equals_numpys():
    """The plan is NumPy's only: a model moved to CuPy after planned steps drops it, each step there takes the full
    walk (its momentum state moved along) and equals the same steps on NumPy; a gradient of another dtype is
    refused there at any step; back on NumPy, the plan is made again."""
    dev = require_cuda()
    ours, ref = _model(), _model()
    opt, ref_opt = xn.optim.SGD(LR, momentum=0.9), xn.optim.SGD(LR, momentum=0.9)

    def step(seed, dev=None):
        for model, o, where in ((ours, opt, dev), (ref, ref_opt, None)):
            x = np.random.default_rng(seed).standard_normal((4, 6)).astype(np.float32)
            y = model.forward(x if where is None else xn.to_device(x, where))
            model.backward(xn.to_device(np.full(y.shape, 1 / y.size, np.float32), where or "cpu"), input_grad=False)
            o.step(model)

    step(0)
    step(1)
    assert opt._plan is not None
    ours.to(dev)
    for seed in (2, 3, 4):
        step(seed, dev)
        assert opt._plan is None
    for k, p in ours.named_params().items():
        xn.testing.assert_placed(p, dev, "float32")
        np.testing.assert_allclose(xn.to_numpy(p), ref.named_params()[k], rtol=1e-5, atol=1e-6, err_msg=k)
    ours.forward(xn.to_device(np.ones((4, 6), np.float32), dev))
    ours.backward(xn.to_device(np.ones((4, 3), np.float32), dev), input_grad=False)
    ours.layers[0].grads["W"] = dev.xp.astype(ours.layers[0].grads["W"], dev.xp.float64)
    with pytest.raises(ValueError, match="0.W"):
        opt.step(ours)
    ours.to("cpu")
    step(5)
    step(6)
    assert opt._plan is not None
    for k, p in ours.named_params().items():
        np.testing.assert_allclose(p, ref.named_params()[k], rtol=1e-5, atol=1e-6, err_msg=k)
