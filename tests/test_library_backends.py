"""PyTorch and JAX as backends: device strings and their fallback, the one update rule (and the
refusal of a namespace that fits neither branch), autograd off and no host copies on PyTorch,
immutable JAX arrays that still learn. Layer-by-layer agreement is in test_cross_backend.py."""

import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
from conftest import library_device

import xpnet as xn
from xpnet import backend
from xpnet.backend import libraries, namespaces
from xpnet import layers as L


def _mlp(dtype="float32"):
    xn.init.seed(0)
    return xn.Sequential(L.Linear(2, 16, dtype=dtype), L.ReLU(), L.Linear(16, 3, dtype=dtype))


def test_importing_xpnet_imports_neither_torch_nor_jax():
    code = "import sys, xpnet; print(sorted(m for m in ('torch', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("spec,name", [("torch:cpu", "torch:cpu"), ("jax:cpu", "jax:cpu"),
                                       (" Torch:CPU ", "torch:cpu")])
def test_device_strings_name_the_library_and_device(spec, name):
    dev = library_device(name)
    assert xn.device(spec) == dev and dev.name == name
    x = xn.to_device(np.arange(6.0, dtype=np.float32).reshape(2, 3), spec)
    assert backend.device_of(x) == dev
    np.testing.assert_array_equal(xn.to_numpy(x), np.arange(6.0).reshape(2, 3))


def test_a_device_made_from_the_namespace_equals_the_string():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    assert xn.Device(torch, torch.device("cpu")) == xn.device("torch:cpu")
    assert xn.Device(torch, torch.device("cpu")).name == "torch:cpu"


@pytest.mark.parametrize("spec", ["torch:cpu", "jax:gpu", "torch:cuda:1"])
def test_missing_library_warns_and_falls_back_to_the_cpu(monkeypatch, spec):
    library = spec.partition(":")[0]
    monkeypatch.setitem(libraries._LIBRARIES, library, (None, f"{library} is not installed (test)"))
    with pytest.warns(xn.XpnetDeviceWarning, match=rf"'{spec}' is not usable: {library} is not installed \(test\)"):
        assert xn.device(spec) == xn.device("cpu")
    with pytest.raises(RuntimeError, match=f"{library} is not installed"):
        xn.device(spec, fallback=False)


def test_missing_device_of_an_installed_library_falls_back_with_the_reason():
    library_device("torch:cpu")
    with pytest.warns(xn.XpnetDeviceWarning, match=r"'torch:cuda:99' is not usable: torch .* sees \d+ CUDA device"):
        assert xn.device("torch:cuda:99").is_numpy
    with pytest.raises(RuntimeError, match="torch:mps"):
        xn.device("torch:mps:3", fallback=False)


@pytest.mark.parametrize("spec", ["torch", "torch:gpu", "torch:cuda:x", "torch:cpu:0", "jax:tpu", "jax:gpu:-1"])
def test_bad_library_device_strings_say_what_is_expected(spec):
    with pytest.raises(ValueError, match="device: expected"):
        xn.device(spec)


def test_model_to_and_train_accept_the_strings(tmp_path):
    dev = library_device("torch:cpu")
    model = _mlp().to("torch:cpu")
    assert model.device == dev
    x, t = xn.datasets.spiral(10, 3, seed=0)
    history = xn.train(_mlp(), (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=10,
                       device="torch:cpu", progress=False)
    assert history.device == "torch:cpu"
    model.save(tmp_path / "m.npz")
    back = xn.load(tmp_path / "m.npz", device="torch:cpu")
    assert back.device == dev
    for k, v in model.state().items():
        np.testing.assert_array_equal(xn.to_numpy(back.state()[k]), xn.to_numpy(v))


# -- the update rule -------------------------------------------------------------------------------


def test_update_rule_per_namespace():
    assert backend.update_rule(xn.device("cpu").xp) == "in place"
    assert backend.update_rule(library_device("torch:cpu").xp) == "in place"
    assert backend.update_rule(library_device("jax:cpu").xp) == "at"


@pytest.mark.parametrize("optimizer", [xn.optim.SGD(0.5), xn.optim.Adam(0.1)], ids=["sgd", "adam"])
def test_jax_weights_and_batchnorm_statistics_change_in_training(optimizer):
    # The bug this fixes: with in-place updates on immutable JAX arrays a step rebound a local name,
    # so xn.train printed a loss while the weights never changed.
    dev = library_device("jax:cpu")
    x, t = xn.datasets.spiral(20, 3, seed=0)
    xn.init.seed(0)
    model = xn.Sequential(L.Linear(2, 8), L.BatchNorm(8), L.ReLU(), L.Linear(8, 3))
    before = {k: np.array(xn.to_numpy(v)) for k, v in model.state().items()}
    xn.train(model, (x, t), loss="cross_entropy", optimizer=optimizer, epochs=2, batch_size=20, device=dev,
             progress=False)
    for k, v in model.state().items():
        xn.testing.assert_placed(v, dev)
        assert not np.array_equal(xn.to_numpy(v), before[k]), f"{k} did not change"


class _FrozenArray:
    """A NumPy array behind an array-API face that refuses every in-place update and has no ``.at``."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def __array_namespace__(self, api_version=None):
        return FROZEN

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    device = property(lambda self: "frozen")

    def __sub__(self, other):
        return _FrozenArray(self.a - getattr(other, "a", other))

    def __mul__(self, other):
        return _FrozenArray(self.a * getattr(other, "a", other))

    __rmul__ = __mul__

    def __isub__(self, other):
        raise TypeError("frozen arrays refuse in-place updates")

    __iadd__ = __imul__ = __isub__

    def __setitem__(self, index, value):
        raise TypeError("frozen arrays refuse item assignment")


FROZEN = types.ModuleType("frozen_array_api")
FROZEN.float32, FROZEN.float64 = np.float32, np.float64
FROZEN.zeros = lambda shape, dtype=None, device=None: _FrozenArray(np.zeros(shape, dtype=dtype))
FROZEN.zeros_like = lambda a: _FrozenArray(np.zeros_like(a.a))
FROZEN.asarray = lambda a, dtype=None, device=None: _FrozenArray(np.asarray(getattr(a, "a", a), dtype=dtype))


class _FrozenModel:
    def __init__(self):
        self.p, self.g = _FrozenArray(np.ones(3, np.float32)), _FrozenArray(np.ones(3, np.float32))

    def named_params(self):
        return {"w": self.p}

    def named_grads(self):
        return {"w": self.g}

    def set_param(self, name, value):
        self.p = value


def test_a_namespace_that_refuses_in_place_updates_and_has_no_at_is_refused():
    with pytest.raises(xn.XpnetBackendError, match="xpnet cannot run on frozen_array_api: its arrays refuse"):
        xn.Device(FROZEN, "frozen")
    model = _FrozenModel()
    p = model.p
    with pytest.raises(xn.XpnetBackendError, match="frozen_array_api"):
        xn.optim.SGD(0.1).step(model)
    assert model.p is p and np.array_equal(p.a, np.ones(3))  # refused before any update


def test_immutable_arrays_without_at_are_refused_even_where_p_minus_equals_works(monkeypatch):
    # `p -= u` rebinds (as on JAX), but there is no .at to write windows: conv and pooling backward
    # and gradcheck could not run, so the namespace is refused as a whole.
    monkeypatch.delattr(_FrozenArray, "__isub__")
    monkeypatch.delattr(_FrozenArray, "__iadd__")
    monkeypatch.setattr(_FrozenArray, "__add__", lambda self, o: _FrozenArray(self.a + getattr(o, "a", o)),
                        raising=False)
    monkeypatch.setattr(_FrozenArray, "__eq__", lambda self, o: _FrozenArray(self.a == getattr(o, "a", o)),
                        raising=False)
    monkeypatch.setattr(FROZEN, "all", lambda a: bool(np.all(a.a)), raising=False)
    monkeypatch.delitem(namespaces._RULES, id(FROZEN), raising=False)
    with pytest.raises(xn.XpnetBackendError, match=r"neither in place .* nor through JAX-style"):
        backend.update_rule(FROZEN)
    monkeypatch.delitem(namespaces._RULES, id(FROZEN), raising=False)


# -- Moving: immutable sources are copied, a moved model owns its arrays -------------------------------


def test_moving_a_jax_array_gives_writable_arrays_that_never_change_it():
    library_device("torch:cpu"), library_device("jax:cpu")
    a = xn.to_device(np.zeros(3, np.float32), "jax:cpu")
    on_torch, on_cpu = xn.to_device(a, "torch:cpu"), xn.to_device(a, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "The given NumPy array is not writable"
        on_torch += 1
    on_cpu += 2  # a read-only view of JAX's buffer would raise here
    np.testing.assert_array_equal(xn.to_numpy(a), np.zeros(3))
    frozen = np.zeros(3, np.float32)
    frozen.flags.writeable = False
    moved = xn.to_device(frozen, "torch:cpu")
    moved += 1
    np.testing.assert_array_equal(frozen, np.zeros(3))


def test_a_jax_array_moved_from_the_host_keeps_its_values_when_the_host_array_changes():
    """JAX's arrays are immutable: one moved from NumPy (a batch, a dropout mask) is a copy, never a view of a
    buffer the caller goes on writing. ``jax.device_put`` may alias a NumPy array on the CPU, or copy it after
    returning: a write right after the move showed in about 4 % of tries, so 200 of them."""
    library_device("jax:cpu")
    for _ in range(200):
        host = np.zeros((64, 64), np.float32)
        moved = xn.to_device(host, "jax:cpu")
        host += 1
        np.testing.assert_array_equal(xn.to_numpy(moved), np.zeros((64, 64)))


def test_numpy_and_torch_on_the_cpu_share_memory_unless_a_copy_is_asked():
    library_device("torch:cpu")
    host = np.zeros(3, np.float32)
    shared, copied = xn.to_device(host, "torch:cpu"), xn.to_device(host, "torch:cpu", copy=True)
    shared += 1
    copied += 5
    np.testing.assert_array_equal(host, np.ones(3))
    back = xn.to_device(shared, "cpu", copy=True)
    back += 1
    np.testing.assert_array_equal(xn.to_numpy(shared), np.ones(3))


@pytest.mark.parametrize("route", [("jax:cpu", "torch:cpu"), ("jax:cpu", "cpu"), ("cpu", "torch:cpu"),
                                   ("torch:cpu", "cpu")], ids=lambda r: "->".join(r))
def test_a_moved_model_trains_without_touching_the_arrays_the_caller_holds(route):
    for spec in route:
        if spec != "cpu":
            library_device(spec)
    x, t = xn.datasets.spiral(10, 3, seed=0)
    model = _mlp().to(route[0])
    held = model.named_params()["0.W"]
    before = np.array(xn.to_numpy(held))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.to(route[1])
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.5), epochs=1, batch_size=10,
                 device=route[1], progress=False)
    assert model.device.name == route[1]
    np.testing.assert_array_equal(xn.to_numpy(held), before)
    assert not np.array_equal(xn.to_numpy(model.named_params()["0.W"]), before)


@pytest.mark.parametrize("route", [("cpu", "torch:cpu"), ("jax:cpu", "cpu"), ("torch:cpu", "jax:cpu")],
                         ids=lambda r: "->".join(r))
@pytest.mark.parametrize("make", [lambda: xn.optim.SGD(0.1, momentum=0.9), lambda: xn.optim.Adam(0.01)],
                         ids=["momentum", "adam"])
def test_optimizer_state_follows_a_model_moved_between_steps(route, make):
    for spec in route:
        if spec != "cpu":
            library_device(spec)
    x, t = xn.datasets.spiral(5, 3, seed=0)
    loss = xn.losses.SoftmaxCrossEntropy()

    def steps(model, opt, dev, n):
        for _ in range(n):
            loss.forward(model.forward(xn.to_device(x, dev)), xn.to_device(t, dev))
            model.backward(loss.backward())
            opt.step(model)

    reference, opt = _mlp(), make()
    steps(reference, opt, "cpu", 4)
    model, opt = _mlp().to(route[0]), make()
    steps(model, opt, route[0], 2)
    model.to(route[1])
    steps(model, opt, route[1], 2)
    assert model.device.name == route[1] and all(backend.device_of(v) == model.device
                                                  for v in model.named_params().values())
    for name, v in model.named_params().items():
        np.testing.assert_allclose(xn.to_numpy(v), reference.named_params()[name], rtol=1e-5, atol=1e-6)


def test_to_numpy_gives_torch_bfloat16_as_float32():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    got = xn.to_numpy(torch.tensor([1.5, -2.0, 3.140625], dtype=torch.bfloat16))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [1.5, -2.0, 3.140625])


# -- PyTorch: autograd off, no host copies in a step --------------------------------------------------


def test_torch_tensors_never_require_grad_and_no_graph_is_built():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x, t = xn.datasets.spiral(10, 3, seed=0)
    xt = torch.tensor(x, requires_grad=True)  # a user's tensor that autograd tracks
    model = _mlp("float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even torch's "converting a tensor with requires_grad=True"
        xn.train(model, (xt, torch.tensor(t)), loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=2,
                 batch_size=10, device="auto", progress=False)
        xn.evaluate(model, (xt, torch.tensor(t)), loss="cross_entropy")
    assert model.device.name == "torch:cpu"
    for v in [*model.state().values(), *model.named_grads().values()]:
        assert not v.requires_grad and v.grad_fn is None
    y = model.predict(xt)
    assert not y.requires_grad and y.grad_fn is None
    assert xt.grad is None


def test_a_hand_written_torch_loop_builds_no_graph_from_tensors_that_require_grad():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x, t = xn.datasets.spiral(10, 3, seed=0)
    xt = torch.tensor(x, requires_grad=True)
    model, loss, opt = _mlp().to("torch:cpu"), xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.1, momentum=0.9)
    for _ in range(2):
        y = model.forward(xt)
        value = loss.forward(y, torch.tensor(t))
        model.backward(loss.backward())
        opt.step(model)
    tracked = [y, value, *model.state().values(), *model.named_grads().values(),
               *(v for s in opt.state.values() for v in s.values())]
    assert all(not v.requires_grad and v.grad_fn is None for v in tracked)
    dy = torch.ones(30, 3, requires_grad=True)  # a gradient that autograd tracks, given to backward
    model.forward(xt)
    dx = model.backward(dy * 1.0)
    opt.step(model)
    assert dx.grad_fn is None and all(v.is_leaf and not v.requires_grad for v in model.state().values())
    lstm = L.LSTM(2, 4, stateful=True).to("torch:cpu")
    h = torch.zeros(5, 4, requires_grad=True)
    lstm.set_state(h, h)
    hs = lstm.forward(torch.ones(5, 3, 2, requires_grad=True))
    assert hs.grad_fn is None and lstm.backward(torch.ones(5, 3, 4, requires_grad=True)).grad_fn is None
    assert xt.grad is None


def test_a_torch_training_step_copies_nothing_through_the_host(monkeypatch):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x, t = xn.datasets.spiral(20, 3, seed=0)
    calls = []
    for name in ("numpy", "__array__", "tolist", "cpu", "item", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _f=original, _n=name, **k: (calls.append(_n),
                                                                                            _f(self, *a, **k))[1])

    def host_calls(batch_size):
        calls.clear()
        model = xn.Sequential(L.Linear(2, 8), L.ReLU(), L.Dropout(0.3, seed=0), L.Linear(8, 3))
        xn.train(model, (xn.to_device(x, "torch:cpu"), xn.to_device(t, "torch:cpu")), loss="cross_entropy",
                 optimizer=xn.optim.Momentum(0.1), epochs=2, batch_size=batch_size, device="auto", progress=False)
        return list(calls)

    host_calls(60)  # once-per-process probes (the update rule) out of the way
    assert host_calls(60) == host_calls(5)  # 1 or 12 steps per epoch: the same reads, none per step


def test_gradcheck_runs_in_float64_on_the_torch_device():
    dev = library_device("torch:cpu")
    x, t = xn.datasets.spiral(3, 3, seed=0)
    model = xn.Sequential(L.Linear(2, 4), L.Tanh(), L.Linear(4, 3)).to(dev)
    report = xn.gradcheck(model, x, t, loss="cross_entropy")
    assert report.ok and report.device == "torch:cpu"
    assert model.dtype == library_device("torch:cpu").xp.float32  # the model itself is untouched


# -- JAX: float64 only with jax_enable_x64 ------------------------------------------------------------


def test_jax_float64_without_x64_is_refused_not_truncated():
    pytest.importorskip("jax", reason="jax is not installed (pip install -e '.[backends]')")
    code = ("import numpy as np, warnings, xpnet as xn\n"
            "dev = xn.device('jax:cpu')\n"
            "print(dev.supports_float64())\n"
            "print(xn.to_device(np.ones(2, np.float32), dev).dtype)\n"
            "try:\n    xn.to_device(np.ones(2), dev)\nexcept ValueError as e:\n    print(e)\n"
            "warnings.simplefilter('error')  # float32 training: labels and counts in JAX's int32, no warning\n"
            "x, t = xn.datasets.spiral(10, 3, seed=0)\n"
            "model = xn.Sequential(xn.layers.Linear(2, 3))\n"
            "h = xn.train(model, (x, t), loss='cross_entropy', optimizer=xn.optim.SGD(0.1), epochs=1,\n"
            "             batch_size=10, device=dev, progress=False)\n"
            "print(h.device, model.dtype)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "JAX_ENABLE_X64": "0"}).stdout.splitlines()
    assert out[0] == "False" and out[1] == "float32"
    assert "cannot hold float64" in out[2] and "jax_enable_x64" in out[2]
    assert out[3] == "jax:cpu float32"


def test_assert_backends_agree_over_numpy_torch_and_jax():
    with warnings.catch_warnings():
        warnings.simplefilter("error", xn.XpnetDeviceWarning)  # none of the three may be skipped here
        library_device("torch:cpu"), library_device("jax:cpu")
        x = np.random.default_rng(0).standard_normal((4, 2, 5, 5))
        results = xn.testing.assert_backends_agree(
            lambda x: L.MaxPool2d(2, stride=1).forward(x), x, devices=("cpu", "torch:cpu", "jax:cpu"))
    assert sorted(results) == ["cpu", "jax:cpu", "torch:cpu"]


def test_the_command_line_takes_the_strings(capsys):
    from xpnet.cli import main

    library_device("torch:cpu")
    assert main(["gradcheck", "--device", "torch:cpu", "--fast"]) == 0
    assert "device: torch:cpu" in capsys.readouterr().out
