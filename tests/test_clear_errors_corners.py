"""Bad input to the corners the earlier audits (test_clear_errors.py, test_clear_errors_seq.py) left: the 1-d layers'
messages in 1-d terms, init= typos, optimizer flags, a gradient of another dtype at a model's backward, files and
checkpoints, callbacks, train's keywords, datasets, lr schedulers and gradcheck's arguments. Each gives one clear
error naming the layer or function, the argument, what was expected and what came.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import (AvgPool1d, Conv1d, ConvTranspose1d, Linear, MaxPool1d, MaxUnpool1d, ReLU)

f32 = np.float32
x3 = np.zeros((2, 3, 4), f32)  # (N, C, L)


# -- the 1-d layers run the 2-d ones on (N, C, 1, L): their messages named the view's (1, k) pairs and 1xL sizes -----

@pytest.mark.parametrize("call, message", [
    (lambda: Conv1d(3, 4, 5).forward(x3), r"Conv1d: input \(2, 3, 4\) padded by 0 is of length 4, smaller than the "
                                          r"kernel of length 5"),
    (lambda: Conv1d(3, 4, 3, stride=2, padding="same"), r"Conv1d: padding='same' needs stride 1 and an odd "
                                                       r"kernel_size .*got stride=2, kernel_size=3, dilation=1"),
    (lambda: ConvTranspose1d(3, 4, 3, output_padding=1), r"ConvTranspose1d: output_padding must be smaller than "
                                                         r"stride or dilation .*got output_padding=1, stride=1"),
    (lambda: ConvTranspose1d(3, 4, 2, padding=3).forward(x3), r"ConvTranspose1d: an input of length 4 gives an output "
                                                              r"of length -1 \(\(L - 1\)\*stride.*with padding=3\)"),
    (lambda: MaxPool1d(2, dilation=5).forward(x3), r"MaxPool1d: input \(2, 3, 4\) padded by 0 is of length 4, smaller "
                                                   r"than the kernel of length 2 dilated by 5 \(length 6\)"),
    (lambda: MaxPool1d(5, stride=2, ceil_mode=True).forward(x3[:, :, :1]), r"MaxPool1d: input \(2, 3, 1\) padded by 0 "
                                                                           r"is of length 1, too small for a window of "
                                                                           r"length 5 every 2 positions"),
    (lambda: AvgPool1d(2, padding=2), r"AvgPool1d: padding must be at most half the window, got padding 2 for "
                                      r"kernel_size=2"),
    (lambda: Conv1d(3, 4, 3, padding=1, padding_mode="reflect").forward(x3[:, :, :1]),
     r"Conv1d: reflect padding \(1, 1\) on axis -1 must be smaller than the input's size there, 1 .*got input shape "
     r"\(2, 3, 1\)"),
    (lambda: MaxUnpool1d(2).forward(*MaxPool1d(2, return_indices=True).forward(x3), output_size=(9,)),
     r"MaxUnpool1d: output_size must be \(Lo,\) or \(N, C, Lo\), each within a stride 2 of the default 4 .*got \(9,\)"),
    (lambda: MaxUnpool1d(3).forward(*MaxPool1d(2, return_indices=True).forward(x3)),
     r"MaxUnpool1d: indices outside the window .*kernel_size=3, stride=3, padding=0 and output length 6"),
])
def test_1d_layers_speak_of_what_the_user_gave(call, message):
    """Conv1d(3, 4, 5) on L = 4 said 'input (2, 3, 1, 4) padded by (0, 0) is 1x4, smaller than the 1x5 kernel'."""
    with pytest.raises(ValueError) as caught:
        call()
    text = str(caught.value)
    assert re.search(message, text), text
    assert not re.search(r"(?<!reflect padding )\([01], \d+\)|\b1x\d|\(\d+, \d+, 1, \d+\)", text), text


# -- init= typos were refused as "init: expected 'he' ..." without the layer -------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: Linear(3, 4, init="he_normall"), r"^Linear: init must be one of 'he', 'relu', 'xavier', 'glorot', "
                                              r"'sigmoid', 'normal', .*got 'he_normall'; did you mean 'he'\?$"),
    (lambda: Linear(3, 4, init="xavir"), r"^Linear: init must be .*got 'xavir'; did you mean 'xavier'\?$"),
    (lambda: xn.layers.Conv2d(1, 2, 3, init="kaiming"), r"^Conv2d: init must be .*got 'kaiming'; did you mean 'he'"),
    (lambda: Conv1d(1, 2, 3, init="pytroch"), r"^Conv1d: init must be one of 'pytorch', 'he', .*mean 'pytorch'"),
    (lambda: ConvTranspose1d(1, 2, 3, init="zzz"), r"^ConvTranspose1d: init must be one of 'pytorch', .*got 'zzz'"
                                                   r" \(run as"),
    (lambda: Linear(3, 4, init=-1.0), r"^Linear: init as a standard deviation must be a finite number > 0, got -1"),
    (lambda: xn.layers.LSTM(2, 3, init="xaviar"), r"^LSTM: init must be one of .*got 'xaviar'; did you mean 'xavier'"),
    (lambda: xn.layers.GRU(2, 3, num_layers=2, init="hee"), r"^GRU: init must be .*got 'hee'; did you mean 'he'"),
    (lambda: xn.layers.RNNCell(2, 3, init=0.0), r"^RNNCell: init as a standard deviation must be .* > 0, got 0.0"),
    (lambda: xn.layers.LSTMCell(2, 3, init=lambda s, rng: rng.random((1,))),
     r"^LSTMCell: init, the callable, returned shape \(1,\), expected \(2, 12\)"),
    (lambda: xn.layers.Embedding(5, 2, init="nrmal"), r"^Embedding: init must be .*got 'nrmal'; did you mean 'normal'"),
    (lambda: xn.layers.EmbeddingBag(5, 2, init="zzz"), r"^EmbeddingBag: init must be .*got 'zzz'$"),
])
def test_an_init_typo_names_the_layer_and_what_it_takes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- optimizer flags: SGD(nesterov="yes") was a ValueError where every other flag is a TypeError ---------------------

@pytest.mark.parametrize("make, arg", [
    (lambda v: xn.optim.SGD(0.1, 0.9, nesterov=v), "SGD: nesterov"),
    (lambda v: xn.optim.Adam(amsgrad=v), "Adam: amsgrad"),
    (lambda v: xn.optim.AdamW(amsgrad=v), "AdamW: amsgrad"),
    (lambda v: xn.optim.RMSprop(centered=v), "RMSprop: centered"),
    (lambda v: xn.optim.NAdam(decoupled_weight_decay=v), "NAdam: decoupled_weight_decay"),
    (lambda v: xn.optim.RAdam(decoupled_weight_decay=v), "RAdam: decoupled_weight_decay"),
    (lambda v: xn.optim.Adamax(foreach=v), "Adamax: foreach"),
    (lambda v: xn.optim.Adadelta(foreach=v), "Adadelta: foreach"),
])
def test_optimizer_flags_refuse_a_non_bool_alike(make, arg):
    for value in ("yes", 1):
        with pytest.raises(TypeError, match=f"^{arg} must be True or False, got {value!r}$"):
            make(value)
    make(np.True_)  # NumPy's bool is a bool


# -- a float64 dy into a float32 Sequential made float64 gradients, refused only at opt.step ------------------------

def test_a_dy_of_another_dtype_is_refused_at_the_backward_it_enters():
    xn.init.seed(0)
    model, x = xn.Sequential(Linear(3, 5), ReLU(), Linear(5, 2)), np.ones((4, 3), f32)
    model(x)
    with pytest.raises(TypeError, match=r"^Sequential.backward: dy is float64, but the last forward's output, from "
                                        r"layer 2 \(Linear\), is float32: .*optimizer refuses; give dy in the output's "
                                        r"dtype"):
        model.backward(np.ones((4, 2)))
    assert model.named_grads() == {}  # refused before any layer ran
    model.backward(np.ones((4, 2), f32))
    assert {g.dtype for g in model.named_grads().values()} == {np.dtype(f32)}
    model.to("cpu", dtype="float64")
    model(x.astype(np.float64))
    model.backward(np.ones((4, 2)))  # a float64 model takes its float64 dy


# -- files, callbacks and train's names --------------------------------------------------------------------------------

def _mlp():
    xn.init.seed(0)
    return xn.Sequential(Linear(2, 8), ReLU(), Linear(8, 3))


X, T = xn.datasets.spiral(10, 3, seed=0)


def _fit(**kw):
    args = {"loss": "cross_entropy", "optimizer": "sgd", "epochs": 1, "batch_size": 10, "progress": False}
    return xn.train(_mlp(), (X, T), **{**args, **kw})


@pytest.mark.parametrize("call, error, message", [
    (lambda: _fit(loss="crossentropy"), ValueError, r"^loss: expected a Loss, or one of .*got 'crossentropy'; did you "
                                                    r"mean 'cross_entropy'\?$"),
    (lambda: _fit(optimizer="adamm"), ValueError, r"^optimizer: expected one of .*got 'adamm'; did you mean 'adam'\?$"),
    (lambda: xn.callbacks.EarlyStopping(monitor="val_los"), ValueError, r"^EarlyStopping: monitor must be one of .*got "
                                                                        r"'val_los'; did you mean 'val_loss'\?$"),
    (lambda: xn.callbacks.ModelCheckpoint("m.npz", mode="minn"), ValueError,
     r"^ModelCheckpoint: mode must be 'auto', 'min' or 'max', got 'minn'; did you mean 'min'\?$"),
    (lambda: _mlp().load_state_dict(_mlp().state_dict(), strict="no"), TypeError,
     r"^Sequential.load_state_dict: strict must be True or False, got 'no'$"),
    (lambda: _mlp().load_state_dict("model.npz"), TypeError, r"^Sequential.load_state_dict: expected a dict of arrays "
                                                             r"by name .*got str; xn.load\(path\) rebuilds the whole"),
])
def test_misspelt_names_and_flags(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_model_checkpoint_to_a_folder_is_named_before_training(tmp_path):
    """The message was save_target's, without the callback: 'cannot save to '...': it is a folder'."""
    with pytest.raises(xn.XpnetFileError, match=r"^ModelCheckpoint: cannot save to .*: it is a folder, not a regular "
                                                r"file; .*os.path.join\(path, 'model.npz'\)"):
        _fit(callbacks=[xn.callbacks.ModelCheckpoint(tmp_path)])


def test_a_save_into_a_missing_folder_names_the_folder(tmp_path):
    """'[Errno 2] No such file or directory: '.../no/m.npz'' named the file to write, not what was missing."""
    with pytest.raises(FileNotFoundError, match=r"its folder '.*/no' does not exist; make it first \(os.makedirs"):
        _mlp().save(tmp_path / "no" / "m.npz")
    assert not (tmp_path / "no").exists()


# -- lr schedulers: an empty ChainedScheduler blamed the optimizer; milestones named no index; SequentialLR's order

def _sgd():
    return xn.optim.SGD(xn.Sequential(Linear(2, 2)).parameters(), lr=0.1)


@pytest.mark.parametrize("call, message", [
    (lambda: xn.optim.lr_scheduler.ChainedScheduler([]), r"^ChainedScheduler: schedulers must be a non-empty list"),
    (lambda: xn.optim.lr_scheduler.ChainedScheduler([5]), r"^ChainedScheduler: schedulers\[0\] is a int; expected a "
                                                          r"scheduler"),
    (lambda: xn.optim.lr_scheduler.MultiStepLR(_sgd(), [10, -1]), r"^MultiStepLR: milestones\[1\] must be an int >= 0, "
                                                                  r"got -1$"),
    (lambda: (lambda o, S: S.SequentialLR(o, [S.ConstantLR(o), S.ConstantLR(o), S.ConstantLR(o)], milestones=[5, 3]))(
        _sgd(), xn.optim.lr_scheduler), r"^SequentialLR: milestones must be in increasing order .*got \[5, 3\]$"),
])
def test_scheduler_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_multistep_milestones_in_any_order_as_pytorch():
    """PyTorch's MultiStepLR counts its milestones (a Counter): any order, a repeated one decays twice; xpnet's too."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    param = torch.nn.Parameter(torch.zeros(1))
    theirs_opt = torch.optim.SGD([param], lr=1.0)
    theirs = torch.optim.lr_scheduler.MultiStepLR(theirs_opt, [5, 2, 2], gamma=0.5)
    ours_opt = xn.optim.SGD(xn.Sequential(Linear(2, 2)).parameters(), lr=1.0)
    ours = xn.optim.lr_scheduler.MultiStepLR(ours_opt, [5, 2, 2], gamma=0.5)
    for _ in range(7):
        assert ours_opt.lr == pytest.approx(theirs_opt.param_groups[0]["lr"])
        theirs_opt.step()
        theirs.step()
        ours.step()


# -- an optimizer's state of another model loaded silently; its first step then dropped it --------------------------

def test_optimizer_state_of_another_model_is_named_at_load():
    """PyTorch loads it too and fails at the step ('The size of tensor a (8) must match ...'); xpnet's step took
    state of another shape for a replaced layer's and started afresh, so the loaded momentum was lost silently."""
    def model(width):
        xn.init.seed(0)
        return xn.Sequential(Linear(2, width), ReLU(), Linear(width, 3))

    trained = model(8)
    opt = xn.optim.Adam(trained.parameters())
    trained(X)
    trained.backward(np.ones((30, 3), f32))
    opt.step()
    narrow = model(4)  # kept: the optimizer holds its model weakly
    other = xn.optim.Adam(narrow.parameters())
    with pytest.raises(ValueError, match=r"^Adam.load_state_dict: the state is of another model: '0.W' has state of "
                                         r"shape \(2, 8\) but the parameter is \(2, 4\); '0.b' .*'2.W' .*load it into"):
        other.load_state_dict(opt.state_dict())
    assert other.state == {}  # checked before anything changed
    same = model(8)
    xn.optim.Adam(same.parameters()).load_state_dict(opt.state_dict())  # its own model's: taken


def test_resume_from_a_checkpoint_of_another_model_names_the_first_difference(tmp_path):
    """'was written for another architecture; build the model as it was: [...]' left the user to diff the lists."""
    path = tmp_path / "ck.npz"
    _fit(callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)])
    xn.init.seed(0)
    narrow = xn.Sequential(Linear(2, 4), ReLU(), Linear(4, 3))
    with pytest.raises(ValueError, match=r"was written for another architecture \('0\.W': \(2, 8\) in the file, "
                                         r"\(2, 4\) in the model\); build the model as it was"):
        xn.train(narrow, (X, T), loss="cross_entropy", optimizer="sgd", epochs=2, batch_size=10, progress=False,
                 resume_from=path)


@pytest.mark.parametrize("head, message", [
    (b"\x80\x04\x95" + bytes(20), r"it is a Python pickle, not an .npz archive \(the book's params.pkl: "
                                  r"xn.load_book_params\(path, model\) reads it"),
    (b"\x89HDF\r\n\x1a\n" + bytes(20), r"it is an HDF5 file \(Keras' .h5\?\), not an .npz archive"),
])
def test_a_file_of_another_format_is_named(tmp_path, head, message):
    """Both said 'it is not a complete zip archive (File is not a zip file); truncated or not an .npz'."""
    path = tmp_path / "params.pkl"
    path.write_bytes(head)
    with pytest.raises(xn.XpnetFileError, match=message):
        xn.load(path)


@pytest.mark.parametrize("dtype, error", [("float64", ValueError), (np.float32, TypeError)])
def test_model_to_a_dtype_given_first_says_to_pass_it_by_keyword(dtype, error):
    """model.to("float64") said "device: expected 'cpu', 'cuda', ..., got 'float64'" (PyTorch's to takes a dtype
    first); the error keeps the device parser's type."""
    with pytest.raises(error, match=r"^Sequential.to: the first argument is the device, got the dtype .*; pass it by "
                                    r"keyword: model.to\(dtype='float(64|32)'\)"):
        _mlp().to(dtype)
