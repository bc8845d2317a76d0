"""Bad input to the newer public API (sequence layers, losses, sequence datasets) gives one clear error naming
the layer or function and the argument, never a traceback from inside NumPy or array_api_compat, and never a
flag string taken as True. The older layers' cases are in test_clear_errors.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import GRU, LSTM, RNN, Embedding, EmbeddingBag

f32 = np.float32


def zeros(*shape):
    return np.zeros(shape, f32)


# -- flags: a string or 0 was taken as True (KLDivLoss(log_target="False") read t as log-probabilities) ----------

@pytest.mark.parametrize("call, message", [
    (lambda v: xn.losses.KLDivLoss(reduction="batchmean", log_target=v), "KLDivLoss: log_target"),
    (lambda v: Embedding(10, 3, check_ids=v), "Embedding: check_ids"),
    (lambda v: EmbeddingBag(10, 3, check_ids=v), "EmbeddingBag: check_ids"),
])
@pytest.mark.parametrize("value", ["False", 0, None])
def test_flags_must_be_true_or_false(call, message, value):
    with pytest.raises(TypeError, match=f"{message} must be True or False, got {value!r}"):
        call(value)


def test_kl_div_log_target_false_reads_probabilities():
    """The flag check keeps the meaning of a real bool: log_target=False takes t as probabilities."""
    y, t = np.log(np.full((2, 4), 0.25, f32)), np.full((2, 4), 0.25, f32)
    assert float(xn.losses.KLDivLoss(reduction="batchmean", log_target=False).forward(y, t)) == pytest.approx(0.0)


# -- ids and states as Python lists or PyTorch's hx pair: namespace() failed with no word of the layer -------------

@pytest.mark.parametrize("layer", [Embedding(10, 3), EmbeddingBag(10, 3)], ids=lambda m: m.name)
@pytest.mark.parametrize("ids", [[[1, 2]], (1, 2)], ids=["list", "tuple"])
def test_ids_must_be_an_array(layer, ids):
    with pytest.raises(TypeError, match=f"{layer.name}: expected an integer array of ids, got a "
                                        f"{type(ids).__name__}; convert it with np.asarray"):
        layer.forward(ids)


@pytest.mark.parametrize("make, args, message", [
    (lambda: LSTM(3, 5), ((zeros(2, 5), zeros(2, 5)),),
     r"LSTM.set_state\(h, c\): h must be an array, got a tuple; PyTorch's hx pair \(h0, c0\) is set_state\(h0, c0\)"),
    (lambda: LSTM(3, 5, num_layers=2), ((zeros(2, 2, 5), zeros(2, 2, 5)),),
     r"LSTM.set_state\(h, c\): h must be an array, got a tuple; PyTorch's hx pair"),
    (lambda: LSTM(3, 5), (zeros(2, 5), [[0.0] * 5] * 2), r"LSTM.set_state\(h, c\): c must be an array, got a list"),
    (lambda: RNN(3, 5), ([[0.0] * 5] * 2,), r"RNN.set_state\(h\): h must be an array, got a list$"),
    (lambda: GRU(3, 5, num_layers=2), ([[[0.0] * 5] * 2] * 2,), r"GRU.set_state\(h\): h must be an array, got a list"),
])
def test_set_state_takes_arrays(make, args, message):
    with pytest.raises(TypeError, match=message):
        make().set_state(*args)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_set_state_with_arrays_still_starts_there(num_layers):
    """The check passes arrays through: the state set is the one the forward starts from."""
    xn.init.seed(0)
    layer, x = LSTM(3, 5, num_layers=num_layers), np.ones((2, 4, 3), f32)
    shape = (num_layers, 2, 5) if num_layers > 1 else (2, 5)
    zero = layer.forward(x, train=False)
    layer.set_state(np.ones(shape, f32), np.ones(shape, f32))
    assert not np.allclose(layer.forward(x, train=False), zero)


# -- sequence datasets: NumPy's SeedSequence and asarray errors, and an epoch of -1 read from the end ----------------

@pytest.mark.parametrize("call, message", [
    (lambda s: xn.datasets.addition(600, seed=s), "addition: seed"),
    (lambda s: xn.datasets.dates(600, seed=s), "dates: seed"),
    (lambda s: xn.datasets.addition_lines(5, seed=s), "addition_lines: seed"),
    (lambda s: xn.datasets.date_lines(5, seed=s), "date_lines: seed"),
    (lambda s: xn.datasets.addition(600, split_seed=s), "addition: split_seed"),
    (lambda s: xn.datasets.dates(600, split_seed=s), "dates: split_seed"),
    (lambda s: xn.datasets.seq2seq_from_lines(["1+1_2"], split_seed=s), "seq2seq_from_lines: split_seed"),
    (lambda e: list(xn.datasets.TokenStream(np.arange(50), 2, 3).epoch(e)), "TokenStream.epoch: epoch"),
])
@pytest.mark.parametrize("value", [-1, 1.5, "0"])
def test_seeds_and_epochs_must_be_whole_numbers_from_zero(call, message, value):
    with pytest.raises(ValueError, match=f"{message} must be an int >= 0.*got {value!r}"):
        call(value)


def test_token_stream_names_a_ragged_list():
    with pytest.raises(ValueError, match="TokenStream: ids must be a 1-D integer array or a flat list of ints, got a "
                                         "ragged list"):
        xn.datasets.TokenStream([[1, 2], [3]], 2, 3)


# -- backward: a dgrid of AffineGrid's size but another shape reshaped silently into wrong rows ----------------------

@pytest.mark.parametrize("dgrid_shape", [(2, 8, 4, 2), (2, 4, 4, 3)], ids=["H and W swapped", "wrong size"])
def test_affine_grid_backward_checks_the_shape(dgrid_shape):
    layer = xn.layers.AffineGrid()
    layer.forward(zeros(2, 2, 3), (2, 3, 4, 8))
    with pytest.raises(ValueError, match=r"AffineGrid: expected dy of shape \(2, 4, 8, 2\) \(the last forward's "
                                         r"output\), got " + str(dgrid_shape).replace("(", r"\(").replace(")", r"\)")):
        layer.backward(zeros(*dgrid_shape))


# -- losses given Python lists: namespace() failed with no word of the loss ------------------------------------------

LOSSES = [xn.losses.SoftmaxCrossEntropy(), xn.losses.NLLLoss(), xn.losses.SigmoidCrossEntropy(), xn.losses.BCELoss(),
          xn.losses.MeanSquaredError(), xn.losses.KLDivLoss(reduction="batchmean"), xn.losses.PoissonNLLLoss(),
          xn.losses.MultiLabelSoftMarginLoss(), xn.losses.HingeEmbeddingLoss()]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
@pytest.mark.parametrize("which", ["predictions", "targets"])
def test_losses_name_a_list(loss, which):
    y, t = np.full((1, 3), 0.5, f32), np.array([0]) if loss.name in ("SoftmaxCrossEntropy", "NLLLoss") else \
        np.zeros((1, 3), f32)
    y, t = (y.tolist(), t) if which == "predictions" else (y, t.tolist())
    with pytest.raises(TypeError, match=f"{loss.name}: {which} must be an array, got a list; convert it"):
        loss.forward(y, t)


# -- mixed devices: CuPy's and NumPy's arrays are both named ndarray, and the message said only "ndarray and ndarray" -

def test_mixed_inputs_are_told_apart_by_module_and_device():
    """A torch tensor (CPU) beside a NumPy array shows the same: the module and the device of each input."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    q, k = np.zeros((1, 2, 3, 4), f32), torch.zeros((1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"ScaledDotProductAttention: query, key and value must share namespace, "
                                         r"device and dtype, got float32 numpy.ndarray on cpu, torch.float32 "
                                         r"torch.Tensor on torch:cpu and float32 numpy.ndarray on cpu"):
        xn.layers.ScaledDotProductAttention().forward(q, k, q)
    with pytest.raises(ValueError, match=r"Attention: hs_enc and hs_dec must share namespace, device and dtype, got "
                                         r"float32 numpy.ndarray on cpu and torch.float32 torch.Tensor on torch:cpu"):
        xn.layers.Attention().forward(q[0], k[0])
    with pytest.raises(TypeError, match=r"ScaledDotProductAttention: attn_mask must be an array in the query's "
                                        r"namespace and device \(numpy.ndarray on cpu\), got torch.bool torch.Tensor "
                                        r"on torch:cpu"):
        xn.layers.ScaledDotProductAttention().forward(q, q, q, attn_mask=torch.zeros((3, 3), dtype=torch.bool))


# -- recurrent inputs PyTorch takes: an empty batch (reshapes failed inside NumPy), (h, None) as an LSTMCell's hx ------

@pytest.mark.parametrize("make, shape", [
    (lambda: LSTM(3, 5), (0, 4, 3)),
    (lambda: GRU(3, 5, batch_first=False), (4, 0, 3)),
    (lambda: RNN(3, 5, num_layers=2, bidirectional=True), (0, 4, 3)),
])
def test_recurrent_layers_name_an_empty_batch(make, shape):
    layer = make()
    with pytest.raises(ValueError, match=rf"{layer.name}: the input \({shape[0]}, {shape[1]}, 3\) holds no sequences "
                                         r"\(N = 0\); xpnet's recurrent layers need N >= 1"):
        layer.forward(np.zeros(shape, f32))


@pytest.mark.parametrize("hx, got", [((zeros(2, 5), None), "ndarray, NoneType"),
                                     ((None, zeros(2, 5)), "NoneType, ndarray")])
def test_lstm_cell_names_a_missing_half_of_hx(hx, got):
    with pytest.raises(TypeError, match=rf"LSTMCell.forward\(x, hx, train\): hx is a pair \(h, c\) of arrays of shape "
                                        rf"\(2, 5\) \(None: zeros\), got tuple \({got}\)"):
        xn.layers.LSTMCell(3, 5).forward(zeros(2, 3), hx)


# -- empty inputs that failed inside NumPy ("cannot reshape array of size 0", "zero-size array to reduction") --------

@pytest.mark.parametrize("call, message", [
    (lambda: xn.layers.GroupNorm(2, 4).forward(zeros(0, 4, 3)), r"GroupNorm: the input \(0, 4, 3\) holds no samples"),
    (lambda: xn.layers.InstanceNorm2d(2, track_running_stats=True).forward(zeros(0, 2, 3, 3)),
     r"InstanceNorm2d: the input \(0, 2, 3, 3\) holds no samples \(N = 0\)"),
    (lambda: xn.layers.ScaledDotProductAttention().forward(zeros(1, 2, 3, 4), zeros(1, 2, 0, 4), zeros(1, 2, 0, 4)),
     r"ScaledDotProductAttention: key \(1, 2, 0, 4\) holds no positions \(S = 0\) to attend to"),
    (lambda: xn.layers.MultiheadAttention(8, 2).forward(zeros(2, 3, 8), zeros(2, 0, 8), zeros(2, 0, 8)),
     r"MultiheadAttention: key \(2, 0, 8\) holds no positions \(S = 0\)"),
    (lambda: xn.layers.Attention().forward(zeros(2, 0, 5), zeros(2, 3, 5)),
     r"Attention: hs_enc \(2, 0, 5\) holds no positions \(S = 0\)"),
])
def test_empty_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_instance_norm_running_stats_untouched_by_an_empty_batch():
    """PyTorch's turn NaN there; xpnet refuses the batch before the update."""
    layer = xn.layers.InstanceNorm2d(2, track_running_stats=True)
    with pytest.raises(ValueError):
        layer.forward(zeros(0, 2, 3, 3))
    np.testing.assert_array_equal(xn.to_numpy(layer.buffers["running_mean"]), np.zeros(2, f32))


# -- LambdaLR/MultiplicativeLR: a factor that is no number failed in the product ("can't multiply sequence") --------

@pytest.mark.parametrize("kind, factor, at", [("LambdaLR", "x", 0), ("MultiplicativeLR", None, 1)])
def test_lr_lambda_must_return_a_number(kind, factor, at):
    optimizer = xn.optim.SGD(xn.Sequential(xn.layers.Linear(2, 2)), lr=0.1)
    with pytest.raises(TypeError, match=rf"{kind}: lr_lambda\({at}\) must return a number \(the factor\), got "
                                        rf"{factor!r}"):
        getattr(xn.optim.lr_scheduler, kind)(optimizer, lambda epoch: factor).step()


# -- text helpers: None failed as "'NoneType' object is not iterable"; a str as seq2seq lines read a char per line ---

@pytest.mark.parametrize("call, error, message", [
    (lambda: xn.datasets.char_ids(None), TypeError, "char_ids: text must be a str or an iterable of tokens"),
    (lambda: xn.datasets.vocabulary(None), TypeError, "vocabulary: tokens must be a str or an iterable of tokens"),
    (lambda: xn.datasets.seq2seq_from_lines("1+1_2  \n2+2_4  "), TypeError,
     r"seq2seq_from_lines: lines must be a list of str, one per line, got a str; split a file's text with "
     r"text.splitlines\(\)"),
    (lambda: xn.datasets.seq2seq_from_lines(["1+1_2", 3]), TypeError,
     "seq2seq_from_lines: lines must be a list of str, got 3 as line 2"),
])
def test_text_helpers_name_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("make", [xn.book.seq2seq, xn.book.peeky_seq2seq, xn.book.attention_seq2seq])
def test_seq2seq_names_questions_and_answers_of_other_batches(make):
    """The decoder's LSTM said "the state holds 2 sequences but the input has 3; call reset_state()"."""
    model = make(13, 4, 5)
    with pytest.raises(ValueError, match=r"Seq2seq: xs \(N, T_enc\) and ts \(N, T_dec\) must hold the same number N "
                                         r"of sequences, got \(2, 7\) and \(3, 5\)"):
        model.forward(np.zeros((2, 7), np.int64), np.zeros((3, 5), np.int64))


# -- SoftmaxCrossEntropy(ignore_index >= 0) with one-hot rows left nothing out, silently; PyTorch refuses it ---------

@pytest.mark.parametrize("ignore_index, refused", [(0, True), (2, True), (-1, False), (-100, False)])
def test_cross_entropy_ignore_index_with_probability_targets_as_pytorch(ignore_index, refused):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    y, t = np.arange(6, dtype=f32).reshape(2, 3) / 5, np.eye(3, dtype=f32)[[0, 2]]
    loss = xn.losses.SoftmaxCrossEntropy(ignore_index=ignore_index)
    try:
        expected = float(torch.nn.functional.cross_entropy(torch.tensor(y), torch.tensor(t), ignore_index=ignore_index))
    except RuntimeError:
        expected = None
    assert (expected is None) == refused
    if refused:
        with pytest.raises(ValueError, match=f"SoftmaxCrossEntropy: ignore_index={ignore_index} leaves out integer "
                                             "labels only, and the targets are probability"):
            loss.forward(y, t)
    else:
        assert float(loss.forward(y, t)) == pytest.approx(expected, rel=1e-6)
