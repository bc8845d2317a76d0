"""PyTorch's state dicts into xpnet models and back (xn.load_torch_state_dict, xn.torch_state_dict): for every
layer type with weights and for whole models, PyTorch's model trained a few steps in float64 and xpnet's with
its weights give the same evaluation outputs, and PyTorch's model given xpnet's state dict gives them again;
the errors name the layer, the PyTorch key and what was expected against what came."""

import inspect
import textwrap

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import (ELU, GELU, GRU, LSTM, RNN, BatchNorm, Conv2d, ConvTranspose2d, Embedding, Flatten,
                          GroupNorm, Identity, InstanceNorm1d, InstanceNorm2d, LayerNorm, LeakyReLU, Linear,
                          LogSoftmax, MaxPool2d, ReLU, RMSNorm, SiLU, Softmax, Softplus, Tanh, TiedLinear, Upsample)

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
nn = torch.nn

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _floats(*shape):
    return lambda rng: rng.standard_normal(shape)


def _ids(*shape, vocab):
    return lambda rng: rng.integers(0, vocab, shape)


class TorchLanguageModel(nn.Module):
    def __init__(self, vocab, dim, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, vocab)

    def forward(self, ids):
        return self.fc(self.lstm(self.embed(ids))[0])


class LanguageModel(xn.Model):
    """The xpnet model whose attributes mirror TorchLanguageModel's."""

    def __init__(self, vocab, dim, hidden):
        super().__init__()
        self.embed, self.lstm, self.fc = Embedding(vocab, dim), LSTM(dim, hidden), Linear(hidden, vocab)

    def forward(self, ids, train=True):
        return self.fc.forward(self.lstm.forward(self.embed.forward(ids, train), train), train)

    def backward(self, dy):
        return self.embed.backward(self.lstm.backward(self.fc.backward(dy)))


# (id, the PyTorch model, the xpnet model of the same structure, its input)
CASES = [
    ("Linear", lambda: nn.Linear(5, 3), lambda: Linear(5, 3), _floats(4, 5)),
    ("Linear-bias=False", lambda: nn.Linear(5, 3, bias=False), lambda: Linear(5, 3, bias=False), _floats(4, 5)),
    ("Conv2d-stride-padding", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
     lambda: Conv2d(3, 4, 3, stride=2, padding=1), _floats(2, 3, 7, 7)),
    ("Conv2d-bias=False", lambda: nn.Conv2d(3, 4, (3, 2), bias=False), lambda: Conv2d(3, 4, (3, 2), bias=False),
     _floats(2, 3, 6, 5)),
    ("Conv2d-groups", lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), lambda: Conv2d(4, 6, 3, padding=1, groups=2),
     _floats(2, 4, 5, 5)),
    ("Conv2d-depthwise", lambda: nn.Conv2d(3, 6, 3, stride=2, groups=3), lambda: Conv2d(3, 6, 3, stride=2, groups=3),
     _floats(2, 3, 7, 7)),
    ("ConvTranspose2d-stride-output_padding",
     lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
     lambda: ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), _floats(2, 3, 4, 5)),
    ("ConvTranspose2d-groups-bias=False", lambda: nn.ConvTranspose2d(4, 6, (2, 3), groups=2, bias=False),
     lambda: ConvTranspose2d(4, 6, (2, 3), groups=2, bias=False), _floats(2, 4, 3, 3)),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(5), lambda: BatchNorm(5), _floats(6, 5)),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3), lambda: BatchNorm(3), _floats(4, 3, 5, 5)),
    ("BatchNorm2d-affine=False", lambda: nn.BatchNorm2d(3, affine=False), lambda: BatchNorm(3, affine=False),
     _floats(4, 3, 5, 5)),
    ("BatchNorm1d-momentum=None", lambda: nn.BatchNorm1d(5, momentum=None), lambda: BatchNorm(5, momentum=None),
     _floats(6, 5)),
    ("LayerNorm", lambda: nn.LayerNorm(5), lambda: LayerNorm(5), _floats(3, 4, 5)),
    ("GroupNorm", lambda: nn.GroupNorm(2, 4), lambda: GroupNorm(2, 4), _floats(3, 4, 3, 3)),
    ("GroupNorm-bias=False", lambda: nn.GroupNorm(4, 4, bias=False), lambda: GroupNorm(4, 4, bias=False),
     _floats(3, 4, 5)),
    ("InstanceNorm1d-affine", lambda: nn.InstanceNorm1d(3, affine=True), lambda: InstanceNorm1d(3, affine=True),
     _floats(2, 3, 5)),
    ("RMSNorm", lambda: nn.RMSNorm((4, 5)), lambda: RMSNorm((4, 5)), _floats(3, 4, 5)),
    ("InstanceNorm2d", lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.InstanceNorm2d(3)),
     lambda: xn.Sequential(Conv2d(2, 3, 3), InstanceNorm2d(3)), _floats(2, 2, 5, 5)),
    ("Embedding", lambda: nn.Embedding(10, 4), lambda: Embedding(10, 4), _ids(3, 6, vocab=10)),
    ("RNN", lambda: nn.RNN(4, 6, batch_first=True), lambda: RNN(4, 6), _floats(3, 5, 4)),
    ("LSTM", lambda: nn.LSTM(4, 6, batch_first=True), lambda: LSTM(4, 6), _floats(3, 5, 4)),
    ("LSTM-time-first-bias=False", lambda: nn.LSTM(4, 6, bias=False), lambda: LSTM(4, 6, bias=False, batch_first=False),
     _floats(5, 3, 4)),
    ("GRU", lambda: nn.GRU(4, 6, batch_first=True), lambda: GRU(4, 6), _floats(3, 5, 4)),
    ("LSTM-2-layers-bidirectional-dropout", lambda: nn.LSTM(4, 6, 2, batch_first=True, dropout=0.3, bidirectional=True),
     lambda: LSTM(4, 6, num_layers=2, dropout=0.3, bidirectional=True), _floats(3, 5, 4)),
    ("GRU-2-layers-time-first", lambda: nn.GRU(4, 6, 2), lambda: GRU(4, 6, batch_first=False, num_layers=2),
     _floats(5, 3, 4)),
    ("MLP", lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)),
     lambda: xn.Sequential(Linear(8, 16), ReLU(), Linear(16, 16), Tanh(), Linear(16, 3)), _floats(7, 8)),
    ("CNN", lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(4 * 4 * 4, 10)),
     lambda: xn.Sequential(Conv2d(1, 4, 3, padding=1), BatchNorm(4), ReLU(), MaxPool2d(2), Flatten(),
                           Linear(4 * 4 * 4, 10)), _floats(5, 1, 8, 8)),
    ("MLP-activations", lambda: nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 16), nn.LeakyReLU(0.2),
                                              nn.ELU(0.5), nn.SiLU(), nn.Softplus(2.0, 10.0), nn.Identity(),
                                              nn.GELU(approximate="tanh"), nn.Softmax(dim=1), nn.Linear(16, 3),
                                              nn.LogSoftmax(dim=1)),
     lambda: xn.Sequential(Linear(8, 16), GELU(), Linear(16, 16), LeakyReLU(0.2), ELU(0.5), SiLU(), Softplus(2.0, 10.0),
                           Identity(), GELU(approximate="tanh"), Softmax(dim=1), Linear(16, 3), LogSoftmax(dim=1)),
     _floats(7, 8)),
    ("PReLU", lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.PReLU(3), nn.Flatten(), nn.Linear(12, 4), nn.PReLU()),
     lambda: xn.Sequential(Conv2d(2, 3, 3), xn.layers.PReLU(3), Flatten(), Linear(12, 4), xn.layers.PReLU()),
     _floats(3, 2, 4, 4)),
    ("encoder-decoder", lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                              nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1), nn.Tanh(),
                                              nn.Upsample(scale_factor=2), nn.ConvTranspose2d(2, 1, 3, padding=1)),
     lambda: xn.Sequential(Conv2d(1, 4, 3, stride=2, padding=1), ReLU(), ConvTranspose2d(4, 2, 4, stride=2, padding=1),
                           Tanh(), Upsample(scale_factor=2), ConvTranspose2d(2, 1, 3, padding=1)), _floats(3, 1, 6, 6)),
    ("LSTM-language-model", lambda: TorchLanguageModel(12, 5, 6), lambda: LanguageModel(12, 5, 6),
     _ids(3, 7, vocab=12)),
]


def _xpnet(make):
    """The model (a single layer in a Sequential) in float64."""
    made = make()
    return (made if isinstance(made, xn.Model) else xn.Sequential(made)).to(dtype="float64")


def _torch(make):
    """The PyTorch model in float64 with random weights (biases and BatchNorm's affine ones included)."""
    rng = np.random.default_rng(0)
    module = make().double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.5))
    return module


def _out(module, x):
    y = module(torch.from_numpy(x))
    return (y[0] if isinstance(y, tuple) else y).detach().numpy()  # nn.RNN/LSTM/GRU: (output, state)


def _train(module, make_input, rng):
    """Two SGD steps in training mode (forwards only for a model without parameters); returns it in eval mode."""
    params = list(module.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05) if params else None
    module.train()
    for _ in range(2):
        y = module(torch.from_numpy(make_input(rng)))
        y = y[0] if isinstance(y, tuple) else y
        if optimizer is not None:
            optimizer.zero_grad()
            (y * torch.from_numpy(rng.standard_normal(tuple(y.shape)))).sum().backward()
            optimizer.step()
    return module.eval()


def _prefixed(state_dict, prefix):
    return {prefix + k: v for k, v in state_dict.items()}


@pytest.mark.parametrize("make_torch, make_xpnet, make_input", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_pytorch_weights_give_pytorchs_outputs_and_come_back(make_torch, make_xpnet, make_input):
    rng = np.random.default_rng(1)
    theirs = _train(_torch(make_torch), make_input, rng)
    ours = _xpnet(make_xpnet)
    prefix = "" if isinstance(make_xpnet(), xn.Model) else "0."
    x = make_input(rng)
    expected = _out(theirs, x)

    assert xn.load_torch_state_dict(ours, _prefixed(theirs.state_dict(), prefix)) == ([], [])
    np.testing.assert_allclose(ours.predict(x), expected, **TOL)

    back = xn.torch_state_dict(ours)
    assert list(back) == list(_prefixed(theirs.state_dict(), prefix))  # PyTorch's names, in its order
    fresh = make_torch().double()
    fresh.load_state_dict({k[len(prefix):]: torch.from_numpy(v) for k, v in back.items()})
    np.testing.assert_allclose(_out(fresh.eval(), x), expected, **TOL)


@pytest.mark.parametrize("make_torch, make_xpnet, make_input", [pytest.param(*c[1:], id=c[0]) for c in CASES
                                                                 if c[0] in ("CNN", "LSTM-language-model")])
def test_loads_into_a_model_on_any_device_and_dtype_and_comes_back_to_the_host(case, make_torch, make_xpnet,
                                                                              make_input):
    dev, dtype = case
    rng = np.random.default_rng(4)
    theirs = _train(_torch(make_torch), make_input, rng)
    ours = make_xpnet().to(dev, dtype=dtype)
    xn.load_torch_state_dict(ours, theirs.state_dict())
    for v in ours.state().values():
        xn.testing.assert_placed(v, dev, dtype)
    x = make_input(rng)
    tol = TOL if dtype == "float64" else {"rtol": 1e-4, "atol": 1e-5}
    np.testing.assert_allclose(xn.to_numpy(ours.predict(x)), _out(theirs, x), **tol)
    back = xn.torch_state_dict(ours)
    assert all(type(v) is np.ndarray for v in back.values())
    fresh = make_torch().double()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()})
    np.testing.assert_allclose(_out(fresh.eval(), x), _out(theirs, x), **tol)


def test_batchnorm_count_comes_in_with_momentum_none_and_is_dropped_otherwise():
    """PyTorch counts batches for every momentum but uses the count only with momentum=None, the one setting
    whose xpnet BatchNorm keeps it; for the others it is dropped on the way in and given back as 0."""
    rng = np.random.default_rng(2)
    for momentum in (None, 0.1):
        theirs = _train(_torch(lambda m=momentum: nn.BatchNorm1d(3, momentum=m)), _floats(4, 3), rng)
        assert int(theirs.num_batches_tracked) == 2
        ours = xn.Sequential(BatchNorm(3, momentum=momentum))
        xn.load_torch_state_dict(ours, _prefixed(theirs.state_dict(), "0."))
        back = xn.torch_state_dict(ours)["0.num_batches_tracked"]
        assert back.dtype == np.int64 and back.shape == ()
        if momentum is None:
            assert float(ours[0].buffers["num_batches_tracked"]) == 2.0 and int(back) == 2
        else:
            assert "num_batches_tracked" not in ours[0].buffers and int(back) == 0


def test_numpy_arrays_and_tensors_with_grad_are_taken_alike():
    theirs = _torch(lambda: nn.Linear(3, 2))
    arrays = {k: v.detach().numpy() for k, v in theirs.named_parameters()}
    for state in (arrays, dict(theirs.named_parameters())):  # parameters themselves: requires_grad=True
        ours = xn.Sequential(Linear(3, 2)).to(dtype="float64")
        xn.load_torch_state_dict(ours, _prefixed(state, "0."))
        np.testing.assert_array_equal(ours[0].params["W"], arrays["weight"].T)
        assert ours[0].params["W"].flags.c_contiguous


def test_as_tensors_gives_torch_tensors():
    ours = xn.Sequential(Linear(3, 2), BatchNorm(2))
    back = xn.torch_state_dict(ours, as_tensors=True)
    assert all(isinstance(v, torch.Tensor) for v in back.values())
    theirs = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    theirs.load_state_dict(back)
    np.testing.assert_array_equal(theirs[0].weight.detach().numpy(), ours[0].params["W"].T)


def test_tied_weights_come_in_once_and_go_back_under_both_names():
    """PyTorch's state dict of a tied model holds the weight under the embedding's and the output layer's
    names; xpnet's TiedLinear shares the Embedding's W, so the two must be the same array."""
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.fc = nn.Embedding(6, 4), nn.Linear(4, 6)
            self.fc.weight = self.embed.weight

        def forward(self, ids):
            return self.fc(self.embed(ids))

    theirs = _torch(Tied).eval()
    embed = Embedding(6, 4)
    ours = xn.Sequential(embed, TiedLinear(embed)).to(dtype="float64")
    renamed = {k.replace("embed.", "0.").replace("fc.", "1."): v for k, v in theirs.state_dict().items()}
    xn.load_torch_state_dict(ours, renamed)
    ids = np.random.default_rng(3).integers(0, 6, (2, 5))
    np.testing.assert_allclose(ours.predict(ids), _out(theirs, ids), **TOL)
    assert list(xn.torch_state_dict(ours)) == list(renamed)

    renamed["1.weight"] = renamed["1.weight"] + 1
    with pytest.raises(ValueError, match=r"PyTorch's '1.weight' differs from '0.weight', but this TiedLinear shares "
                                         r"the Embedding '0''s W"):
        xn.load_torch_state_dict(ours, renamed)


def test_a_layer_shared_at_two_places_comes_in_once_and_goes_back_under_both_names():
    """PyTorch's state dict names a module shared at two places (l2.self_attn = l1.self_attn, one ReLU-free block
    twice in a Sequential) at both; xpnet names the one object at its first place (the load said "the xpnet model
    has no layer '1.self_attn'", and torch_state_dict gave no key that PyTorch's strict load wants there)."""
    layers = [nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True) for _ in range(2)]
    layers[1].self_attn = layers[0].self_attn
    block = nn.Linear(4, 4)
    theirs = nn.Sequential(*layers, block, nn.Tanh(), block).double().eval()
    ours = xn.Sequential(*[xn.layers.TransformerEncoderLayer(4, 2, 8, dropout=0.0, dtype="float64") for _ in "ab"])
    ours[1].self_attn = ours[0].self_attn
    shared = Linear(4, 4, dtype="float64")
    ours.extend([shared, Tanh(), shared])
    xn.load_torch_state_dict(ours, theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    np.testing.assert_allclose(ours.predict(x), _out(theirs, x), **TOL)
    assert sorted(xn.torch_state_dict(ours)) == sorted(theirs.state_dict())
    theirs.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))

    changed = {**theirs.state_dict(), "4.bias": torch.zeros(4, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"PyTorch's '4.bias' differs from '2.bias', but the xpnet model holds one "
                                         r"layer object at both places \('4' is '2'\)"):
        xn.load_torch_state_dict(ours, changed)


def test_a_misshapen_array_names_layer_key_and_both_shapes_and_changes_nothing():
    ours = xn.Sequential(Linear(5, 4), ReLU(), Linear(4, 2))
    before = ours.state_dict()
    theirs = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError) as info:
        xn.load_torch_state_dict(ours, theirs.state_dict())
    message = str(info.value)
    assert message.startswith("xn.load_torch_state_dict: the PyTorch state dict does not fit the xpnet Sequential:")
    assert ("layer '0' (Linear(in_features=5, out_features=4, bias=True)): PyTorch's '0.weight' has shape (3, 5), "
            "expected (4, 5) (for its W (5, 4) = weight.T)") in message
    assert "PyTorch's '0.bias' has shape (3,), expected (4,) (for its b (4,) = bias)" in message
    assert "'2.weight'" not in message  # the layer that fits is not blamed
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_a_two_layer_lstm_says_to_build_the_xpnet_lstm_with_two_layers():
    theirs = TorchLanguageModel(12, 5, 6)
    theirs.lstm = nn.LSTM(5, 6, num_layers=2, batch_first=True)
    with pytest.raises(ValueError) as info:
        xn.load_torch_state_dict(LanguageModel(12, 5, 6), theirs.state_dict())
    assert ("PyTorch's 'lstm.weight_ih_l1', 'lstm.weight_hh_l1', 'lstm.bias_ih_l1', 'lstm.bias_hh_l1': layer 1 of a "
            "stacked nn.LSTM(num_layers=2 or more): build the xpnet layer as the PyTorch one, "
            "LSTM(D, H, num_layers=2, ...)") in str(info.value)


def test_a_bidirectional_gru_says_to_build_the_xpnet_gru_bidirectional():
    with pytest.raises(ValueError, match=r"PyTorch's '0.weight_ih_l0_reverse', '0.weight_hh_l0_reverse', "
                                         r"'0.bias_ih_l0_reverse', '0.bias_hh_l0_reverse': the reverse direction of a "
                                         r"bidirectional nn.GRU: build the xpnet layer as the PyTorch one, "
                                         r"GRU\(D, H, ..., bidirectional=True\)"):
        xn.load_torch_state_dict(xn.Sequential(GRU(3, 4)), _prefixed(nn.GRU(3, 4, bidirectional=True).state_dict(),
                                                                      "0."))
    with pytest.raises(ValueError, match=r"PyTorch's '0.weight_ih_l2', .*: layer 2 of a stacked "
                                         r"nn.GRU\(num_layers=3 or more\)"):
        xn.load_torch_state_dict(xn.Sequential(GRU(3, 4, num_layers=2, bidirectional=True)),
                                 _prefixed(nn.GRU(3, 4, 3, bidirectional=True).state_dict(), "0."))


def test_strict_names_missing_and_unexpected_keys_and_strict_false_returns_them():
    theirs = dict(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict())
    del theirs["2.bias"]
    theirs["3.weight"] = torch.zeros(2, 2)
    ours = xn.Sequential(Linear(3, 4, bias=False), ReLU(), Linear(4, 2))
    with pytest.raises(ValueError) as info:
        xn.load_torch_state_dict(ours, theirs)
    lines = str(info.value).splitlines()[1:]
    assert lines == [
        ("  layer '2' (Linear(in_features=4, out_features=2, bias=True)): PyTorch's '2.bias' not in the dict "
         "(for b = bias)"),
        ("  PyTorch's '0.bias': layer '0' (Linear(in_features=3, out_features=4, bias=False)) takes '0.weight' "
         "(it was built with bias=False)"),
        "  PyTorch's '3.weight': the xpnet model has no layer '3'",
    ]
    assert xn.load_torch_state_dict(ours, theirs, strict=False) == (["2.bias"], ["0.bias", "3.weight"])
    np.testing.assert_array_equal(ours[2].params["W"], theirs["2.weight"].numpy().T)


def test_model_load_state_dict_of_pytorch_names_points_to_the_converter():
    ours = xn.Sequential(Linear(3, 4), ReLU(), LSTM(4, 2))
    theirs = {**_prefixed(nn.Linear(3, 4).state_dict(), "0."), **_prefixed(nn.LSTM(4, 2).state_dict(), "2.")}
    with pytest.raises(ValueError) as info:
        ours.load_state_dict(theirs)
    first, hint = str(info.value).splitlines()
    assert first.startswith("Sequential.load_state_dict: missing keys ['0.W', '0.b', '2.Wx', '2.Wh', '2.b']")
    assert hint == ("these look like a PyTorch state dict's names ('weight', 'bias', 'weight_ih_l0'...): "
                    "xn.load_torch_state_dict(model, d) converts its names and layouts")
    xn.load_torch_state_dict(ours, theirs)
    with pytest.raises(ValueError) as info:  # xpnet's own names stay one line
        ours.load_state_dict({"0.W": ours[0].params["W"]})
    assert "\n" not in str(info.value)


def test_whole_dict_hints_and_a_book_gru_is_refused():
    ours = xn.Sequential(Linear(3, 2))
    with pytest.raises(ValueError, match=r"every key starts with 'module.' \(saved from nn.DataParallel"):
        xn.load_torch_state_dict(ours, _prefixed(nn.Sequential(nn.Linear(3, 2)).state_dict(), "module."))
    with pytest.raises(ValueError, match=r"some keys are xpnet's own names: .* model.load_state_dict\(d\)"):
        xn.load_torch_state_dict(ours, ours.state_dict())
    book = xn.Sequential(GRU(3, 4, convention="book"))
    for call in (lambda: xn.load_torch_state_dict(book, _prefixed(nn.GRU(3, 4).state_dict(), "0.")),
                 lambda: xn.torch_state_dict(book)):
        with pytest.raises(ValueError, match=r"layer '0' \(GRU\(.*convention='book'\)\): the book's GRU "
                                             r"\(convention='book'\) is another function than nn.GRU"):
            call()


def test_an_optimizers_state_dict_is_refused_naming_what_loads_it_and_a_checkpoint_names_the_models_entry():
    """torch.optim's state_dict ({'state': ..., 'param_groups': ...}) is no checkpoint whose 'state' is the model's;
    a checkpoint whose first entry is the optimizer's points to the entry of tensors by name."""
    ours, ref = xn.Sequential(Linear(3, 2)), nn.Sequential(nn.Linear(3, 2))
    topt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    ref(torch.ones(1, 3)).sum().backward()
    topt.step()
    with pytest.raises(ValueError, match=r"the dict is torch\.optim's state_dict \(an optimizer's: 'state', "
                                         r"'param_groups'\), which loads with xn\.load_torch_optimizer_state_dict\("
                                         r"optimizer, model, d\); the model's weights are in the model's state_dict"):
        xn.load_torch_state_dict(ours, topt.state_dict())
    checkpoint = {"optimizer_state_dict": topt.state_dict(), "model_state_dict": ref.state_dict()}
    with pytest.raises(ValueError, match=r"pass key= naming the state dict, key='model_state_dict'$"):
        xn.load_torch_state_dict(ours, checkpoint)


def test_the_docstring_example_runs():
    doc = inspect.getdoc(xn.load_torch_state_dict)
    example = textwrap.dedent(doc.split("Example::", 1)[1])
    scope = {"torch": torch, "xn": xn}
    exec(compile(example, "load_torch_state_dict's docstring", "exec"), scope)
    x = np.random.default_rng(5).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(scope["model"].predict(x), _out(scope["torch_model"], x), rtol=1e-5, atol=1e-6)
