"""What a PyTorch user writes first: it works with PyTorch's meaning where that fits xpnet, or fails at
once with one line saying what to write instead (docs/from-pytorch.md)."""

import importlib
import inspect
import pickle
import re

import numpy as np
import pytest

import xpnet as xn
from xpnet import optim


def _mlp():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Linear(8, 3))


def _batches():
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5)) for _ in range(3)]


def _book_loop(model, opt):
    """The book's loop, each step given the model."""
    loss = xn.losses.SoftmaxCrossEntropy()
    for x, t in _batches():
        loss.forward(model.forward(x), t)
        model.backward(loss.backward())
        opt.step(model)
    return model.named_params()


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
@pytest.mark.parametrize("first", ["model", "parameters", "params="])
def test_an_optimizer_built_with_the_model_steps_without_arguments(name, first):
    cls = optim.OPTIMIZERS[name]
    model = _mlp()
    opt = {"model": lambda: cls(model, lr=0.05), "parameters": lambda: cls(model.parameters(), 0.05),
           "params=": lambda: cls(params=model.parameters(), lr=0.05)}[first]()
    criterion = xn.losses.SoftmaxCrossEntropy()
    for x, t in _batches():  # PyTorch's loop, written the xpnet way where autograd would be
        opt.zero_grad()
        loss = criterion(model(x), t)
        model.backward(criterion.backward())
        opt.step()
        assert isinstance(loss.item(), float)
    # built from parameters, PyTorch's defaults where they differ from the book's (AdaGrad's eps) come along
    same = {k: getattr(opt, k) for k in vars(cls).get("TORCH_DEFAULTS", {}) if k != "lr"}
    expected = _book_loop(_mlp(), cls(lr=0.05, **same))
    for key, value in model.named_params().items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    with pytest.raises(ValueError, match="bound to another model"):
        opt.step(_mlp())


def test_positional_arguments_after_the_model_keep_their_meaning():
    model = _mlp()
    opt = optim.Momentum(model.parameters(), 0.02, 0.5)
    assert (opt.lr, opt.momentum) == (0.02, 0.5)
    assert optim.Adam(model).lr == optim.Adam().lr


@pytest.mark.parametrize("first,what", [
    (lambda m: list(m.named_params().values()), "got a list"),
    (lambda m: (p for p in m.named_params().values()), "got a generator"),
    (lambda m: m.named_params(), "got a dict"),
])
def test_parameters_without_their_model_get_one_line_saying_what_to_pass(first, what):
    with pytest.raises(TypeError) as info:
        optim.SGD(first(_mlp()), lr=0.1)
    message = str(info.value)
    assert what in message and "SGD(model.parameters(), lr=0.01)" in message and "\n" not in message


def test_step_without_a_model_says_how_to_give_one():
    with pytest.raises(RuntimeError, match=r"Adam.step\(\): no model to update \(it was built without one\); pass"):
        optim.Adam(1e-3).step()
    opt = optim.SGD(_mlp(), lr=0.1)  # the model is gone at once: the optimizer holds it weakly
    with pytest.raises(RuntimeError, match="the model it was built with no longer exists"):
        opt.step()


def test_a_loss_called_like_pytorchs_gives_a_float_whose_backward_says_what_to_write():
    criterion = xn.losses.SoftmaxCrossEntropy()
    y, t = np.array([[2.0, 0.5, -1.0]], np.float32), np.array([0])
    loss = criterion(y, t)
    assert float(loss) == float(criterion.forward(y, t)) == loss.item()
    assert f"{loss:.3f}" == f"{float(loss):.3f}" and pickle.loads(pickle.dumps(loss)) == loss
    with pytest.raises(AttributeError) as info:
        loss.backward()
    assert "xpnet has no autograd" in str(info.value) and "model.backward(criterion.backward())" in str(info.value)
    assert "SoftmaxCrossEntropy" in str(info.value) and "\n" not in str(info.value)


def test_sums_and_scalings_of_loss_values_stay_loss_values():
    """DCGAN prints errD.item() of errD = errD_real + errD_fake; a VAE's loss = BCE + KLD (a number of its own)
    ends in loss.backward(): a plain float had no item() and said nothing about backward."""
    bce = xn.losses.BCELoss()
    y = np.array([0.2, 0.9])
    real, fake = bce(y, np.ones(2)), bce(y, np.zeros(2))
    kld = np.float64(0.25)
    errD = real + fake
    assert errD.item() == float(real) + float(fake)
    for value in (errD, real - fake, 2 * real, real * 2, real / 4, 1 - real, sum([real, fake]), -real, real + kld):
        assert isinstance(value, xn.losses.LossValue) and value.item() == float(value)
    assert type(real * np.ones(2)) is np.ndarray  # arrays stay arrays
    with pytest.raises(AttributeError) as info:
        (real + kld).backward()
    message = str(info.value)
    assert "xpnet has no autograd" in message and "each loss layer's backward()" in message
    assert "a VAE's KL term" in message and "\n" not in message
    with pytest.raises(AttributeError, match=r"model.backward\(criterion.backward\(\)\), criterion being the BCELoss"):
        real.backward()  # one loss keeps its one line


def test_a_loss_value_answers_a_0d_tensors_everyday_methods():
    """loss.tolist(), loss.clone(), loss.to('cpu'), loss.dim(), loss.numel() gave bare AttributeErrors; they are
    torch's 0-d tensor's (tolist() a Python float); loss.requires_grad and loss.grad say there is no graph."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    y, t = np.array([[0.2, 0.9], [0.4, 0.1]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    value = xn.losses.MeanSquaredError()(y, t)
    tensor = torch.nn.MSELoss()(torch.tensor(y), torch.tensor(t))
    assert type(value.tolist()) is type(tensor.tolist()) is float and value.tolist() == tensor.tolist()
    assert (value.dim(), value.numel()) == (tensor.dim(), tensor.numel()) == (0, 1)
    for same in (value.clone(), value.to("cpu")):
        assert type(same) is xn.losses.LossValue and same == value
    for name in ("requires_grad", "grad"):
        with pytest.raises(AttributeError, match=f"no attribute '{name}': xpnet records no graph: .* then "
                                                 r"model\.backward\(dy\)"):
            getattr(value, name)


@pytest.mark.parametrize("weight", [np.float32(0.5), np.float64(0.5), np.array(0.5, np.float32), np.array(0.5)],
                         ids=["float32", "float64", "0-d float32", "0-d float64"])
def test_a_loss_weighted_by_a_numpy_scalar_stays_a_loss_value(weight):
    """np.float32(0.5) * loss gave a NumPy float32: the LossValue and its backward() hint were dropped, silently,
    where a Python float keeps them; either side of * + - / now gives the LossValue of the plain numbers."""
    loss = xn.losses.BCELoss()(np.array([0.2, 0.9]), np.ones(2))
    w = float(weight)
    for value, expected in [(weight * loss, w * loss), (loss * weight, loss * w), (weight + loss, w + loss),
                            (loss + weight, loss + w), (weight - loss, w - loss), (loss - weight, loss - w),
                            (weight / loss, w / loss), (loss / weight, loss / w)]:
        assert type(value) is xn.losses.LossValue and value.item() == float(expected)
    with pytest.raises(AttributeError, match="each loss layer's backward"):
        (weight * loss).backward()
    assert np.isfinite(loss) and np.asarray(loss).shape == () and float(loss) == loss.item()

@pytest.mark.parametrize("expression,hint", [
    ("xn.nn", "layers are in xn.layers"),
    ("xn.layers.Sequential", "xn.Sequential(layer, layer, ...)"),
    ("xn.layers.BatchNorm2d", "xn.layers.BatchNorm(num_features)"),
    ("xn.layers.CrossEntropyLoss", "xn.losses.SoftmaxCrossEntropy()"),
    ("xn.losses.CrossEntropyLoss", "xn.losses.SoftmaxCrossEntropy() takes logits and int class labels"),
    ("xn.losses.MSELoss", "xn.losses.MeanSquaredError()"),
    ("xn.losses.BCEWithLogitsLoss", "xn.losses.SigmoidCrossEntropy() takes logits and targets in [0, 1]"),
    ("xn.losses.L1Loss", "xn.losses.MeanAbsoluteError()"),
    ("xn.layers.BCEWithLogitsLoss", "losses are in xn.losses: xn.losses.SigmoidCrossEntropy()"),
    ("xn.layers.L1Loss", "losses are in xn.losses: xn.losses.MeanAbsoluteError()"),
    ("xn.layers.HuberLoss", "losses are in xn.losses: xn.losses.HuberLoss()"),
    ("xn.layers.NLLLoss", "losses are in xn.losses: xn.losses.NLLLoss()"),
    ("xn.optim.lr_scheduler._LRScheduler", "PyTorch's old name of the base class: xn.optim.lr_scheduler.LRScheduler"),
    ("xn.optim.Adagrad", "xpnet's is xn.optim.AdaGrad(lr=0.01)"),
    ("xn.Module", "a model of your own subclasses xn.Model"),
    ("xn.autograd", "xn.gradcheck(model, x, t, loss='cross_entropy') is torch.autograd.gradcheck"),
    ("xn.functional", "xn.layers.ScaledDotProductAttention(dropout=dropout_p, scale=scale, enable_gqa=enable_gqa) for "
                      "F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=...) (its boolean attn_mask True: "
                      "attended, as F's)"),
    ("xn.optim.clip_grad_norm_", "xpnet's is xn.optim.clip_grad_norm(model, max_norm) (no trailing underscore"),
    ("xn.optim.clip_grad_value_", "xpnet's is xn.optim.clip_grad_value(model, clip_value) (no trailing underscore"),
    ("xn.Tensor", "xn.to_device(x, dev)"),
    ("xn.layers.FeatureAlphaDropout", "xpnet has xn.layers.AlphaDropout(p), value by value"),
    ("xn.losses.CTCLoss", "write a loss of your own (subclass xn.losses.Loss"),
    ("xn.losses.TripletMarginLoss", "xn.layers.PairwiseDistance() takes two inputs"),
    ("xn.losses.CosineEmbeddingLoss", "xn.losses.HingeEmbeddingLoss(margin=1 - margin) is the same loss"),
    ("xn.losses.MarginRankingLoss", "max(0, margin - t * d)"),
    ("xn.losses.GaussianNLLLoss", "0.5 * (log(var) + (y - t)**2 / var)"),
    ("xn.layers.PoissonNLLLoss", "losses are in xn.losses: xn.losses.PoissonNLLLoss()"),
    ("xn.layers.LazyConv1d", "xpnet has no lazy layers: xn.layers.Conv1d(in_channels, out_channels, kernel_size)"),
    ("xn.layers.LazyBatchNorm2d", "xpnet has no lazy layers: xn.layers.BatchNorm(num_features)"),
    ("xn.layers.DataParallel", "comm=xn.distributed.init()"),
    ("xn.layers.DistributedDataParallel", "comm=xn.distributed.init()"),
    ("xn.DataParallel", "comm=xn.distributed.init()"),
    ("xn.layers.utils", "is xn.optim.clip_grad_norm(model, max_norm)"),
    ("xn.utils", "is xn.optim.clip_grad_norm(model, max_norm)"),
    ("xn.clip_grad_norm_", "xpnet's is xn.optim.clip_grad_norm(model, max_norm)"),
    ("xn.datasets.FashionMNIST", "xn.datasets.load_fashion_mnist(): NumPy arrays, x float32 in [0, 1] as after "
                                 "ToTensor(), (N, 784), or (N, 1, 28, 28) with flatten=False"),
    ("xn.datasets.MNIST", "xn.datasets.load_mnist()"),
    ("xn.datasets.CIFAR10", "xpnet has no CIFAR-10 loader"),
    ("xn.datasets.ImageFolder", "x, y, classes = xn.datasets.load_image_folder(root, size=224, resize=256)"),
    ("xn.datasets.DataLoader", "loader = xn.datasets.BatchIterator(x, y, batch_size=64), then for xb, yb in "
                               "loader.epoch(epoch)"),
    ("xn.datasets.TensorDataset", "no dataset object: pass the arrays as they are, (x, y)"),
    ("xn.datasets.Dataset", "load every sample into two arrays"),
    ("xn.transforms", "transform=xn.datasets.RandomShiftFlip(max_shift=2)"),
    ("xn.layers.Lambda", "a layer needs its backward too (xpnet has no autograd)"),
    ("xn.layers.ModuleList", "assign a plain list of layers as an attribute of your xn.Model"),
    ("xn.layers.ModuleDict", "assign a plain dict of layers"),
    ("xn.layers.Parameter", "self.params['W'] = ..."),
    ("xn.Parameter", "self.params['W'] = ..."),
    ("xn.accelerator", "xn.cuda_available() is torch.accelerator.is_available(); xn.device('auto') is "
                       "current_accelerator()"),  # pytorch/examples' mnist, vae, dcgan, word_language_model
    ("xn.randn", "draw on the host, rng = numpy.random.default_rng(seed)"),
    ("xn.randn_like", "then xn.to_device(z, dev)"),
    ("xn.cat", "xp = xn.backend.namespace(x)"),
    ("xn.flatten", "xp.reshape(x, (n, -1)) for torch.flatten(x, 1)"),
    ("xn.max", "xp = xn.backend.namespace(x)"),  # _, predicted = torch.max(outputs, 1): CIFAR-10, transfer learning
    ("xn.sum", "xp = xn.backend.namespace(x)"),  # torch.sum(preds == labels.data); the VAE's KLD
    ("xn.triu", "xp = xn.backend.namespace(x)"),  # the Transformer tutorial's older mask
    ("xn.sigmoid", "torch.sigmoid(x) is xn.layers.Sigmoid()"),  # the VAE's decode
    ("xn.tanh", "xn.layers.Tanh()"),
    ("xn.randperm", "draw on the host, rng = numpy.random.default_rng(seed)"),
    # the quickstart's device = torch.accelerator.current_accelerator().type if ... else "cpu"
    ("xn.device('cpu').type", "xn.device('auto') is the device itself: model.to(dev), xn.to_device(x, dev)"),
    ("xn.datasets.BatchIterator(np.zeros((130, 2)), batch_size=64).dataset",
     "loader.n is the number of samples (len(loader.dataset))"),
])
def test_pytorch_names_that_xpnet_spells_otherwise_say_what_to_write(expression, hint):
    with pytest.raises(AttributeError) as info:
        eval(expression, {"xn": xn, "np": np})  # noqa: S307 - fixed expressions
    name = expression.rsplit(".", 1)[1]
    message = str(info.value)
    assert f"has no attribute {name!r}: " in message and hint in message and "\n" not in message


def test_dataloaders_keywords_on_a_batch_iterator_are_taken_at_their_defaults_or_say_why_not():
    """BatchIterator(x, y, batch_size=64, shuffle=True, num_workers=2, pin_memory=True) (DataLoader's call with the
    arrays) got Python's bare "unexpected keyword argument 'num_workers'"; xn.datasets.random_split too."""
    x, y = np.ones((10, 2)), np.arange(10)
    plain = xn.datasets.BatchIterator(x, y, batch_size=4, num_workers=0, pin_memory=False, collate_fn=None)
    assert len(plain) == 3
    for key, value, says in (("num_workers", 2, "no worker process loads them; leave num_workers out"),
                             ("pin_memory", True, r"move them there once, xn\.to_device\(x, dev\)"),
                             ("collate_fn", len, r"xn\.layers\.pad_sequence\(seqs, batch_first=True\)")):
        with pytest.raises(TypeError, match=f"^BatchIterator\\(\\) got an unexpected keyword argument '{key}': "
                                            f".*{says}"):
            xn.datasets.BatchIterator(x, y, batch_size=4, **{key: value})
    with pytest.raises(AttributeError, match=r"'random_split': no dataset object to split: split the arrays"):
        xn.datasets.random_split


def test_named_parameters_hint_warns_that_a_weight_or_bias_filter_matches_nothing():
    """for name, p in model.named_parameters(): if 'weight' in name: init(p) (the usual PyTorch init loop), rewritten
    as the hint said, over named_params().items(), matched no name ('0.W', '0.b') and initialised nothing, silently;
    the hint now says so and what to write, which runs."""
    model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Linear(8, 2))
    assert not [name for name in model.named_params() if "weight" in name or "bias" in name]
    with pytest.raises(AttributeError, match=r"named_params\(\)\.items\(\) gives PyTorch's pairs.* a filter such as "
                                             r"`if 'weight' in name` or `'bias' in name` matches none of them: pick "
                                             r"the layers by type"):
        model.named_parameters()
    for m in model.named_modules().values():
        if isinstance(m, xn.layers.Linear):
            xn.init.xavier_normal_(m.weight)
            xn.init.zeros_(m.bias)
    assert not model[2].params["b"].any() and model[2].params["W"].any()


def test_step_with_a_closure_runs_it_then_steps_as_pytorchs():
    """optimizer.step(closure) (PyTorch's, for any optimizer: the closure runs the forward and backward and returns
    the loss) was refused on every optimizer but LBFGS, as "expected the model to update, got function". Losses
    and weights after three SGD-with-momentum steps equal torch's in float64."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    twin = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    model = xn.Sequential(xn.layers.Linear(4, 5, dtype="float64"), xn.layers.Tanh(),
                          xn.layers.Linear(5, 3, dtype="float64"))
    xn.load_torch_state_dict(model, twin.state_dict())
    ours, theirs = optim.SGD(model.parameters(), lr=0.1, momentum=0.9), torch.optim.SGD(twin.parameters(), lr=0.1,
                                                                                          momentum=0.9)
    criterion, twin_criterion = xn.losses.SoftmaxCrossEntropy(), torch.nn.CrossEntropyLoss()

    def closure():
        ours.zero_grad()
        loss = criterion(model(x), t)
        model.backward(criterion.backward())
        return loss

    def twin_closure():
        theirs.zero_grad()
        loss = twin_criterion(twin(torch.tensor(x)), torch.tensor(t))
        loss.backward()
        return loss

    for _ in range(3):
        assert ours.step(closure) == pytest.approx(theirs.step(twin_closure).item(), rel=1e-12)
    for name, value in xn.torch_state_dict(model).items():
        np.testing.assert_allclose(value, twin.state_dict()[name].numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


def test_step_with_a_closure_and_no_model_to_update_is_refused_before_the_closure_runs():
    """An optimizer built without a model (the book's SGD(lr=0.1)): step(closure) ran the closure's forward and
    backward, then said there was no model to update (guess20's find)."""
    ran = []
    with pytest.raises(RuntimeError, match=r"SGD.step\(\): no model to update \(it was built without one\)"):
        optim.SGD(lr=0.1).step(lambda: ran.append(1) or 0.0)
    assert ran == []


def test_parameters_to_vector_is_answered_with_code_that_runs():
    """nn.utils.parameters_to_vector / vector_to_parameters: xn.utils's error named clip_grad_norm_ and the packing
    functions only. It now says what to write, and that code, run here, flattens and writes back in place."""
    with pytest.raises(AttributeError, match=r"nn\.utils\.parameters_to_vector\(model\.parameters\(\)\) is "
                                             r"xp\.concat\(\[xp\.reshape\(p, \(-1,\)\) for p in "
                                             r"model\.parameters\(\)\]\) .* p\[\.\.\.\] = xp\.reshape"):
        xn.utils
    model = _mlp()
    xp = xn.backend.namespace(next(iter(model.parameters())))
    vec = xp.concat([xp.reshape(p, (-1,)) for p in model.parameters()])
    assert vec.shape == (sum(p.size for p in model.parameters()),)
    i = 0
    for p in model.parameters():
        p[...] = xp.reshape(2 * vec[i:i + p.size], p.shape)
        i += p.size
    assert np.array_equal(xp.concat([xp.reshape(p, (-1,)) for p in model.parameters()]), 2 * vec)


def test_nn_names_written_on_xn_say_which_subpackage_holds_them():
    """import torch.nn as nn is import xpnet as xn (docs/from-pytorch.md's first row), so nn.Linear(...) becomes
    xn.Linear(...): a bare "module 'xpnet' has no attribute 'Linear'", as were xn.ModuleList and xn.MSELoss."""
    for name, where in (("Linear", "xn.layers.Linear"), ("Adam", "xn.optim.Adam"),
                        ("SoftmaxCrossEntropy", "xn.losses.SoftmaxCrossEntropy")):
        with pytest.raises(AttributeError, match=f"^module 'xpnet' has no attribute '{name}': it is {where}: layers "
                                                 "are in xn.layers, losses in xn.losses"):
            getattr(xn, name)
    with pytest.raises(AttributeError, match=r"'ModuleList': xpnet has no ModuleList: assign a plain list of layers"):
        xn.ModuleList
    with pytest.raises(AttributeError, match=r"'MSELoss': xpnet has no MSELoss: .*xn\.losses\.MeanSquaredError"):
        xn.MSELoss
    with pytest.raises(ImportError, match=r"cannot import name 'ReLU' from 'xpnet': it is xn\.layers\.ReLU"):
        from xpnet import ReLU  # noqa: F401
    assert not hasattr(xn, "Linear") and "layers are in xn.layers" not in str(_attribute_error(xn, "Frobnicate"))


def _attribute_error(owner, name):
    try:
        getattr(owner, name)
    except AttributeError as error:
        return error


@pytest.mark.parametrize("module, name, hint", [
    ("xpnet.layers", "FractionalMaxPool2d", "xn.layers.AdaptiveMaxPool2d(output_size) pools to a size"),
    ("xpnet.layers", "BatchNorm2d", "xn.layers.BatchNorm(num_features)"),
    ("xpnet.losses", "CrossEntropyLoss", "xn.losses.SoftmaxCrossEntropy() takes logits"),
    ("xpnet", "Tensor", "xn.to_device(x, dev)"),
    ("xpnet.optim", "Adagrad", "xn.optim.AdaGrad(lr=0.01)"),
    ("xpnet.datasets", "DataLoader", "xn.datasets.BatchIterator(x, y, batch_size=64)"),
])
def test_from_import_of_a_pytorch_name_keeps_the_hint(module, name, hint):
    """Python turns a module __getattr__'s AttributeError into its own "cannot import name" on
    `from m import name`, which lost the hint; hasattr stays False without raising."""
    with pytest.raises(ImportError, match=f"cannot import name '{name}' from '{module}': .*{re.escape(hint)}"):
        exec(f"from {module} import {name}", {})  # noqa: S102 - fixed statements
    with pytest.raises(ImportError, match=re.escape(hint)):
        exec(f"def f():\n    from {module} import (Linear, {name})\nf()", {}) if module == "xpnet.layers" \
            else exec(f"from {module} import {name} as alias", {})
    assert not hasattr(importlib.import_module(module), name)
    assert getattr(importlib.import_module(module), name, "default") == "default"


@pytest.mark.parametrize("expression, hint", [
    ("xn.layers.Affine", "xn.layers.Linear(in_features, out_features), W (in, out) as the book's"),
    ("xn.layers.Relu", "xn.layers.ReLU()"),
    ("xn.layers.Convolution", "xn.layers.Conv2d(C, FN, FH, stride, pad), the same W layout"),
    ("xn.layers.Pooling", "xn.layers.MaxPool2d(kernel_size, stride, padding)"),
    ("xn.layers.BatchNormalization", "xn.layers.BatchNorm(num_features, convention='book')"),
    ("xn.layers.SoftmaxWithLoss", "xn.losses.SoftmaxCrossEntropy()"),
    ("xn.losses.SoftmaxWithLoss", "xn.losses.SoftmaxCrossEntropy()"),
    ("xn.losses.TimeSoftmaxWithLoss", "ignore_index=-1 for the book's ignore_label"),
    ("xn.losses.SigmoidWithLoss", "the book's SigmoidWithLoss is xn.losses.SigmoidCrossEntropy()"),
    ("xn.layers.TimeLSTM", "xn.layers.LSTM(D, H, stateful=...)"),
    ("xn.layers.TimeGRU", "convention='book'"),
    ("xn.layers.TimeAttention", "xn.layers.Attention()"),
    ("xn.layers.Convolution2D", "xn.layers.Conv2d(in_channels, out_channels, kernel_size, stride, padding)"),
    ("xn.optim.MomentumSGD", "xn.optim.Momentum(lr, momentum)"),
    ("xn.Sequential(xn.layers.ReLU()).to_gpu", "model.to('cuda')"),
])
def test_the_books_and_chainers_names_say_what_to_write(expression, hint):
    """A reader of the book (its class names) or a Chainer user gets the xpnet name, as a PyTorch user does."""
    test_pytorch_names_that_xpnet_spells_otherwise_say_what_to_write(expression, hint)


def _hint_tables():
    from xpnet.datasets import ptb
    from xpnet.layers import container
    from xpnet.optim import base
    from xpnet.training import evaluation, history, loop

    from xpnet import _chainer

    chainer = {name: table for name, table in vars(_chainer).items() if name.isupper() and isinstance(table, dict)}
    return {**{f"Chainer's {name}": table for name, table in chainer.items()},
            "xn": {**xn._PYTORCH_NAMES, **xn._BOOK_NAMES},
            "xn.layers": {**xn.layers._PYTORCH_NAMES, **xn.layers._OTHER_NAMES},
            "xn.losses": xn.losses._PYTORCH_NAMES, "xn.optim": optim._PYTORCH_NAMES,
            "an optimizer": base._PYTORCH_NAMES,
            "a model": container._PYTORCH_NAMES, "xn.train's keywords": loop._TRAIN_KEYWORDS,
            "xn.evaluate's keywords": evaluation._EVALUATE_KEYWORDS, "xn.book": xn.book._BOOK_NAMES,
            "xn.datasets": {**xn.datasets._BOOK_NAMES, **xn.datasets._PYTORCH_NAMES},
            "xn.datasets.ptb": ptb._BOOK_NAMES, "History": history._KERAS_NAMES,
            "a device": xn.backend.devices._PYTORCH_NAMES, "xn.init": xn.init._PYTORCH_NAMES}


def test_every_xpnet_name_a_hint_gives_exists():
    """A hint that sent users to a name xpnet does not have would be worse than none."""
    missing = []
    for table, hints in _hint_tables().items():
        for name, hint in hints.items():
            for dotted in re.findall(r"\bxn((?:\.[A-Za-z_]\w*)+)", hint):
                obj = xn
                for part in dotted.strip(".").split("."):
                    if not hasattr(obj, part):
                        missing.append(f"{table}.{name}: xn{dotted}")
                        break
                    obj = getattr(obj, part)
    assert not missing, missing


def test_every_module_of_torch_nn_is_in_xpnet_or_says_what_to_write():
    """A PyTorch user's nn.X as xn.layers.X (losses as xn.losses.X): the class, or an AttributeError saying what to
    write instead (a 3-d layer, SyncBatchNorm, Softmax2d, RReLU... gave Python's bare message)."""
    nn = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')").nn
    bare = []
    for name in dir(nn):
        if not (inspect.isclass(getattr(nn, name)) and issubclass(getattr(nn, name), nn.Module)):
            continue
        owners = (xn.losses, xn.layers) if name.endswith("Loss") else (xn.layers,)
        for owner in owners:
            try:
                getattr(owner, name)
                break
            except AttributeError as e:
                if str(e).endswith(f"has no attribute {name!r}"):
                    bare.append(f"{owner.__name__}.{name}")
    assert not bare, bare


def test_every_function_of_torch_nn_init_is_in_xn_init_or_says_what_to_write():
    """torch.nn.init's older names without the underscore (nn.init.xavier_uniform(m.weight), old code's) and its
    fan helper gave Python's bare AttributeError."""
    init = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')").nn.init
    bare = []
    for name in dir(init):
        if not inspect.isfunction(getattr(init, name)) or getattr(init, name).__module__ != init.__name__:
            continue
        if name.startswith("_") and name != "_calculate_fan_in_and_fan_out":
            continue
        try:
            getattr(xn.init, name)
        except AttributeError as e:
            if str(e).endswith(f"has no attribute {name!r}"):
                bare.append(name)
    assert not bare, bare
    with pytest.raises(AttributeError, match=r"'xavier_uniform': .* xn.init.xavier_uniform_\(m.weight, ...\) fills"):
        xn.init.xavier_uniform(np.zeros((3, 4)))


@pytest.mark.parametrize("call, write", [
    (lambda w: xn.init.uniform(w, -0.1, 0.1), "xn.init.uniform_(w, a, b)"),  # torch's uniform(w, a, b)
    (lambda w: xn.init.uniform(w, 0.1), "xn.init.uniform_(w, a, b)"),
    (lambda w: xn.init.zeros(w), "xn.init.zeros_(w)"),
    (lambda w: xn.init.ones(w), "xn.init.ones_(w)"),
])
def test_xn_inits_array_makers_given_an_array_say_which_function_fills_it(call, write):
    """xn.init.uniform(shape, bound) draws a new array: given torch.nn.init.uniform(w, a, b)'s weight it failed
    with "dtype must be a real floating type, got 0.1" (or NumPy's "only integer scalar arrays ...")."""
    w = np.zeros((3, 4))
    with pytest.raises(TypeError, match=r"makes a new host array of that shape .* got an array of shape \(3, 4\): "
                                        f"to fill it in place, .* write {re.escape(write)}$"):
        call(w)
    assert not w.any()
    assert xn.init.uniform((3, 4), 0.1).shape == (3, 4) and xn.init.zeros(3).shape == (3,)


def test_xn_init_uniform_without_bounds_says_what_to_write():
    """torch.nn.init.uniform(w) (U(0, 1) by default) without bounds got Python's bare "missing 1 required
    positional argument: 'bound'"; a shape without a bound, too."""
    w = np.zeros((3, 4))
    with pytest.raises(TypeError, match=r"got an array of shape \(3, 4\): .* write xn\.init\.uniform_\(w, a, b\)$"):
        xn.init.uniform(w)
    with pytest.raises(TypeError, match=r"^xn\.init\.uniform\(shape, bound\) draws from U\(-bound, bound\): give the "
                                        r"bound, xn\.init\.uniform\(\(3, 4\), 0\.1\); .* is xn\.init\.uniform_\(w\)"):
        xn.init.uniform((3, 4))


def test_other_missing_names_raise_pythons_plain_attribute_error():
    for owner, name in ((xn, "no_such_name"), (xn.layers, "Linear2"), (xn.losses, "x"), (xn.optim, "Lion")):
        with pytest.raises(AttributeError, match=f"has no attribute '{name}'$"):
            getattr(owner, name)
    assert hasattr(xn.optim.SGD(0.1), "param_groups") and hasattr(xn.optim.SGD(0.1), "zero_grad")


def test_import_xpnet_nn_says_where_its_names_live():
    with pytest.raises(ImportError, match=r"xpnet has no nn module: layers are in xpnet.layers .*docs/from-pytorch.md"):
        importlib.import_module("xpnet.nn")


def test_import_xpnet_functional_says_every_operation_is_a_layer():
    """import torch.nn.functional as F (the CIFAR-10, Transformer and VAE tutorials) ported as xpnet.functional."""
    with pytest.raises(ImportError, match=r"xpnet has no functional module: every operation is a layer object, .*"
                                          r"F.relu\(x\) is xn.layers.ReLU\(\).*docs/from-pytorch.md"):
        importlib.import_module("xpnet.functional")


def test_import_from_lr_scheduler_gives_pytorchs_schedulers():
    """``from xpnet.optim.lr_scheduler import StepLR`` used to fail with a hint; the module now holds them."""
    namespace = {}
    exec("from xpnet.optim.lr_scheduler import StepLR, OneCycleLR, ReduceLROnPlateau", namespace)  # noqa: S102
    assert namespace["StepLR"] is xn.optim.lr_scheduler.StepLR


def test_sgd_takes_pytorchs_positional_order_after_the_parameters():
    """torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov), its weight decay PyTorch's, on
    every parameter (built from model.parameters())."""
    model = _mlp()
    opt = optim.SGD(model.parameters(), 0.1, 0.9, 0.0, 5e-4, True)
    assert (opt.lr, opt.momentum, opt.dampening, opt.weight_decay, opt.nesterov) == (0.1, 0.9, 0.0, 5e-4, True)
    assert opt.weight_decay_on == "all"
    expected = _book_loop(_mlp(), optim.SGD(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True,
                                            weight_decay_on="all"))
    for key, value in _book_loop(model, opt).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_no_grad_runs_what_it_wraps_unchanged():
    model, (x, t) = _mlp(), _batches()[0]
    expected = model.forward(x, train=False)
    with xn.no_grad():
        np.testing.assert_array_equal(model.forward(x, train=False), expected)

    @xn.no_grad
    def bare(a):
        return model.predict(a)

    @xn.no_grad()
    def called(a):
        raise KeyError(a.shape)

    np.testing.assert_array_equal(bare(x), expected)
    with pytest.raises(KeyError):
        called(x)
    with pytest.raises(ValueError, match="inside"), xn.no_grad():
        raise ValueError("inside")



def test_set_grad_enabled_runs_what_it_wraps_unchanged_and_takes_a_bool():
    """The transfer-learning tutorial's loop: with torch.set_grad_enabled(phase == 'train'): outputs = model(x)."""
    model, (x, t) = _mlp(), _batches()[0]
    expected = model.forward(x, train=False)
    for phase in ("train", "val"):
        with xn.set_grad_enabled(phase == "train"), xn.enable_grad():
            np.testing.assert_array_equal(model.forward(x, train=False), expected)
    with pytest.raises(TypeError, match=r"^set_grad_enabled: mode must be True or False \(as PyTorch's\), "
                                        r"got 'train'$"):
        xn.set_grad_enabled("train")


def test_is_grad_enabled_reads_the_mode_as_pytorchs():
    """torch.is_grad_enabled() in a loop ported as it is (a helper that asserts it runs under no_grad): xpnet had
    no such name, a bare AttributeError; it reads the mode every context and call sets, as PyTorch's."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    seen = [(xn.is_grad_enabled(), torch.is_grad_enabled())]
    with xn.no_grad(), torch.no_grad():
        seen.append((xn.is_grad_enabled(), torch.is_grad_enabled()))
        with xn.enable_grad(), torch.enable_grad():
            seen.append((xn.is_grad_enabled(), torch.is_grad_enabled()))
    try:
        xn.set_grad_enabled(False), torch.set_grad_enabled(False)
        seen.append((xn.is_grad_enabled(), torch.is_grad_enabled()))
    finally:
        xn.set_grad_enabled(True), torch.set_grad_enabled(True)
    seen.append((xn.is_grad_enabled(), torch.is_grad_enabled()))
    assert [ours for ours, _ in seen] == [theirs for _, theirs in seen] == [True, False, True, False, True]


def test_set_grad_enabled_called_alone_switches_gradients_off_until_switched_on_as_pytorchs():
    """torch.set_grad_enabled(False) as a call (not a context) turns gradients off from then on, and a backward
    through what ran then fails; xpnet's call changed nothing, so a backward served a forward PyTorch refuses."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model, (x, t) = _mlp(), _batches()[0]
    try:
        xn.set_grad_enabled(False), torch.set_grad_enabled(False)
        y = model(x)
        with pytest.raises(RuntimeError, match=r"Sequential.backward: the model's last forward ran under "
                                               r"xn.no_grad\(\).*until xn.set_grad_enabled\(True\)"):
            model.backward(np.ones_like(y))
        assert not torch.tensor(1.0, requires_grad=True).mul(2).requires_grad      # PyTorch's: off from then on
        with xn.set_grad_enabled(True), torch.set_grad_enabled(True):
            model.backward(model(x) * 0 + 1)                                        # on within the context...
        with pytest.raises(RuntimeError, match=r"last forward ran under xn.no_grad"):  # ...and off after it
            model.backward(model(x) * 0 + 1)
    finally:
        xn.set_grad_enabled(True), torch.set_grad_enabled(True)
    model.backward(model(x) * 0 + 1)

    @xn.set_grad_enabled(False)
    def look(inputs):
        return model(inputs)

    look(x)                                  # a decorator: the mode back as it was, off within each call only
    with pytest.raises(RuntimeError, match=r"last forward ran under xn.no_grad"):
        model.backward(np.ones_like(y))
    model.backward(model(x) * 0 + 1)


def test_manual_seed_is_pytorchs_name_for_the_weight_seed():
    def weights_and_mask(seed_with, s):
        seed_with(s)
        model = xn.Sequential(xn.layers.Linear(4, 6), xn.layers.Dropout(0.5))
        return model.forward(np.ones((3, 4), np.float32))

    np.testing.assert_array_equal(weights_and_mask(xn.manual_seed, 3), weights_and_mask(xn.init.seed, 3))
    assert not np.array_equal(weights_and_mask(xn.manual_seed, 3), weights_and_mask(xn.manual_seed, 4))


def test_help_on_forward_says_how_to_evaluate():
    """model(x) is training mode; help(xn.Sequential.forward) is where a PyTorch user looks for eval()."""
    doc = xn.Sequential.forward.__doc__
    assert "model.predict(x)" in doc and "model.forward(x, train=False)" in doc and "training mode" in doc


def test_the_porting_pages_loop_ends_where_xn_train_does():
    """docs/from-pytorch.md: the PyTorch-style loop over BatchIterator, epochs from 1, and xn.train agree."""
    x, t = xn.datasets.spiral(40, 3, seed=0)

    def net():
        xn.manual_seed(0)
        return xn.Sequential(xn.layers.Linear(2, 16), xn.layers.ReLU(), xn.layers.Linear(16, 3))

    model, criterion = net(), xn.losses.SoftmaxCrossEntropy()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = xn.datasets.BatchIterator(x, t, batch_size=32, seed=0)
    for epoch in range(1, 3):
        for xb, tb in loader.epoch(epoch):
            optimizer.zero_grad()
            criterion(model(xb), tb)
            model.backward(criterion.backward())
            optimizer.step()
    trained = net()
    xn.train(trained, (x, t), loss=criterion, optimizer=optim.SGD(lr=0.1, momentum=0.9), epochs=2, batch_size=32,
             device="cpu", progress=False)
    for key, value in trained.named_params().items():
        np.testing.assert_allclose(model.named_params()[key], value, rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("name,hint", [("cuda", "model.to('cuda')"), ("cpu", "model.to('cpu')"),
                                       ("named_parameters", "model.named_params()"),
                                       ("modules", "model.named_modules()"), ("children", "model.named_children()"),
                                       ("double", "model.to(dtype='float64')"), ("float", "model.to(dtype='float32')"),
                                       ("half", "model.to(dtype='float16')")])
def test_a_models_pytorch_methods_say_what_to_call_instead(name, hint):
    for model in (_mlp(), xn.layers.Residual(xn.Sequential(xn.layers.Linear(4, 4)))):
        with pytest.raises(AttributeError, match=f"object has no attribute '{name}': .*" + re.escape(hint)):
            getattr(model, name)
    assert not hasattr(_mlp(), "no_such_thing")  # hasattr still answers False, with no hint


def test_buffers_called_as_pytorchs_method_says_what_to_write():
    """PyTorch's model.buffers() met xpnet's attribute of that name, a layer's own dict: "'dict' object is not
    callable". The dict stays a dict (saved, copied and moved as before)."""
    model = xn.Sequential(xn.layers.Linear(4, 3), xn.layers.BatchNorm(3))
    for node in (model, model[1]):
        with pytest.raises(TypeError, match=r"^layer.buffers is the dict of this layer's own buffers .* "
                                            r"model.named_buffers\(\).values\(\) is PyTorch's model.buffers\(\)$"):
            node.buffers()
    assert isinstance(model[1].buffers, dict) and list(model[1].buffers) == ["running_mean", "running_var"]
    assert list(pickle.loads(pickle.dumps(model)).named_buffers()) == ["1.running_mean", "1.running_var"]


def test_apply_calls_a_function_on_every_layer_children_first_as_pytorchs():
    """model.apply(init_weights), PyTorch's way to initialise a model of one's own, was an AttributeError."""
    inner = xn.Sequential(xn.layers.Linear(3, 2))
    model = xn.Sequential(xn.layers.Linear(4, 3), xn.layers.ReLU(), inner)
    seen = []

    def init(m):
        seen.append(m)
        if isinstance(m, xn.layers.Linear):
            m.params["W"] = np.full(m.params["W"].shape, 0.5, np.float32)

    assert model.apply(init) is model
    assert len(seen) == 5 and seen[-1] is model and seen.index(inner[0]) < seen.index(inner)
    np.testing.assert_array_equal(model.predict(np.ones((1, 4), np.float32)), [[3.0, 3.0]])
    assert xn.layers.ReLU().apply(seen.append) is not None
    with pytest.raises(TypeError, match="Sequential.apply: fn must be a function of a layer, got str"):
        model.apply("xavier")


def test_an_init_function_using_tensor_data_methods_says_what_xn_init_writes_instead():
    """DCGAN's and the siamese network's weights_init, ``m.weight.data.normal_(0.0, 0.02)`` and
    ``m.bias.data.fill_(0.01)``, failed as "'memoryview' object has no attribute 'fill_'" (NumPy's .data)."""
    model = xn.Sequential(xn.layers.Linear(4, 3), xn.layers.ReLU())

    def weights_init(m):
        if isinstance(m, xn.layers.Linear):
            m.bias.data.fill_(0.01)

    with pytest.raises(AttributeError, match=r"^'memoryview' object has no attribute 'fill_': xpnet's m.weight and "
                                             r"m.bias are the arrays themselves.*xn.init.constant_\(m.bias, v\)"):
        model.apply(weights_init)
    with pytest.raises(AttributeError, match=r"^'Sequential' object has no attribute 'fill_'$"):
        model.apply(lambda m: model.fill_)  # a missing name of the model itself keeps its own message


def test_a_sequential_grows_by_append_and_extend_as_pytorchs():
    """model.append(layer) (PyTorch's Sequential.append, which returns the model) was an AttributeError."""
    model = _mlp()
    extra = xn.layers.Linear(2, 2)
    assert model.append(xn.layers.ReLU()) is model and model.extend([extra]) is model
    assert len(model) == 5 and model[-1] is extra and "4.W" in model.named_params()
    with pytest.raises(TypeError, match="Sequential.append: expected an xpnet layer, got a function"):
        model.append(lambda x: x)
    with pytest.raises(TypeError, match="Sequential.extend: item 1 is an int, not an xpnet layer"):
        model.extend([xn.layers.ReLU(), 3])
    assert len(model) == 5


def test_a_sequential_of_pytorchs_named_layers_or_torch_modules_says_what_to_write():
    """xn.Sequential({'fc1': ...}) (a dict, which PyTorch's nn.Sequential refuses too: named layers come in an
    OrderedDict, tests/test_sequential_names.py) failed with "item 0 is a dict, not an xpnet layer", and a
    torch.nn.ReLU() with "item 0 is a ReLU, not an xpnet layer", which reads as xpnet's ReLU."""
    named = {"fc1": xn.layers.Linear(4, 8), "relu": xn.layers.ReLU()}
    with pytest.raises(TypeError, match=r"^Sequential: item 0 is a dict, not an xpnet layer; named layers come in "
                                        r"an OrderedDict, .* xn.Sequential\(OrderedDict\(layers\)\), or "
                                        r"xn.Sequential\(\*layers.values\(\)\)"):
        xn.Sequential(named)
    assert list(xn.Sequential(*named.values()).named_params()) == ["0.W", "0.b"]
    with pytest.raises(TypeError, match=r"^Sequential: item 0 is the class ReLU, not an xpnet layer: call it, "
                                        r"ReLU\(\.\.\.\)$"):
        xn.Sequential(xn.layers.ReLU)
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    with pytest.raises(TypeError, match=r"^Sequential: item 1 is torch.nn.modules.activation.ReLU, not an xpnet "
                                        r"layer: a PyTorch module; build the model from xpnet's layers "
                                        r"\(xn.layers.ReLU\)$"):
        xn.Sequential(xn.layers.Linear(4, 8), torch.nn.ReLU())
    with pytest.raises(TypeError, match=r"^Sequential.append: expected an xpnet layer, got "
                                        r"torch.nn.modules.linear.Linear: a PyTorch module; .*\(xn.layers.Linear\)$"):
        xn.Sequential().append(torch.nn.Linear(2, 3))


def test_a_sequentials_layers_are_replaced_inserted_and_removed_as_pytorchs():
    """model[-1] = Linear(8, 3) (VGG's classifier[6] = nn.Linear(4096, n) when fine-tuning), del model[i], insert
    and pop were a TypeError or an AttributeError."""
    model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Linear(8, 2))
    head = xn.layers.Linear(8, 3)
    model[-1] = head
    assert model[2] is head and model.predict(np.ones((5, 4), np.float32)).shape == (5, 3)
    relu = model.pop(1)
    assert isinstance(relu, xn.layers.ReLU) and len(model) == 2 and list(model.named_params())[2:] == ["1.W", "1.b"]
    assert model.insert(1, relu) is model and model[1] is relu and model.insert(-1, xn.layers.Tanh())[2].name == "Tanh"
    del model[1:3]
    assert [layer.name for layer in model] == ["Linear", "Linear"]
    with pytest.raises(IndexError, match=r"^Sequential: index 2 is out of range for its 2 layers"):
        model[2] = xn.layers.ReLU()
    with pytest.raises(TypeError, match=r"^Sequential: item 0 is an int, not an xpnet layer"):
        model[0] = 3
    with pytest.raises(IndexError, match=r"^Sequential.insert: index must be an int in -2..2, got 5"):
        model.insert(5, xn.layers.ReLU())
    with pytest.raises(ValueError, match=r"^Sequential: item 0, MultiheadAttention"):
        model[0] = xn.layers.MultiheadAttention(8, 2)


def test_an_optimizer_starts_a_replaced_layer_of_another_shape_afresh():
    """model[-1] = Linear(8, 3) after steps with Adam: the old head's moments (8, 2) failed the update with
    NumPy's broadcast error; the new head starts from fresh state, its own first step, the rest goes on."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Linear(8, 2))
    opt = xn.optim.Adam(model, lr=1e-2)
    loss = xn.losses.SoftmaxCrossEntropy()

    def step(t):
        loss.forward(model.forward(x), t)
        model.backward(loss.backward())
        grads = {k: v.copy() for k, v in model.named_grads().items()}
        opt.step()
        return grads

    for _ in range(2):
        step(rng.integers(0, 2, 16))
    model[-1] = xn.layers.Linear(8, 3)
    g = step(rng.integers(0, 3, 16))
    b1, b2 = opt.betas
    np.testing.assert_allclose(opt.state["2.W"]["m"], (1 - b1) * g["2.W"], rtol=1e-6)
    np.testing.assert_allclose(opt.state["2.W"]["v"], (1 - b2) * g["2.W"] ** 2, rtol=1e-6)
    assert opt.t - opt.skipped["2.W"] == 1 and opt.t - opt.skipped.get("0.W", 0) == 3


@pytest.mark.parametrize("make, message", [
    (lambda: xn.layers.MultiheadAttention(8, 2), r"item 1, MultiheadAttention\(embed_dim=8.*\), takes 3 inputs "
     r"\(query, key, value\) where a Sequential passes one: write an xn.Model .*self.layer\(query, key, value\)$"),
    (lambda: xn.layers.CosineSimilarity(), r"item 1, CosineSimilarity\(\), takes 2 inputs \(x1, x2\)"),
    (lambda: xn.layers.TransformerDecoderLayer(8, 2, 16, batch_first=True),
     r"item 1, TransformerDecoderLayer, takes 2 inputs \(tgt, memory\)"),  # a container: its name, on one line
    (lambda: xn.layers.LSTMCell(8, 4), r"item 1, LSTMCell\(.*\), is one step of a loop .* xn.layers.LSTM; loop"),
])
def test_a_sequential_refuses_a_layer_of_several_inputs_when_built(make, message):
    """nn.Sequential(..., nn.MultiheadAttention(...)) fails only at the call (forward() missing 'key' and 'value');
    xpnet's Sequential took such a layer and failed at the first forward, far from the cause."""
    with pytest.raises(ValueError, match="^Sequential: " + message) as info:
        xn.Sequential(xn.layers.Linear(8, 8), make())
    assert "\n" not in str(info.value)


class _BookStyle(xn.layers.Layer):
    def forward(self, x, train):  # train required, as a layer of one's own may write it
        return x


def test_a_sequential_takes_a_layer_of_ones_own_whose_forward_requires_train():
    assert isinstance(xn.Sequential(xn.layers.Linear(2, 2), _BookStyle())[1], _BookStyle)


def test_adam_takes_pytorchs_amsgrad_and_refuses_a_non_bool():
    """Adam(lr, amsgrad=False), written out by PyTorch users, was a TypeError; True (the DQN tutorial's AdamW) is
    PyTorch's AMSGrad (its steps: tests/test_pytorch_ports_rl2.py); anything but a bool is refused, not read."""
    for cls in (xn.optim.Adam, xn.optim.AdamW):
        assert cls(1e-3, amsgrad=False).betas == (0.9, 0.999)
        assert cls(1e-3, amsgrad=True).param_groups[0]["amsgrad"] is True
        with pytest.raises(TypeError, match=f"{cls.__name__}.*amsgrad"):
            cls(1e-3, amsgrad="yes")


@pytest.mark.parametrize("make, keyword", [
    (lambda ps: optim.Adam(ps, 1e-3, (0.9, 0.999), 1e-8, 0, True), "amsgrad=True"),
    (lambda ps: optim.AdamW(ps, 1e-3, (0.9, 0.999), 1e-8, 1e-2, False), "amsgrad=False"),
    (lambda ps: optim.RMSprop(ps, 1e-2, 0.99, 1e-8, 0, 0.9), "momentum=0.9"),
])
def test_pytorchs_argument_after_weight_decay_given_by_position_is_named(make, keyword):
    """torch.optim's Adam(params, lr, betas, eps, weight_decay, amsgrad) and RMSprop(..., weight_decay, momentum)
    put amsgrad and momentum where xpnet has weight_decay_on: the error named only weight_decay_on."""
    with pytest.raises(ValueError, match=f"the argument after weight_decay, .* PyTorch's argument there, "
                                         f"{keyword.split('=')[0]}, goes by name here: {keyword}$"):
        make(_mlp().parameters())


def test_a_subclass_of_rmsprop_takes_and_refuses_positional_arguments_as_its_constructor_reads_them():
    """RMSprop's refusal of torch's positional order read the subclass's own signature: one passing *args on to
    RMSprop raised a bare StopIteration for any argument after the parameters, as did one taking fewer by position
    than torch's shared start (lr)."""

    class PassesOn(optim.RMSprop):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    class LrOnly(optim.RMSprop):
        def __init__(self, lr=0.01):
            super().__init__(lr)

    assert PassesOn(_mlp().parameters(), 0.05).lr == 0.05
    with pytest.raises(TypeError, match=r"^PassesOn: 6 arguments by position .* from momentum on: momentum=0\.9, "
                                        r"centered=True$"):
        PassesOn(_mlp().parameters(), 0.01, 0.99, 1e-8, 0, 0.9, True)
    with pytest.raises(TypeError, match=r"^LrOnly: 2 arguments by position .* takes 1 \(lr\); .* from alpha on: "
                                        r"alpha=0\.9$"):
        LrOnly(_mlp().parameters(), 0.01, 0.9)


def test_rmsprops_centered_given_by_position_names_each_keyword():
    """torch.optim.RMSprop(params, lr, alpha, eps, weight_decay, momentum, centered): a sixth positional argument
    got Python's bare "takes from 1 to 6 positional arguments but 7 were given"."""
    for first in ((_mlp().parameters(),), ()):
        with pytest.raises(TypeError, match=r"^RMSprop: 6 arguments by position .* where xpnet's takes 5 \(lr, alpha, "
                                            r"eps, weight_decay, weight_decay_on\); .* goes by name here from "
                                            r"momentum on: momentum=0\.9, centered=True$"):
            optim.RMSprop(*first, 0.01, 0.99, 1e-8, 0, 0.9, True)
    made = optim.RMSprop(_mlp().parameters(), 0.01, 0.99, 1e-8, 0, momentum=0.9, centered=True)
    assert (made.momentum, made.centered) == (0.9, True)


def test_adagrads_lr_decay_given_by_position_is_refused_not_read_as_eps():
    """torch.optim.Adagrad(params, lr, lr_decay, weight_decay, ...): xpnet's AdaGrad has eps after lr, so
    ``AdaGrad(model.parameters(), 0.01, 1e-4)`` took PyTorch's lr_decay 1e-4 as eps, silently. Built PyTorch's way
    (parameters or param groups first) a second positional argument is refused, naming both; the book's way
    (``AdaGrad(0.01, 1e-7)``, or the model itself first) keeps eps there."""
    model = _mlp()
    for params in (model.parameters(), [{"params": model.parameters()}]):
        with pytest.raises(TypeError, match=r"^AdaGrad: the argument after lr is eps here, where torch\.optim's is "
                                            r"lr_decay: got 0\.0001 by position; .*eps=0\.0001 for xpnet's, "
                                            r"lr_decay= for PyTorch's"):
            optim.AdaGrad(params, 0.01, 1e-4)
    assert optim.AdaGrad(model.parameters(), 0.05).lr == 0.05
    assert optim.AdaGrad(model.parameters(), 0.05, eps=1e-4, lr_decay=0).eps == 1e-4
    assert optim.AdaGrad(0.01, 1e-4).eps == 1e-4 and optim.AdaGrad(model, 0.01, 1e-4).eps == 1e-4


@pytest.mark.parametrize("name", ["SGD", "AdaGrad", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam",
                                  "RMSprop", "LBFGS"])
def test_an_optimizer_built_from_parameters_has_torchs_defaults(name):
    """``SGD(model.parameters())`` with no lr had the book's 0.01 where torch.optim.SGD's is 1e-3, and
    ``AdaGrad(model.parameters())`` the book's eps 1e-7 where torch's is 1e-10: a PyTorch script that leaves them
    out stepped 10 times as far, silently. Built PyTorch's way, every hyperparameter both have is torch's; built the
    book's way (``SGD()``, ``SGD(model)``) the book's stay."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    theirs = getattr(torch.optim, {"AdaGrad": "Adagrad"}.get(name, name))(torch.nn.Linear(3, 2).parameters())
    for params in (_mlp().parameters(), [{"params": _mlp().parameters()}]):
        ours = getattr(optim, name)(params).hyperparams()
        shared = {k: v for k, v in theirs.defaults.items() if k in ours}
        assert {"lr"} <= set(shared) and all(np.all(np.asarray(ours[k]) == np.asarray(v)) for k, v in shared.items())
    if name in ("SGD", "AdaGrad"):
        key = "lr" if name == "SGD" else "eps"
        book = {"lr": 0.01, "eps": 1e-7}[key]
        assert getattr(getattr(optim, name)(), key) == getattr(getattr(optim, name)(_mlp()), key) == book


def test_every_optimizer_reads_torchs_positional_arguments_as_torch_or_refuses_them():
    """Each optimizer with a torch.optim twin takes torch's positional arguments (after params) under torch's
    names, up to where the two differ; there a value given by position is refused (AdaGrad's lr_decay; Adam's and
    AdamW's amsgrad, RMSprop's momentum where xpnet has weight_decay_on), never read as xpnet's argument."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    import inspect
    differing = {}
    for name in dir(optim):
        cls = getattr(optim, name)
        twin = getattr(torch.optim, {"AdaGrad": "Adagrad"}.get(name, name), None)
        if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)) or twin is None or cls is optim.Optimizer:
            continue
        ours = [p.name for p in inspect.signature(cls).parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD]
        theirs = [p.name for p in inspect.signature(twin).parameters.values()
                  if p.kind == p.POSITIONAL_OR_KEYWORD][1:]
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        if at is not None:
            differing[name] = (at, theirs[at])
    assert differing == {"AdaGrad": (1, "lr_decay"), "Adam": (4, "amsgrad"), "AdamW": (4, "amsgrad"),
                         "RMSprop": (4, "momentum")}
    for name, (at, torch_name) in differing.items():
        cls = getattr(optim, name)
        defaults = [p.default for p in inspect.signature(cls).parameters.values()][:at]
        value = 0.5 if torch_name == "momentum" else (True if torch_name == "amsgrad" else 1e-4)
        with pytest.raises((TypeError, ValueError), match=torch_name):
            cls(_mlp().parameters(), *defaults, value)


@pytest.mark.parametrize("call, keyword, hint", [
    ("train", "verbose", "progress=False turns off the progress bar and the epoch lines (Keras' verbose=0)"),
    ("train", "validation_data", "validation=(x_val, y_val)"),
    ("train", "validation_split", "xn.train takes no split: hold out rows yourself"),
    ("train", "lr", "the learning rate is the optimizer's: optimizer=xn.optim.SGD(lr=0.01)"),
    ("train", "max_epochs", "epochs=N"),
    ("train", "criterion", "loss=..."),
    ("train", "gradient_clip_val", "clip_grad_norm=5.0"),
    ("train", "gradient_clip_algorithm", "clip_grad_value=0.5 (each gradient element clamped"),
    ("train", "lr_scheduler", "scheduler=... (xn.optim.lr_scheduler.StepLR(optimizer, step_size=30)"),
    ("train", "weight_decay", "pass it to the optimizer"),
    ("evaluate", "device", "xn.evaluate runs where the model is: model.to(device) first"),
    ("evaluate", "verbose", "xn.evaluate prints nothing"),
])
def test_keras_and_lightning_keywords_say_what_xn_train_calls_them(call, keyword, hint):
    """xn.train(..., verbose=0) (Keras' fit), max_epochs (Lightning), lr=... gave Python's bare "unexpected
    keyword argument", leaving the user to read the signature; the TypeError now says what to write."""
    x, t = xn.datasets.spiral(10, 3, seed=0)
    args = {"optimizer": "sgd", "epochs": 1, "batch_size": 10} if call == "train" else {}
    with pytest.raises(TypeError, match=f"^{call}\\(\\) got an unexpected keyword argument '{keyword}': .*"
                                        + re.escape(hint)):
        getattr(xn, call)(_mlp(), (x, t), loss="cross_entropy", **args, **{keyword: 0})


def test_a_pytorch_dataloader_or_dataset_given_as_data_says_what_to_pass():
    """xn.train(model, DataLoader(TensorDataset(x, t), batch_size=16)) said only "expected a pair (x, y), got
    DataLoader"; it now names the tensors to pass and the batch size to keep."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x, t = xn.datasets.spiral(10, 3, seed=0)
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(t))

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[i], t[i]

    for given, hint in [
        (torch.utils.data.DataLoader(data, batch_size=16, shuffle=True),
         "(loader.dataset.tensors[0], loader.dataset.tensors[1]), and batch_size=16, shuffle=True, drop_last=False "
         "to xn.train"),
        (data, "(dataset.tensors[0], dataset.tensors[1])"),
        (torch.utils.data.DataLoader(Items(), batch_size=4), "x, y = xn.datasets.stack_samples(loader.dataset) (each "
                                                             "dataset[i] an (x, y)), then xn.train(model, (x, y), ..., "
                                                             "batch_size=4, shuffle=False, drop_last=False)"),
    ]:
        with pytest.raises(TypeError, match=r"train data: expected a pair \(x, y\).*xpnet cuts .*the batches "
                                            r"itself, on the device; .*" + re.escape(hint)):
            xn.train(_mlp(), given, loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=16)


def test_other_unknown_keywords_and_the_signature_stay_pythons():
    x, t = xn.datasets.spiral(10, 3, seed=0)
    with pytest.raises(TypeError, match=r"^train\(\) got an unexpected keyword argument 'no_such_thing'$"):
        xn.train(_mlp(), (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=10, no_such_thing=1)
    assert "clip_grad_norm" in inspect.signature(xn.train).parameters
    assert list(inspect.signature(xn.evaluate).parameters)[:2] == ["model", "data"]


def test_indexing_a_sequential_names_its_length_and_slices_give_a_sequential():
    model = _mlp()
    assert model[-1] is model.layers[2] and isinstance(model[:2], xn.Sequential) and model[:2][1] is model.layers[1]
    with pytest.raises(IndexError, match=r"Sequential: index 5 is out of range for its 3 layers \(0..2"):
        model[5]
    with pytest.raises(TypeError, match="indexed by an int or a slice, got a str"):
        model["0"]


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_a_stateful_recurrent_layer_on_one_step_is_pytorchs_cell(name):
    """Generating one step at a time with the sequence layer: stateful=True on (N, 1, D), call after call, gives
    the whole sequence's outputs, and those of torch.nn.<name>Cell stepped over it."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    whole = getattr(xn.layers, name)(3, 4, dtype="float64")
    step = getattr(xn.layers, name)(3, 4, stateful=True, dtype="float64")
    step.load_state_dict(whole.state_dict())
    y = whole.forward(x)
    # Equal to float64 rounding, not bit for bit: the whole sequence's input product is one (N*T, D) matrix
    # product, a step's an (N, D) one, and a BLAS may sum them in another order (MKL on AMD EPYC: 1 ulp)
    np.testing.assert_allclose(np.concatenate([step.forward(x[:, t:t + 1, :]) for t in range(5)], axis=1), y,
                               rtol=1e-14, atol=1e-16)
    cell = getattr(torch.nn, f"{name}Cell")(3, 4, dtype=torch.float64)
    bias_ih, bias_hh = (whole.params["bx"], whole.params["bh"]) if name == "GRU" else (whole.params["b"], 0.0)
    with torch.no_grad():  # xpnet's W are PyTorch's weights transposed; LSTM and RNN keep one bias
        for ours, theirs in ((whole.params["Wx"].T, cell.weight_ih), (whole.params["Wh"].T, cell.weight_hh),
                             (bias_ih, cell.bias_ih), (bias_hh, cell.bias_hh)):
            theirs.copy_(torch.as_tensor(ours))
    state, outputs = None, []
    for t in range(5):
        state = cell(torch.from_numpy(x[:, t, :]), state)
        outputs.append((state[0] if name == "LSTM" else state).detach().numpy())
    np.testing.assert_allclose(np.stack(outputs, axis=1), y, rtol=1e-12, atol=1e-12)


def test_embedding_takes_pytorchs_arguments_with_pytorchs_meaning():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    layer = xn.layers.Embedding(10, 5, padding_idx=0)
    assert layer.padding_idx == 0 and not np.any(layer.params["W"][0]) and np.all(layer.params["W"][1:])
    assert xn.layers.Embedding(10, 5, -3).padding_idx == 7
    same = xn.layers.Embedding(10, 5, None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, sparse=False,
                               _weight=None, _freeze=False, device=None, dtype=torch.float64)
    assert same.padding_idx is None and same.params["W"].dtype == np.float64
    assert repr(xn.layers.Embedding(10, 5, padding_idx=-1)) == "Embedding(num_embeddings=10, embedding_dim=5, " \
                                                                "padding_idx=9)"


@pytest.mark.parametrize("kwargs, message", [
    ({"padding_idx": 10}, r"Embedding: padding_idx must be an int in \[-10, 10\) \(num_embeddings=10\) or None, "
                          r"got 10$"),
    ({"padding_idx": -11}, r"padding_idx must be an int in \[-10, 10\) .*, got -11$"),
    ({"padding_idx": 1.0}, r"padding_idx must be an int .*, got 1.0$"),
    ({"max_norm": 1.0}, r"Embedding: max_norm=1.0 is not supported: xpnet does not renormalise rows"),
    ({"norm_type": 1.0}, r"Embedding: norm_type=1.0 is not supported: it is the norm of max_norm"),
    ({"scale_grad_by_freq": True}, r"Embedding: scale_grad_by_freq=True is not supported: .* leave it False"),
    ({"sparse": True}, r"Embedding: sparse=True is not supported: xpnet's gradients are dense arrays"),
    ({"_weight": np.zeros((10, 5))}, r"Embedding: _weight=<ndarray> is not supported: use "
                                     r"Embedding.from_pretrained\(weights, freeze=False\), or set layer.params\['W'\]"),
    ({"device": "cuda"}, r"Embedding: device='cuda' is not supported: .* move the layer \(or its model\) "
                         r"with .to\(device\)"),
])
def test_embedding_arguments_xpnet_cannot_honour_fail_with_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        xn.layers.Embedding(10, 5, **kwargs)
    assert "\n" not in str(info.value)


def test_embedding_refuses_pytorchs_fourth_positional_argument_max_norm():
    """PyTorch's fourth argument is max_norm: xpnet's init, dtype and check_ids are keyword-only, so that
    Embedding(10, 5, 0, 1.0) fails rather than drawing W with a standard deviation of 1.0."""
    with pytest.raises(TypeError, match="positional"):
        xn.layers.Embedding(10, 5, 0, 1.0)


def test_embedding_from_pretrained_freezes_as_pytorch_and_checks_its_arguments():
    weights = np.arange(6.0).reshape(3, 2)
    assert not xn.layers.Embedding.from_pretrained(weights).requires_grad  # freeze=True, PyTorch's default
    assert xn.layers.Embedding.from_pretrained(weights, freeze=False).requires_grad
    assert not xn.layers.Embedding(3, 2, _freeze=True).requires_grad
    with pytest.raises(ValueError, match=r"Embedding: sparse=True is not supported"):
        xn.layers.Embedding.from_pretrained(weights, freeze=False, sparse=True)
    with pytest.raises(ValueError, match=r"embeddings must be 2-D .*, got shape \(6,\)"):
        xn.layers.Embedding.from_pretrained(weights.reshape(-1), freeze=False)
    layer = xn.layers.Embedding.from_pretrained(weights, freeze=False, padding_idx=-1)
    assert layer.padding_idx == 2 and layer.params["W"].dtype == np.float64
    np.testing.assert_array_equal(layer.params["W"], weights)  # the padding row kept, as PyTorch's


@pytest.mark.parametrize("make", [
    lambda **kw: xn.layers.Linear(3, 4, **kw), lambda **kw: xn.layers.Conv2d(1, 2, 3, **kw),
    lambda **kw: xn.layers.ConvTranspose2d(1, 2, 3, **kw), lambda **kw: xn.layers.BatchNorm(3, **kw),
    lambda **kw: xn.layers.LayerNorm(3, **kw), lambda **kw: xn.layers.LSTM(3, 4, **kw),
    lambda **kw: xn.layers.MultiheadAttention(4, 2, **kw)], ids=["Linear", "Conv2d", "ConvTranspose2d", "BatchNorm",
                                                               "LayerNorm", "LSTM", "MultiheadAttention"])
def test_every_layer_with_parameters_takes_pytorchs_device_none_and_refuses_a_device(make):
    """nn.Linear(3, 4, device=None), PyTorch's factory keyword written out, was a TypeError on Linear alone; a
    device is refused on each, saying to move the layer."""
    assert make(device=None).params
    with pytest.raises(ValueError, match=r": device='cuda' is not supported: make the layer, then move it .*"
                                         r"with \.to\(device\)"):
        make(device="cuda")


def test_a_layers_dtype_may_be_given_as_pytorchs():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    assert xn.layers.Linear(3, 4, dtype=torch.float64).params["W"].dtype == np.float64
    assert xn.layers.Conv2d(1, 2, 3, dtype=torch.float32).params["W"].dtype == np.float32
    assert xn.layers.LSTM(3, 4, dtype=torch.float64).params["Wh"].dtype == np.float64
    with pytest.raises(ValueError, match=r"Linear: dtype must be a real floating type .*got torch.int64"):
        xn.layers.Linear(3, 4, dtype=torch.int64)


def test_a_mask_given_to_attention_is_refused_not_ignored():
    """PyTorch's attention takes a mask after the inputs; xpnet's third argument is train, and the mask
    passed there used to be read as train and ignored: every padding step still got weight."""
    rng = np.random.default_rng(0)
    hs_enc, hs_dec = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 2, 3))
    mask = np.array([[True, True, False, False], [True, True, True, False]])
    att = xn.layers.Attention()
    message = (r"^Attention.forward\(hs_enc, hs_dec, train\): train must be True or False, got ndarray; "
               r"xpnet's Attention has no mask .*")
    for call in (att.forward, att):
        with pytest.raises(TypeError, match=message):
            call(hs_enc, hs_dec, mask)
    assert att.forward(hs_enc, hs_dec, np.False_).shape == (2, 2, 3)


@pytest.mark.parametrize("make, x", [
    (lambda: xn.layers.Linear(3, 2, dtype="float64"), np.ones((2, 3))),
    (lambda: xn.layers.Embedding(5, 3), np.zeros((2, 4), np.int64)),
    (lambda: xn.layers.Dropout(0.5), np.ones((2, 3))),
    (lambda: xn.layers.BatchNorm(3, dtype="float64"), np.ones((2, 3))),
    (lambda: xn.layers.ReLU(), np.ones((2, 3))),
], ids=["Linear", "Embedding", "Dropout", "BatchNorm", "ReLU"])
def test_an_array_in_trains_place_is_refused_by_a_layer_call(make, x):
    layer = make()
    with pytest.raises(TypeError, match=rf"^{layer.name}.forward\(x, train\): train must be True or False, "
                                        r"got ndarray$"):
        layer(x, np.ones(1, bool))  # one element: would be read as True
    assert layer(x, np.True_).shape[0] == 2


@pytest.mark.parametrize("name", ["Dropout", "BatchNorm"])
def test_layers_that_branch_on_train_refuse_an_array_in_forward_too(name):
    layer = xn.layers.BatchNorm(3, dtype="float64") if name == "BatchNorm" else xn.layers.Dropout(0.5)
    with pytest.raises(TypeError, match=rf"^{name}.forward\(x, train\): train must be True or False, got ndarray$"):
        layer.forward(np.ones((2, 3)), np.zeros(1, bool))


def test_a_keyword_a_models_forward_does_not_take_is_named():
    """model(x, training=False) (Keras) and model(x, hx=h0) (PyTorch's recurrent habit) name the keyword and what
    to write; they once said the model "takes 1 input, got 1"."""
    model = xn.Sequential(xn.layers.Linear(2, 3))
    x = np.zeros((1, 2), np.float32)
    with pytest.raises(TypeError, match=r"^Sequential: forward\(x, train=True\) takes no keyword 'training'; "
                                        r"Keras' training= is train= here$"):
        model(x, training=False)
    with pytest.raises(TypeError, match=r"takes no keyword 'hx'; an initial state \(PyTorch's model\(x, h0\)\)"):
        model(x, hx=x)


def test_an_input_after_train_in_forwards_signature_given_by_position_says_to_name_it():
    """The seq2seq tutorial's forward(self, encoder_outputs, encoder_hidden, target_tensor=None) with xpnet's
    train inserted before target_tensor, called model(a, b, target): it said "takes 3 inputs, got 3" and
    pointed at initial states."""
    class Decoder(xn.Model):
        def __init__(self):
            super().__init__()
            self.fc = xn.layers.Linear(2, 2)

        def forward(self, a, b, train=True, target_tensor=None):
            return self.fc(a + b)

    model, x = Decoder(), np.ones((3, 2), np.float32)
    assert model(x, x, target_tensor=x).shape == (3, 2)
    with pytest.raises(TypeError, match=r"^Decoder: forward\(a, b, train=True, target_tensor=None\) takes 2 inputs "
                                        r"before train, got 3: the next would be taken as train; pass target_tensor "
                                        r"by name, model\(\.\.\., target_tensor=\.\.\.\), or put train last"):
        model(x, x, x)


def test_an_initial_state_given_to_a_model_or_as_hx_says_where_it_goes():
    """PyTorch's model(x, h0) and lstm(x, hx=...): xpnet's state is set with set_state before the call."""
    V, D, H = 7, 4, 5
    model = xn.Sequential(xn.layers.Embedding(V, D), xn.layers.LSTM(D, H), xn.layers.Linear(H, V))
    ids, h0 = np.zeros((2, 3), np.int64), np.zeros((2, H), np.float32)
    with pytest.raises(TypeError, match=r"^Sequential: forward\(x, train=True\) takes 1 input, got 2; an initial "
                                        r"state \(PyTorch's model\(x, h0\)\) is set on the recurrent layer before "
                                        r"the call: model\[i\].set_state\(h0, c0\)"):
        model(ids, h0)
    with pytest.raises(TypeError, match=r"^Sequential.forward\(x, train\): train must be True or False, got "
                                        r"ndarray; an initial state .*set_state"):
        model.forward(ids, h0)
    lstm, x = xn.layers.LSTM(D, H), np.zeros((2, 3, D), np.float32)
    for call in (lstm.forward, lstm):
        for hx in (None, (h0, h0)):  # None too: on a stateful layer it would mean zeros in PyTorch only
            with pytest.raises(TypeError, match=r"^LSTM.forward\(x, train\): takes no hx; PyTorch's forward\(x, hx\) "
                                                r"is set_state\(h0, c0\) then forward\(x\)"):
                call(x, hx=hx)
    with pytest.raises(TypeError, match=r"^GRU.forward\(x, train\): takes no hx; .* set_state\(h0\) then"):
        xn.layers.GRU(D, H).forward(x, hx=h0)


def test_a_type_error_inside_a_models_forward_is_left_as_it_is():
    class Broken(xn.Model):
        def __init__(self):
            super().__init__()
            self.fc = xn.layers.Linear(2, 2)

        def forward(self, x, train=True):
            raise TypeError("a bug of the model's own")

    with pytest.raises(TypeError, match="^a bug of the model's own$"):
        Broken()(np.ones((1, 2), np.float32))


def test_clip_grad_norm_takes_what_the_optimizers_take():
    def clipped(target_of):
        model = _mlp()
        x, t = _batches()[0]
        loss = xn.losses.SoftmaxCrossEntropy()
        loss.forward(model(x), t)
        model.backward(loss.backward())
        norm = optim.clip_grad_norm(target_of(model), 0.1)
        return float(norm), model.named_grads()

    norm, grads = clipped(lambda m: m)
    for norm_p, grads_p in (clipped(lambda m: m.parameters()),):
        assert norm_p == norm
        for key, g in grads.items():
            np.testing.assert_array_equal(grads_p[key], g, err_msg=key)
    with pytest.raises(TypeError, match=r"^clip_grad_norm: expected the model, .* or model.parameters\(\); got a list"):
        optim.clip_grad_norm(list(_mlp().parameters()), 1.0)


def test_clip_grad_norm_before_any_backward_is_a_zero_norm_as_pytorchs(dev):
    """PyTorch's clip_grad_norm_ returns a norm of 0 when no parameter has a gradient yet; xpnet returned
    None, which float(norm) or a log line then failed on."""
    model = _mlp().to(dev)
    norm = optim.clip_grad_norm(model, 1.0)
    assert float(norm) == 0.0 and norm.shape == () and norm.dtype == model.named_params()["0.W"].dtype
    assert xn.backend.device_of(norm) == dev and not any(model.named_grads().values())
    assert optim.clip_grad_norm(xn.Sequential(xn.layers.ReLU()), 1.0) == 0.0


def test_linear_refuses_pytorchs_positional_bias_naming_the_keyword():
    for value in (False, True, np.False_):
        with pytest.raises(TypeError, match=rf"^Linear: the third argument is init .*, got {value!r}; PyTorch's "
                                            rf"third, bias, is bias={value!r} here, and Chainer's third, nobias, "
                                            rf"is bias={not value!r}$"):
            xn.layers.Linear(3, 4, value)
    assert "b" not in xn.layers.Linear(3, 4, bias=False).params


def test_conv2d_takes_pytorchs_positional_arguments_and_no_value_of_them_means_init():
    """PyTorch's order is (in, out, kernel_size, stride, padding, dilation, groups, bias): xpnet's init once sat
    sixth, where Conv2d(1, 2, 3, 1, 0, 1) (dilation 1) drew weights of standard deviation 1."""
    rng = np.random.default_rng(0)
    xn.init.seed(0)
    ported = xn.layers.Conv2d(1, 8, 3, 1, 0, 1, 1, False)
    xn.init.seed(0)
    plain = xn.layers.Conv2d(1, 8, 3, bias=False)
    np.testing.assert_array_equal(ported.params["W"], plain.params["W"])
    assert "b" not in ported.params
    x = rng.standard_normal((2, 1, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(ported.forward(x), plain.forward(x))
    with pytest.raises(TypeError, match=r"^Conv2d: the sixth argument is PyTorch's dilation, got 'xavier'; pass the "
                                        r"initialiser by keyword: init='xavier'$"):
        xn.layers.Conv2d(1, 2, 3, 1, 0, "xavier")
    with pytest.raises(TypeError, match=r"^Conv2d: the seventh argument is PyTorch's groups, got False; bias is the "
                                        r"eighth, or pass it by keyword: bias=False$"):
        xn.layers.Conv2d(1, 2, 3, 1, 0, 1, False)
    for kwargs, message in (({"dilation": 0}, r"dilation must be an int >= 1 or a pair of them, got 0$"),
                            ({"dilation": (1, -2)}, r"dilation must be an int >= 1 or a pair of them, got \(1, -2\)$"),
                            ({"groups": 2}, (r"in_channels \(1\) and out_channels \(2\) must both be divisible "
                                             r"by groups \(2\)$")),
                            ({"groups": 0}, r"groups must be a positive int, got 0$"),
                            ({"padding_mode": "reflective"}, (r"padding_mode must be one of 'zeros', 'reflect', "
                                                             r"'replicate', 'circular' \(PyTorch's\), got "
                                                             r"'reflective'$")),
                            ({"device": "cuda"}, r"device='cuda' is not supported: make the layer, then move it")):
        with pytest.raises(ValueError, match=rf"^Conv2d: {message}"):
            xn.layers.Conv2d(1, 2, 3, **kwargs)
    layer = xn.layers.Conv2d(1, 2, 3, dilation=(1, 1), groups=1, padding_mode="zeros", device=None, init=0.5)
    assert float(np.std(layer.params["W"])) > 0.2  # init=0.5 by keyword is the standard deviation it always was


def test_cross_entropy_takes_pytorchs_reduction_and_integer_likes():
    assert xn.losses.SoftmaxCrossEntropy(reduction="mean").reduction == "mean"
    assert xn.losses.SoftmaxCrossEntropy(ignore_index=np.int64(0)).ignore_index == 0
    assert type(xn.losses.SoftmaxCrossEntropy(ignore_index=np.int32(3)).ignore_index) is int
    with pytest.raises(ValueError, match=r"^SoftmaxCrossEntropy: reduction='none' is not supported: xpnet has no "
                                         r"loss per position"):
        xn.losses.SoftmaxCrossEntropy(reduction="none")
    with pytest.raises(ValueError, match=r"reduction='avg' is not supported: expected 'mean' or 'sum'$"):
        xn.losses.SoftmaxCrossEntropy(reduction="avg")
    with pytest.raises(TypeError, match=r"^SoftmaxCrossEntropy: the first argument is ignore_index \(an int\), got "
                                        r"a ndarray; PyTorch's first, weight \(class weights\), is passed by name "
                                        r"here: SoftmaxCrossEntropy\(weight=...\)$"):
        xn.losses.SoftmaxCrossEntropy(np.ones(7))
    with pytest.raises(ValueError, match="ignore_index must be an int, got 0.5"):
        xn.losses.SoftmaxCrossEntropy(ignore_index=0.5)


def test_train_and_evaluate_refuse_a_summed_loss_saying_why():
    model, (x, t) = _mlp(), _batches()[0]
    total = xn.losses.SoftmaxCrossEntropy(reduction="sum")
    with pytest.raises(ValueError, match=r"^train: the loss has reduction='sum'; train averages the loss over "
                                         r"batches .*reduction='mean'"):
        xn.train(model, (x, t), loss=total, optimizer="sgd", epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"^evaluate: the loss has reduction='sum'"):
        xn.evaluate(model, (x, t), loss=total)


def test_rnn_takes_pytorchs_nonlinearity_tanh_or_relu():
    """word_language_model's RNN_RELU, nn.RNN(..., nonlinearity='relu'), was refused (tanh only): it is taken now
    (tests/test_pytorch_ports_examples.py checks it against PyTorch); any other value is refused, naming both."""
    assert xn.layers.RNN(3, 4, nonlinearity="tanh").hidden_size == 4
    assert xn.layers.RNN(3, 4, nonlinearity="relu").nonlinearity == "relu"
    with pytest.raises(ValueError, match=r"^RNN: nonlinearity must be 'tanh' or 'relu', as PyTorch's, got 'gelu'"):
        xn.layers.RNN(3, 4, num_layers=2, nonlinearity="gelu")
    with pytest.raises(TypeError, match=r"LSTM.__init__\(\) got an unexpected keyword argument 'nonlinearity'"):
        xn.layers.LSTM(3, 4, nonlinearity="tanh")  # as PyTorch: only its RNN has one


def test_an_unbatched_input_to_linear_says_to_make_it_a_batch_of_one():
    """PyTorch's nn.Linear takes one sample (in_features,); xpnet's takes batches: the error says what to write."""
    with pytest.raises(ValueError, match=r"got \(3,\); one sample .* x\[None\], and y\[0\]"):
        xn.layers.Linear(3, 2)(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"got \(4,\)$"):  # not that hint where the size is not in_features
        xn.layers.Linear(3, 2)(np.ones(4, np.float32))


class _ScalarLayer(xn.layers.Layer):
    """Polynomial3's ``self.a = nn.Parameter(...)`` ported to self.params, then read back as PyTorch does."""

    def __init__(self):
        super().__init__()
        self.params["a"] = np.zeros(())
        self.buffers["count"] = np.zeros(())

    def forward(self, x, train=True):
        return self.a * x


class _ScalarModel(xn.Model):
    def __init__(self):
        super().__init__()
        self.params["a"] = np.zeros(())

    def forward(self, x, train=True):
        return self.a * x


@pytest.mark.parametrize("make", [_ScalarLayer, _ScalarModel])
def test_a_parameter_read_as_an_attribute_says_where_it_is(make):
    """A name in self.params read as ``self.a`` (PyTorch's nn.Parameter attribute) said only "no attribute 'a'"."""
    with pytest.raises(AttributeError, match=r"no attribute 'a': 'a' is in its params: read it as self.params\['a'\]"):
        make()(np.ones(3))
    if make is _ScalarLayer:
        with pytest.raises(AttributeError, match=r"'count' is in its buffers: read it as self.buffers\['count'\]"):
            make().count
    assert not hasattr(make(), "b")


def test_next_parameters_indexed_on_the_spot_means_pytorchs_or_is_refused():
    """next(model.parameters())[...] reads the first parameter: an Embedding's W is PyTorch's weight, so the index
    means the same; a Linear's W is weight.T, so an index written for either layout is refused, saying what to
    write (xpnet.layers.parameter_index); next() alone gives W, as before."""
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Embedding(5, 3))
    np.testing.assert_array_equal(next(model.parameters())[1], model[0].weight[1])
    model = _mlp()
    with pytest.raises(IndexError, match=r"'0\.W' of Linear, \(4, 8\).*model\[0\]\.weight\[:, 2\]"):
        next(model.parameters())[:, 2]
    assert next(model.parameters()) is model[0].params["W"]


@pytest.mark.parametrize("expression, hint", [
    ("net.fc1.grad", "PyTorch's p.grad is layer.grads[key]: here layer.grads['W'], layer.grads['b']"),
    ("net.grad", "model.named_grads()"),
    ("net.weight", "model.named_params() ('fc1.W', 'fc1.b')"),
    ("xn.Sequential(net.fc1).bias", "model.named_params() ('0.W', '0.b')"),
    ("lstm.weight_ih_l0", "PyTorch's weight_ih_l0 is layer.params['Wx'].T"),
    ("lstm.bias_hh_l0", "PyTorch's bias_hh_l0 is part of layer.params['b'] (bias_ih + bias_hh"),
    ("xn.layers.GRUCell(3, 4).bias_hh", "PyTorch's bias_hh is layer.params['bh']"),
    ("xn.layers.GRU(3, 4, num_layers=2).weight_hh_l1", "PyTorch's weight_hh_l1 is a level's: layer.layers()"),
])
def test_a_pytorch_parameter_or_grad_attribute_on_a_layer_or_model_says_what_to_write(expression, hint):
    """Outside a forward: ``fc.grad``, ``model.weight``, ``lstm.weight_ih_l0`` (the layer or model's own attribute
    lookup, which xpnet answers; ``p.grad``/``p.size()`` on the array itself is NumPy's, see docs/from-pytorch.md)."""
    net = xn.Model()
    net.fc1 = xn.layers.Linear(3, 4)
    with pytest.raises(AttributeError) as info:
        eval(expression, {"xn": xn, "net": net, "lstm": xn.layers.LSTM(3, 4)})  # noqa: S307 - fixed expressions
    assert hint in str(info.value) and "\n" not in str(info.value), str(info.value)
