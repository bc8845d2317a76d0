"""SpectralNorm and WeightNorm (PyTorch's spectral_norm and weight_norm) against the installed torch in float64: several
training steps (y, dx, every parameter gradient, u and v) after loading torch's state dict, evaluation; the older hook
functions' state dicts; gradcheck; files; xn.train; arguments. Every backend: tests/test_every_layer_everywhere.py."""

import numpy as np
import pytest

import xpnet as xn

L = xn.layers
torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
P = torch.nn.utils.parametrizations

# (torch module, the xpnet layer, x's shape)
LAYERS = {
    "Linear": (lambda: torch.nn.Linear(4, 3), lambda: L.Linear(4, 3, dtype="float64"), (5, 4)),
    "Conv2d": (lambda: torch.nn.Conv2d(2, 3, 3), lambda: L.Conv2d(2, 3, 3, dtype="float64"), (2, 2, 4, 4)),
    "ConvTranspose2d": (lambda: torch.nn.ConvTranspose2d(2, 3, 2), lambda: L.ConvTranspose2d(2, 3, 2, dtype="float64"),
                        (2, 2, 3, 3)),
    "ConvTranspose1d": (lambda: torch.nn.ConvTranspose1d(2, 3, 3), lambda: L.ConvTranspose1d(2, 3, 3, dtype="float64"),
                        (2, 2, 5)),
}


def _grads_by_torch_names(model):
    """The model's gradients by PyTorch's names and in its layouts (torch_state_dict over grads in place of params)."""
    layer = model[0]
    params = dict(layer.params)
    layer.params.update(layer.grads)
    try:
        return xn.torch_state_dict(model)
    finally:
        layer.params.update(params)


def _steps_agree(theirs, ours, shape, steps, lr=0.1):
    """``steps`` training forwards, backwards and SGD updates of both: y, dx, gradients, then every array of the state
    dicts (u and v after the power iteration, the updated parameters) equal; then an evaluation forward."""
    theirs = torch.nn.Sequential(theirs)
    xn.load_torch_state_dict(ours, theirs.state_dict())
    optimizer = torch.optim.SGD(theirs.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x = rng.standard_normal(shape)
        xt = torch.tensor(x, requires_grad=True)
        y = theirs(xt)
        dy = rng.standard_normal(tuple(y.shape))
        optimizer.zero_grad()
        y.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(ours.forward(x), y.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
        grads = _grads_by_torch_names(ours)
        for name, p in theirs.named_parameters():
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
        optimizer.step()
        xn.optim.SGD(lr).step(ours)
        state = xn.torch_state_dict(ours)
        assert state.keys() == theirs.state_dict().keys()
        for name, value in theirs.state_dict().items():
            np.testing.assert_allclose(state[name], value.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    theirs.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ours.forward(x, train=False), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    for name, value in theirs.state_dict().items():  # u and v as they were: no power iteration in evaluation
        np.testing.assert_allclose(xn.torch_state_dict(ours)[name], value.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["Linear", "Conv2d", "ConvTranspose2d"])
def test_spectral_norm_trains_as_pytorchs(kind):
    """dim=None is 0, 1 for a ConvTranspose; u and v are torch's (loaded), then each step's power iteration is ours."""
    torch.manual_seed(0)
    make_theirs, make_ours, shape = LAYERS[kind]
    theirs = P.spectral_norm(make_theirs().double())
    _steps_agree(theirs, xn.Sequential(L.SpectralNorm(make_ours())), shape, steps=3)


@pytest.mark.parametrize("kind, dim", [("Linear", 0), ("Conv2d", None), ("ConvTranspose1d", 1)])
def test_weight_norm_trains_as_pytorchs(kind, dim):
    torch.manual_seed(0)
    make_theirs, make_ours, shape = LAYERS[kind]
    theirs = P.weight_norm(make_theirs().double(), dim=dim)
    _steps_agree(theirs, xn.Sequential(L.WeightNorm(make_ours(), dim=dim)), shape, steps=2)


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
def test_the_older_functions_state_dicts_load():
    """torch.nn.utils.spectral_norm's weight_orig, weight_u, weight_v and weight_norm's weight_g, weight_v load into the
    same layers. Evaluation forwards equal theirs; in training the older spectral_norm updates v before u, so only the
    weight-normalised layer, which has no power iteration, is compared there."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.utils.spectral_norm(torch.nn.Linear(4, 3).double(), n_power_iterations=2),
                                 torch.nn.Tanh(), torch.nn.utils.weight_norm(torch.nn.Conv1d(3, 2, 1).double()))
    assert {"0.weight_orig", "0.weight_u", "2.weight_g"} <= theirs.state_dict().keys()
    ours = xn.Sequential(L.SpectralNorm(L.Linear(4, 3, dtype="float64"), n_power_iterations=2), L.Tanh(),
                         L.WeightNorm(L.Conv1d(3, 2, 1, dtype="float64")))
    xn.load_torch_state_dict(ours, theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((3, 4))

    def torch_forward(x):  # (N, 4) -> Conv1d's (N, 3, 1)
        return theirs[2](theirs[1](theirs[0](torch.from_numpy(x)))[:, :, None]).detach().numpy()

    def our_forward(x, train):
        return ours[2].forward(ours[1].forward(ours[0].forward(x, train))[:, :, None], train)

    theirs.eval()
    np.testing.assert_allclose(our_forward(x, False), torch_forward(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours[0].buffers["u"], theirs[0].weight_u.numpy(), rtol=1e-12)
    theirs.train()
    h = np.random.default_rng(1).standard_normal((3, 3, 1))
    np.testing.assert_allclose(ours[2].forward(h), theirs[2](torch.from_numpy(h)).detach().numpy(), rtol=1e-12)


def test_gradcheck_passes():
    """gradcheck runs training forwards: with u and v converged, the power iteration's own dependence on W adds
    nothing to first order, so the analytic gradient (u, v held constant, as PyTorch's) is the whole one."""
    xn.init.seed(0)
    model = xn.Sequential(L.SpectralNorm(L.Linear(3, 4, dtype="float64"), n_power_iterations=40), L.Tanh(),
                          L.WeightNorm(L.Linear(4, 2, dtype="float64")), L.Tanh(),
                          L.WeightNorm(L.Linear(2, 2, dtype="float64"), dim=1), L.Tanh(),
                          L.WeightNorm(L.Linear(2, 2, dtype="float64"), dim=None))  # g 0-d, as PyTorch's
    x = np.random.default_rng(0).standard_normal((3, 3))
    report = xn.gradcheck(model, x)
    assert report.ok, report
    assert report["6.g"].ok


def test_files_round_trip_and_xn_train(tmp_path):
    xn.init.seed(0)
    model = xn.Sequential(L.SpectralNorm(L.Conv2d(1, 2, 3, padding=1)), L.ReLU(), L.Flatten(),
                          L.WeightNorm(L.Linear(18, 2)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    t = (x.sum(axis=(1, 2, 3)) > 0).astype(np.int64)
    before = xn.evaluate(model, (x, t), loss="cross_entropy")["loss"]
    history = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(0.05), epochs=15, batch_size=8,
                       progress=False, device="cpu")
    assert history.epochs[-1]["train_loss"] < 0.5 * before
    model.save(tmp_path / "m.npz")
    again = xn.load(tmp_path / "m.npz")
    assert repr(again) == repr(model)
    for name, value in {**model.named_params(), **model.named_buffers()}.items():
        np.testing.assert_array_equal(again.state()[name], value)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(TypeError, match=r"SpectralNorm: expected the layer whose weight .*Linear, Conv1d, .*got ReLU"):
        L.SpectralNorm(L.ReLU())
    with pytest.raises(ValueError, match=r"SpectralNorm: n_power_iterations must be a positive int, got 0"):
        L.SpectralNorm(L.Linear(2, 2), n_power_iterations=0)
    with pytest.raises(ValueError, match=r"WeightNorm: dim must be an int in \[-2, 1\] .* or None, got 2"):
        L.WeightNorm(L.Linear(2, 2), dim=2)
    with pytest.raises(AttributeError, match=r"xn.layers.SpectralNorm\(m, n_power_iterations=1"):
        L.spectral_norm  # noqa: B018 - PyTorch's function name gives the hint
