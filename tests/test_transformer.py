"""TransformerEncoderLayer and TransformerEncoder against PyTorch's own in float64 on every device (PyTorch's weights
loaded by xn.load_torch_state_dict): the output, dsrc and every parameter's gradient, post-norm and pre-norm, ReLU and
GELU, batch first and time first, bias=False, masks; xn.gradcheck with dropout; training in a Sequential on
array-api-strict's second device; PyTorch's copies and initialisation; saving and loading; a planted gradient bug
that must be caught; clear errors."""

import copy
import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import GELU, TransformerEncoder, TransformerEncoderLayer
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

CLOSE = {"rtol": 1e-10, "atol": 1e-12}
N, L, E, HEADS, FF = 2, 5, 8, 2, 16


def _random_weights(theirs, rng):
    """PyTorch's parameters drawn again (biases and LayerNorm's included), so that no zero hides a bug."""
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.5))


def _grads_by_torch_name(ours):
    """Our gradients by PyTorch's names and layouts: a float64 host copy of the model holding them as its
    parameters, through xn.torch_state_dict."""
    holder = copy.deepcopy(ours).to("cpu")
    for name, g in ours.named_grads().items():
        holder.set_param(name, xn.to_numpy(g))
    return xn.torch_state_dict(holder)


def _compare(dev, ours, theirs, src, masks, batch_first=True):
    """forward (eval and train, dropout 0), backward: the output, dsrc and every gradient."""
    rng = np.random.default_rng(7)
    torch_masks = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in masks.items()}
    our_masks = {k: xn.to_device(v, dev) if isinstance(v, np.ndarray) else v for k, v in masks.items()}
    x_t = torch.tensor(src, requires_grad=True)
    y_t = theirs(x_t, **torch_masks)
    dy = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(torch.from_numpy(dy))
    ours.to(dev)
    x = xn.to_device(src, dev)
    y = ours(x, **our_masks)
    assert_placed(y, dev, "float64")
    np.testing.assert_allclose(xn.to_numpy(y), y_t.detach().numpy(), **CLOSE, err_msg="output")
    dx = ours.backward(xn.to_device(dy, dev))
    assert_placed(dx, dev, "float64")
    np.testing.assert_allclose(xn.to_numpy(dx), x_t.grad.numpy(), **CLOSE, err_msg="dsrc")
    grads = _grads_by_torch_name(ours)
    torch_grads = {name: p.grad.numpy() for name, p in theirs.named_parameters(remove_duplicate=False)}
    assert grads.keys() == torch_grads.keys()
    for name, g in torch_grads.items():
        np.testing.assert_allclose(grads[name], g, **CLOSE, err_msg=f"d{name}")


def _causal(length):
    return np.triu(np.ones((length, length), dtype=bool), k=1)


def _padding(rng):
    m = rng.random((N, L)) < 0.4
    m[:, 0] = False
    return m


# (id, constructor arguments beyond (d_model, nhead, dim_feedforward), masks: rng -> forward's mask arguments)
CASES = [
    pytest.param({}, lambda rng: {}, id="post-norm-relu"),
    pytest.param({"norm_first": True}, lambda rng: {}, id="pre-norm"),
    pytest.param({"activation": "gelu"}, lambda rng: {}, id="gelu"),
    pytest.param({"bias": False, "norm_first": True}, lambda rng: {}, id="bias-False"),
    pytest.param({}, lambda rng: {"src_mask": _causal(L), "is_causal": True}, id="causal"),
    pytest.param({"norm_first": True}, lambda rng: {"src_key_padding_mask": np.where(_padding(rng), -np.inf, 0.0),
                                                    "src_mask": rng.standard_normal((L, L))}, id="float-masks"),
]


@pytest.mark.parametrize("kwargs,masks", CASES)
def test_layer_equals_pytorch(dev, rng, kwargs, masks):
    theirs = torch.nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True, dtype=torch.float64,
                                              **kwargs)
    _random_weights(theirs, rng)
    ours = TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, dtype="float64", **kwargs)
    xn.load_torch_state_dict(ours, theirs.state_dict())
    _compare(dev, ours, theirs, rng.standard_normal((N, L, E)), masks(rng))


def test_time_first_equals_pytorchs_default_layout(dev, rng):
    """batch_first=False takes and gives (L, N, E), PyTorch's default."""
    theirs = torch.nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, dtype=torch.float64)
    _random_weights(theirs, rng)
    ours = TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, batch_first=False, dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    _compare(dev, ours, theirs, rng.standard_normal((L, N, E)), {"src_key_padding_mask": _padding(rng)})


def test_encoder_equals_pytorch(dev, rng):
    """Two pre-norm layers and a final LayerNorm, a padding mask passed to each layer."""
    layer = torch.nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True, norm_first=True,
                                             dtype=torch.float64)
    theirs = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(E, dtype=torch.float64),
                                         enable_nested_tensor=False)
    _random_weights(theirs, rng)
    ours = TransformerEncoder(TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, norm_first=True, dtype="float64"),
                              2, norm=xn.layers.LayerNorm(E, dtype="float64"))
    assert sorted(xn.torch_state_dict(ours)) == sorted(theirs.state_dict())
    xn.load_torch_state_dict(ours, theirs.state_dict())
    _compare(dev, ours, theirs, rng.standard_normal((N, L, E)), {"src_key_padding_mask": _padding(rng)})


def test_two_layers_given_one_activation_object_equal_pytorch(dev, rng):
    """PyTorch's layers may share one nn.GELU(): two xpnet layers given one GELU layer call it once each, and each
    backward gets its own call's cache back (the layers call their parts as the book does, by forward)."""
    gelu = torch.nn.GELU()
    theirs = torch.nn.Sequential(*[torch.nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, activation=gelu,
                                                                     batch_first=True, dtype=torch.float64)
                                   for _ in range(2)])
    _random_weights(theirs, rng)
    shared = GELU()
    ours = xn.Sequential(*[TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, activation=shared, dtype="float64")
                           for _ in range(2)])
    assert ours[0].activation is ours[1].activation
    xn.load_torch_state_dict(ours, theirs.state_dict())
    _compare(dev, ours, theirs, rng.standard_normal((N, L, E)), {})


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_two_layers_sharing_one_self_attention_equal_pytorch(dev, rng, norm_first):
    """PyTorch's l2.self_attn = l1.self_attn: the second layer's backward_self serves the second call and the first
    layer's the first, the attention's gradients the sum of both (backward_self gave the last call's twice)."""
    theirs = torch.nn.Sequential(*[torch.nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True,
                                                                     norm_first=norm_first, dtype=torch.float64)
                                   for _ in range(2)])
    _random_weights(theirs, rng)
    theirs[1].self_attn = theirs[0].self_attn
    ours = xn.Sequential(*[TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, norm_first=norm_first, dtype="float64")
                           for _ in range(2)])
    ours[1].self_attn = ours[0].self_attn
    xn.load_torch_state_dict(ours, theirs.state_dict())
    _compare(dev, ours, theirs, rng.standard_normal((N, L, E)), {})


def test_a_forgotten_gradient_is_caught(rng, monkeypatch):
    """The comparison has teeth: a backward that drops the key's and value's share of the self-attention's
    gradient (dq alone) fails it."""
    theirs = torch.nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True, dtype=torch.float64)
    _random_weights(theirs, rng)
    ours = TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    monkeypatch.setattr(TransformerEncoderLayer, "_attention_backward",
                        lambda self, dy: self.self_attn.backward(self.dropout1.backward(dy))[0])
    with pytest.raises(AssertionError, match="dsrc"):
        _compare(xn.device("cpu"), ours, theirs, rng.standard_normal((N, L, E)), {})


# Entries of each array the gradchecks with dropout take off NumPy: the checks' cost is a model's forward per entry,
# on array-api-strict (a Python wrapper around each op), PyTorch and JAX (eager dispatch) 5-40x NumPy's. What those
# cases add to NumPy's is the device's own arrays and random masks, and a mask that forward and backward disagree on
# shows in every entry it touches: planted (Dropout.backward ignoring its mask, or drawing a new one), it failed
# both tests on strict "device1", torch and JAX with these counts.
_ENTRIES_OFF_NUMPY = 4


def test_gradcheck_passes_with_dropout(dev):
    """float64 numerical gradients on the model's own device; dropout in the attention and both blocks. A seeded
    16 entries of each tensor on NumPy, 4 elsewhere (_ENTRIES_OFF_NUMPY): a dropout mask that forward and backward
    disagree on shows in any of them."""
    xn.init.seed(0)
    model = TransformerEncoder(TransformerEncoderLayer(6, 2, 12, dropout=0.2, activation="gelu"), 2).to(dev)
    x = xn.to_device(np.random.default_rng(0).standard_normal((2, 4, 6)).astype("float32"), dev)
    report = xn.gradcheck(model, x, max_entries=16 if dev.is_numpy else _ENTRIES_OFF_NUMPY)
    assert report.ok, str(report)
    assert report["layers.1.self_attn.W_in"].ok and report["layers.0.norm2.gamma"].ok and report["input"].ok


def test_trains_in_a_sequential_on_a_second_device():
    """Embedding, an encoder layer, Flatten and Linear learn which of 4 tokens comes first in its sequence, on
    array-api-strict's "device1" (arrays of two devices cannot mix there: nothing goes back to the host)."""
    strict = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, (512, 6))
    labels = ids[:, 0]
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Embedding(4, 16, init=1.0),
                          TransformerEncoderLayer(16, 2, 32, dropout=0.1, norm_first=True),
                          xn.layers.Flatten(), xn.layers.Linear(6 * 16, 4))
    device1 = xn.Device(strict, strict.Device("device1"))
    history = xn.train(model, (ids, labels), loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=8,
                       batch_size=64, device=device1, progress=False)
    assert history.epochs[-1]["train_accuracy"] > 0.95
    assert_placed(model.named_params()["1.linear1.W"], device1, "float32")


def test_encoder_copies_the_layer_as_pytorch_does():
    """Every copy starts with the layer's weights, and none is the layer given (training one changes no other)."""
    xn.init.seed(3)
    layer = TransformerEncoderLayer(E, HEADS, FF)
    encoder = TransformerEncoder(layer, 3)
    given = layer.named_params()
    for i in range(3):
        copied = encoder.layers[i].named_params()
        assert copied.keys() == given.keys()
        for name, value in given.items():
            assert copied[name] is not value
            np.testing.assert_array_equal(copied[name], value)
    encoder.set_param("layers.0.linear1.W", np.zeros((E, FF), np.float32))
    assert np.all(encoder.layers[1].linear1.params["W"] != 0) and np.all(layer.linear1.params["W"] != 0)


def test_pytorch_initialisation_from_xpnets_seed():
    """Linear weights and biases from U(+-1/sqrt(fan_in)) (kaiming_uniform_(a=sqrt(5)) and its bias), the
    attention's Xavier-uniform in-projection and zero biases, LayerNorm's ones and zeros; the same seed, the same
    draws."""
    xn.init.seed(5)
    a = TransformerEncoderLayer(64, 4, 256)
    xn.init.seed(5)
    b = TransformerEncoderLayer(64, 4, 256)
    for name, value in a.named_params().items():
        np.testing.assert_array_equal(value, b.named_params()[name], err_msg=name)
    for linear, fan_in in ((a.linear1, 64), (a.linear2, 256)):
        bound = 1.0 / math.sqrt(fan_in)
        for p in linear.params.values():
            assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound and abs(p.mean()) < 0.1 * bound
    assert np.abs(a.self_attn.params["W_in"]).max() <= math.sqrt(6.0 / (64 + 64))
    assert not np.any(a.self_attn.params["b_in"]) and np.all(a.norm1.params["gamma"] == 1)


def test_saved_and_loaded(tmp_path, rng):
    """A model file keeps the layer's arguments (an activation layer's too) and weights."""
    xn.init.seed(2)
    model = xn.Sequential(TransformerEncoder(
        TransformerEncoderLayer(E, HEADS, FF, dropout=0.3, activation=GELU(approximate="tanh"), norm_first=True,
                                batch_first=False, layer_norm_eps=1e-6), 2, norm=xn.layers.LayerNorm(E)))
    path = tmp_path / "encoder.xpnet"
    model.save(path)
    loaded = xn.load(path)
    x = rng.standard_normal((L, N, E)).astype(np.float32)
    np.testing.assert_array_equal(xn.to_numpy(loaded.predict(x)), xn.to_numpy(model.predict(x)))
    layer = loaded[0].layers[1]
    assert (layer.p, layer.batch_first, layer.norm_first, layer.layer_norm_eps) == (0.3, False, True, 1e-6)
    assert isinstance(layer.activation, GELU) and layer.activation.approximate == "tanh"
    for block in (layer, model[0].layers[0]):  # the activation layer given is one child, PyTorch's "activation"
        assert list(block.named_children()) == ["self_attn", "linear1", "dropout", "linear2", "norm1", "norm2",
                                                "dropout1", "dropout2", "activation"]


def test_eval_mode_drops_nothing(rng):
    """In evaluation the dropout layers pass everything: the output equals the same weights' with dropout=0."""
    xn.init.seed(4)
    noisy = TransformerEncoderLayer(E, HEADS, FF, dropout=0.5)
    plain = TransformerEncoderLayer(E, HEADS, FF, dropout=0.0)
    plain.load_state_dict(noisy.state_dict())
    x = rng.standard_normal((N, L, E)).astype(np.float32)
    np.testing.assert_array_equal(noisy.eval()(x), plain(x))
    assert not np.allclose(noisy.train()(x), plain(x))


@pytest.mark.parametrize("make,error,words", [
    (lambda: TransformerEncoderLayer(E, HEADS, activation=torch.nn.functional.relu), TypeError,
     "for PyTorch's F.relu / F.gelu pass 'relu' / 'gelu'"),
    (lambda: TransformerEncoderLayer(E, HEADS, activation="tanh"), ValueError,
     "activation must be 'relu', 'gelu' or an xpnet activation layer"),
    (lambda: TransformerEncoderLayer(E, 3), ValueError, "embed_dim (8) must be divisible by num_heads (3)"),
    (lambda: TransformerEncoderLayer(E, HEADS, dropout=1.0), ValueError,
     "TransformerEncoderLayer: dropout must be a float in [0, 1), got 1.0"),
    (lambda: TransformerEncoderLayer(E, HEADS, layer_norm_eps=0), ValueError,
     "TransformerEncoderLayer: layer_norm_eps must be a float > 0, got 0"),
    (lambda: TransformerEncoderLayer(E, HEADS, device="cuda"), ValueError,
     "TransformerEncoderLayer: device='cuda' is not supported"),
    (lambda: TransformerEncoder(xn.layers.Linear(E, E), 2), TypeError,
     "TransformerEncoder: expected an xn.layers.TransformerEncoderLayer to copy, got Linear"),
    (lambda: TransformerEncoder(TransformerEncoderLayer(E, HEADS), 0), ValueError, "num_layers"),
])
def test_bad_arguments_say_what_was_expected(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)


def test_a_wrong_input_shape_names_the_layout():
    layer = TransformerEncoderLayer(E, HEADS, FF)
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: expected src of shape \(N, L, E\) with E = "
                                         r"d_model = 8, got \(2, 5, 4\)"):
        layer(np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(L, N, E\) \(batch_first=False\)"):
        TransformerEncoderLayer(E, HEADS, FF, batch_first=False)(np.zeros((5, 8), np.float32))



def test_generate_square_subsequent_mask_is_pytorchs_and_masks_as_is_causal(dev, rng):
    """The Transformer tutorial's src_mask = nn.Transformer.generate_square_subsequent_mask(len(src)).to(device)."""
    theirs = torch.nn.Transformer.generate_square_subsequent_mask(L)
    ours = xn.layers.Transformer.generate_square_subsequent_mask(L)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32  # on the host, PyTorch's default dtype
    np.testing.assert_array_equal(ours, theirs.numpy())
    mask = xn.layers.Transformer.generate_square_subsequent_mask(L, device=dev, dtype="float64")
    assert_placed(mask, dev, "float64")
    layer = TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, dtype="float64").to(dev)
    x = xn.to_device(rng.standard_normal((N, L, E)), dev)
    np.testing.assert_allclose(xn.to_numpy(layer(x, mask)), xn.to_numpy(layer(x, is_causal=True)), **CLOSE)
    with pytest.raises(ValueError, match=r"Transformer.generate_square_subsequent_mask: sz must be an int >= 0"):
        xn.layers.Transformer.generate_square_subsequent_mask(2.5)


def test_a_time_first_input_with_its_masks_says_batch_first_false():
    """The Transformer tutorial's TransformerEncoderLayer(d_model, nhead, d_hid, dropout) ported as it is reads its
    (L, N, E) batches batch first; the masks made for (L, N, E) then fail, saying so."""
    layer = TransformerEncoderLayer(E, HEADS, FF)
    src = np.zeros((L, N, E), np.float32)
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(2, 2\) or \(10, 2, 2\), got \(5, 5\); the "
                                         r"query \(5, 2, 8\) is read batch first.*batch_first=False"):
        layer(src, xn.layers.Transformer.generate_square_subsequent_mask(L))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(5, 2\), got \(2, 5\); the query "
                                         r"\(5, 2, 8\) is read batch first.*batch_first=False"):
        layer(src, src_key_padding_mask=np.zeros((N, L), bool))

# ----------------------------------------------------------------------------------------
# The decoder and the whole encoder-decoder
# ----------------------------------------------------------------------------------------
T, S = 4, 6  # target and source lengths


def _compare_two_inputs(dev, ours, theirs, first, second, masks, names=("dsrc", "dtgt")):
    """As _compare, for a model of two inputs whose backward gives both gradients."""
    rng = np.random.default_rng(8)
    torch_masks = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in masks.items()}
    our_masks = {k: xn.to_device(v, dev) if isinstance(v, np.ndarray) else v for k, v in masks.items()}
    a, b = torch.tensor(first, requires_grad=True), torch.tensor(second, requires_grad=True)
    y_t = theirs(a, b, **torch_masks)
    dy = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(torch.from_numpy(dy))
    ours.to(dev)
    y = ours(xn.to_device(first, dev), xn.to_device(second, dev), **our_masks)
    assert_placed(y, dev, "float64")
    np.testing.assert_allclose(xn.to_numpy(y), y_t.detach().numpy(), **CLOSE, err_msg="output")
    grads_in = ours.backward(xn.to_device(dy, dev))
    for g, t, what in zip(grads_in, (a, b), names):
        assert_placed(g, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(g), t.grad.numpy(), **CLOSE, err_msg=what)
    grads = _grads_by_torch_name(ours)
    torch_grads = {name: p.grad.numpy() for name, p in theirs.named_parameters()}
    assert grads.keys() == torch_grads.keys()
    for name, g in torch_grads.items():
        np.testing.assert_allclose(grads[name], g, **CLOSE, err_msg=f"d{name}")


DECODER_CASES = [
    pytest.param({}, lambda rng: {}, id="post-norm"),
    pytest.param({"norm_first": True, "activation": "gelu"}, lambda rng: {}, id="pre-norm-gelu"),
    pytest.param({}, lambda rng: {"tgt_mask": _causal(T), "tgt_is_causal": True,
                                  "memory_key_padding_mask": _padding(rng)[:, :1].repeat(S, 1)}, id="causal-padding"),
    pytest.param({"norm_first": True, "bias": False}, lambda rng: {"memory_mask": rng.standard_normal((T, S))},
                 id="memory-mask-bias-False"),
]


@pytest.mark.parametrize("kwargs,masks", DECODER_CASES)
def test_decoder_layer_equals_pytorch(dev, rng, kwargs, masks):
    theirs = torch.nn.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True, dtype=torch.float64,
                                              **kwargs)
    _random_weights(theirs, rng)
    ours = xn.layers.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, dtype="float64", **kwargs)
    xn.load_torch_state_dict(ours, theirs.state_dict())
    given = masks(rng)
    if "memory_key_padding_mask" in given:  # every target position keeps its first memory position
        given["memory_key_padding_mask"][:, 0] = False
    _compare_two_inputs(dev, ours, theirs, rng.standard_normal((N, T, E)), rng.standard_normal((N, S, E)), given,
                        ("dtgt", "dmemory"))


def test_decoder_stack_time_first_equals_pytorch(dev, rng):
    """Two layers and a final LayerNorm in PyTorch's default (T, N, E) layout: dmemory sums both layers'."""
    layer = torch.nn.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, dtype=torch.float64)
    theirs = torch.nn.TransformerDecoder(layer, 2, norm=torch.nn.LayerNorm(E, dtype=torch.float64))
    _random_weights(theirs, rng)
    ours = xn.layers.TransformerDecoder(
        xn.layers.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, batch_first=False, dtype="float64"), 2,
        norm=xn.layers.LayerNorm(E, dtype="float64"))
    xn.load_torch_state_dict(ours, theirs.state_dict())
    _compare_two_inputs(dev, ours, theirs, rng.standard_normal((T, N, E)), rng.standard_normal((S, N, E)),
                        {"tgt_mask": _causal(T)}, ("dtgt", "dmemory"))


def test_transformer_equals_pytorch(dev, rng):
    """nn.Transformer (2 + 2 layers, their final LayerNorms): the output, dsrc, dtgt and every gradient."""
    theirs = torch.nn.Transformer(E, HEADS, 2, 2, FF, dropout=0.0, batch_first=True, dtype=torch.float64)
    _random_weights(theirs, rng)
    ours = xn.layers.Transformer(E, HEADS, 2, 2, FF, dropout=0.0, dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    masks = {"tgt_mask": _causal(T), "src_key_padding_mask": _padding(rng)[:, :1].repeat(S, 1)}
    masks["src_key_padding_mask"][:, :2] = False
    masks["memory_key_padding_mask"] = masks["src_key_padding_mask"].copy()
    _compare_two_inputs(dev, ours, theirs, rng.standard_normal((N, S, E)), rng.standard_normal((N, T, E)), masks)


def test_a_forgotten_memory_gradient_is_caught(rng, monkeypatch):
    """A decoder whose dmemory keeps the cross-attention's dkey alone (dvalue dropped) fails the comparison."""
    from xpnet.layers.transformer_decoder import TransformerDecoderLayer

    theirs = torch.nn.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True, dtype=torch.float64)
    _random_weights(theirs, rng)
    ours = TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())

    def dkey_only(self, dy):
        dq, dk, _ = self.multihead_attn.backward(self.dropout2.backward(dy))
        return dq, dk

    monkeypatch.setattr(TransformerDecoderLayer, "_cross_attention_backward", dkey_only)
    with pytest.raises(AssertionError, match="dmemory"):
        _compare_two_inputs(xn.device("cpu"), ours, theirs, rng.standard_normal((N, T, E)),
                            rng.standard_normal((N, S, E)), {}, ("dtgt", "dmemory"))


def test_transformer_initialisation_is_pytorchs_xavier():
    """PyTorch's _reset_parameters: every matrix from U(+-sqrt(6 / (fan_in + fan_out))), biases as the layers draw
    them; seeded."""
    xn.init.seed(6)
    model = xn.layers.Transformer(32, 4, 1, 1, 128)
    for name, value in model.named_params().items():
        if value.ndim > 1:
            bound = math.sqrt(6.0 / (value.shape[0] + value.shape[1]))
            assert bound * 0.9 < np.abs(value).max() <= bound, name
    assert not np.any(model.named_params()["decoder.layers.0.multihead_attn.b_in"])
    xn.init.seed(6)
    again = xn.layers.Transformer(32, 4, 1, 1, 128)
    for name, value in model.named_params().items():
        np.testing.assert_array_equal(value, again.named_params()[name], err_msg=name)


def test_transformer_gradcheck_passes_with_dropout(dev):
    if dev.xp.__name__.startswith("jax"):  # its ops are dispatched one by one: 65-97 s of the suite's 15 minutes
        pytest.skip("the whole Transformer's gradcheck is left out on JAX: there its every gradient equals "
                    "PyTorch's (test_transformer_equals_pytorch), and its encoder's gradcheck runs "
                    "(test_gradcheck_passes_with_dropout)")
    xn.init.seed(0)
    model = xn.layers.Transformer(6, 2, 1, 2, 8, dropout=0.2, norm_first=True).to(dev)
    rng = np.random.default_rng(0)
    src, tgt = (xn.to_device(rng.standard_normal(s).astype("float32"), dev) for s in ((2, 5, 6), (2, 3, 6)))
    # 6 of each of the 52 arrays on NumPy (half the time of 16), 2 elsewhere (_ENTRIES_OFF_NUMPY)
    report = xn.gradcheck(model, (src, tgt), max_entries=6 if dev.is_numpy else _ENTRIES_OFF_NUMPY // 2)
    assert report.ok, str(report)
    assert report["decoder.layers.1.multihead_attn.W_in"].ok and report["input[0]"].ok and report["input[1]"].ok


class Reverser(xn.Model):
    """A sequence-to-sequence model of one's own around xn.layers.Transformer: tokens one-hot with their position
    (the data carry both), projected to d_model; the decoder reads the answer so far under a causal mask."""

    def __init__(self, width, vocab, d_model=32):
        super().__init__()
        self.src_in, self.tgt_in = xn.layers.Linear(width, d_model), xn.layers.Linear(width, d_model)
        self.transformer = xn.layers.Transformer(d_model, 4, 1, 1, 64, dropout=0.0)
        self.out = xn.layers.Linear(d_model, vocab)

    def forward(self, src, tgt, train=True):
        h = self.transformer.forward(self.src_in.forward(src, train), self.tgt_in.forward(tgt, train),
                                     tgt_is_causal=True, train=train)
        return self.out.forward(h, train)

    def backward(self, dy):
        dsrc, dtgt = self.transformer.backward(self.out.backward(dy))
        return self.src_in.backward(dsrc), self.tgt_in.backward(dtgt)


def _one_hot_with_positions(ids, vocab):
    n, length = ids.shape
    tokens = np.eye(vocab, dtype=np.float32)[ids]
    positions = np.broadcast_to(np.eye(length, dtype=np.float32), (n, length, length))
    return np.concatenate([tokens, positions], axis=2)


SAMPLES, EPOCHS = 512, 8


def test_a_transformer_learns_to_reverse_on_a_second_device():
    """xn.train with two inputs (the source, the answer so far) on array-api-strict's "device1": the
    encoder-decoder learns to write its source backwards, every position right in nearly every answer."""
    strict = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(0)
    vocab, length, bos = 6, 5, 5
    ids = rng.integers(0, 5, (SAMPLES, length))
    answer = ids[:, ::-1]
    so_far = np.concatenate([np.full((SAMPLES, 1), bos), answer[:, :-1]], axis=1)
    src, tgt = _one_hot_with_positions(ids, vocab), _one_hot_with_positions(so_far, vocab)
    xn.init.seed(0)
    model = Reverser(vocab + length, vocab)
    device1 = xn.Device(strict, strict.Device("device1"))
    xn.train(model, ((src, tgt), answer), loss="cross_entropy", optimizer=xn.optim.Adam(3e-3), epochs=EPOCHS,
             batch_size=64, device=device1, progress=False)
    right = np.argmax(xn.to_numpy(model.predict(src, tgt)), axis=-1) == answer
    assert right.mean() > 0.97 and right.all(axis=1).mean() > 0.9, (right.mean(), right.all(axis=1).mean())
    assert_placed(model.named_params()["transformer.decoder.layers.0.linear1.W"], device1, "float32")


def test_transformer_saved_and_loaded(tmp_path, rng):
    xn.init.seed(2)
    model = Reverser(8, 4)
    path = tmp_path / "reverser.xpnet"
    model.save(path)
    loaded = xn.load(path)
    src, tgt = rng.standard_normal((3, 5, 8)).astype(np.float32), rng.standard_normal((3, 2, 8)).astype(np.float32)
    np.testing.assert_array_equal(xn.to_numpy(loaded.predict(src, tgt)), xn.to_numpy(model.predict(src, tgt)))
    assert loaded.transformer.config() == model.transformer.config()


@pytest.mark.parametrize("make,error,words", [
    (lambda: xn.layers.Transformer(E, HEADS, custom_encoder=xn.layers.Linear(E, E)), ValueError,
     "Transformer: custom_encoder and custom_decoder are not supported"),
    (lambda: xn.layers.TransformerDecoder(xn.layers.TransformerEncoderLayer(E, HEADS), 2), TypeError,
     "TransformerDecoder: expected an xn.layers.TransformerDecoderLayer to copy, got TransformerEncoderLayer"),
    (lambda: xn.layers.TransformerDecoderLayer(E, HEADS, activation=torch.nn.GELU()), TypeError,
     "for PyTorch's F.relu / F.gelu pass 'relu' / 'gelu'"),
])
def test_decoder_bad_arguments_say_what_was_expected(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)


def test_decoder_inputs_are_checked():
    layer = xn.layers.TransformerDecoderLayer(E, HEADS, FF)
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer: tgt and memory must hold the same number of "
                                         r"sequences, got \(2, 4, 8\) and \(3, 6, 8\)"):
        layer(np.zeros((2, 4, E), np.float32), np.zeros((3, 6, E), np.float32))
    with pytest.raises(ValueError, match=r"expected memory of shape \(N, L, E\) with E = d_model = 8, got \(2, 6\)"):
        layer(np.zeros((2, 4, E), np.float32), np.zeros((2, 6), np.float32))
