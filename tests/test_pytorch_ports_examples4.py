"""pytorch/examples' word_language_model/generate.py, fast_neural_style's stylize() and mnist/main.py, ported to
xpnet as a PyTorch user writes them first, each run next to the same program in torch, float64, the same weights;
and PyTorch's tensor methods in a backward written out (``dy.sum(dim=1, keepdim=True)``, ``dy.flatten(1)``), which
now say NumPy's spelling as they do in a forward. No downloads: random ids for Wikitext-2, a random image for the
content picture, random (N, 1, 28, 28) images for MNIST."""

import io
import re

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn

from test_pytorch_ports_distill import TransformerNet, _torch_fast_neural_style  # the example's net, shrunk
from test_pytorch_ports_examples import _RNNModel, _torch_rnn_model  # word_language_model/model.py's RNNModel


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


# --- PyTorch's tensor methods in a backward written out -----------------------------------------------------------

class _Head(xn.Model):
    """A model whose backward holds one PyTorch tensor method, picked by ``line``, as a porter first writes it."""

    def __init__(self, line):
        super().__init__()
        self.fc, self.line = nn.Linear(3, 2, dtype="float64"), line

    def forward(self, x, train=True):
        return self.fc(x)

    def backward(self, dy):
        if self.line == "sum":
            dy = dy - dy.sum(dim=1, keepdim=True) / dy.shape[1]
        elif self.line == "var":
            dy = dy / dy.var(unbiased=False)
        elif self.line == "flatten":
            dy = dy.flatten(1)
        elif self.line == "clamp":
            dy = dy.clamp(min=0)
        elif self.line == "view":
            dy = dy.view(-1, 2)
        elif self.line == "cat":
            dy = np.cat([dy[:2], dy[2:]])
        elif self.line == "np.flatten":
            dy = np.flatten(dy, 1)
        else:
            dy = self._centred(dy)
        return self.fc.backward(dy)

    def _centred(self, dy):
        return dy - dy.mean(dim=0)


class _Centre(nn.Layer):
    """A layer of one's own: y = x - mean(x) over the features; its backward as PyTorch's reduction reads."""

    def forward(self, x, train=True):
        return x - x.mean(axis=1, keepdims=True)

    def backward(self, dy):
        return dy - dy.mean(dim=1, keepdim=True)


class _Centred(xn.Model):
    def __init__(self):
        super().__init__()
        self.centre = _Centre()

    def forward(self, x, train=True):
        return self.centre(x)

    def backward(self, dy):
        return self.centre.backward(dy)


@pytest.mark.parametrize("line, error, said", [
    ("sum", TypeError, r"'dim' \(line \d+: dy = dy - dy\.sum\(dim=1, keepdim=True\) / dy\.shape\[1\]\): NumPy's "
                       r"reductions take axis=, keepdims= and ddof=.*axis= for dim=, keepdims= for keepdim="),
    ("var", TypeError, r"'unbiased' \(line \d+: .*\): NumPy's reductions .*ddof=1 for unbiased=True"),
    ("flatten", TypeError, r"order must be str, not int \(line \d+: dy = dy\.flatten\(1\)\): NumPy's "
                           r"x\.flatten\(order\) flattens every axis.*keeps the first; write "
                           r"x\.reshape\(x\.shape\[0\], -1\); dy's way back through a forward's "
                           r"torch\.flatten\(x, 1\) is dy\.reshape\(x\.shape\)"),
    ("clamp", AttributeError, r"no attribute 'clamp' \(line \d+: dy = dy\.clamp\(min=0\)\): NumPy's arrays have no "
                              r"x\.clamp\(\), PyTorch's; write np\.clip\(x, a, b\).*np\.maximum\(dy, 0\) for "
                              r"dy\.clamp\(min=0\); the gradient through a forward's x\.clamp\(min=0\) is "
                              r"self\.relu\.backward\(dy\)"),
    ("view", ValueError, r"\(line \d+: dy = dy\.view\(-1, 2\)\): NumPy's x\.view\(\.\.\.\) takes a dtype.*write "
                        r"x\.reshape\(shape\)"),
    ("cat", AttributeError, r"module 'numpy' has no attribute 'cat' \(line \d+: dy = np\.cat\(\[dy\[:2\], "
                            r"dy\[2:\]\]\)\): numpy has no cat\(\), PyTorch's torch\.cat; write "
                            r"np\.concatenate\(arrays, axis=d\) for torch\.cat\(arrays, dim=d\)$"),
    ("np.flatten", AttributeError, r"numpy has no flatten\(\), PyTorch's torch\.flatten; write "
                                   r"x\.reshape\(x\.shape\[0\], -1\); dy's way back .* self\.flatten\.backward\(dy\)"),
    ("method", TypeError, r"_Head\._centred: .*'dim' \(line \d+: return dy - dy\.mean\(dim=0\)\): NumPy's reductions"),
], ids=["sum", "var", "flatten", "clamp", "view", "cat", "np.flatten", "method"])
def test_pytorchs_tensor_methods_in_a_backward_written_out_say_numpys_spelling(line, error, said):
    """``dy.sum(dim=1, keepdim=True)``, ``dy.var(unbiased=False)``, ``dy.flatten(1)``, ``dy.clamp(min=0)`` and
    ``dy.view(-1, 2)`` in a model's backward (or in a method of the model it calls) gave NumPy's bare "_sum() got an
    unexpected keyword argument 'dim'", "order must be str, not int" or "no attribute 'clamp'"; a forward's line was
    already answered with NumPy's spelling, a backward's now is too, naming the model, the method and the line.
    ``np.cat`` for ``torch.cat`` (NumPy's module has none) is answered alike, in a backward as in a forward. A
    backward's ``clamp`` and ``flatten`` get a backward's advice (the gradient through a forward's clamp or flatten),
    not a forward's (a ReLU or Flatten layer to call)."""
    model = _Head(line)
    y = model(np.ones((4, 3)))
    prefix = "" if line == "method" else r"_Head\.backward: "
    with pytest.raises(error, match=r"^" + prefix + r".*" + said):
        model.backward(np.ones_like(y))


def test_a_layer_of_ones_owns_backward_says_numpys_spelling_alone_and_inside_a_model():
    """A leaf layer of the user's whose backward reads ``dy.mean(dim=1, keepdim=True)``: called by itself or from a
    model's backward, the error names that layer's backward and its line (once, not again for the model's)."""
    said = (r"^_Centre\.backward: _mean\(\) got an unexpected keyword argument 'dim' \(line \d+: return dy - "
            r"dy\.mean\(dim=1, keepdim=True\)\): NumPy's reductions take axis=")
    layer = _Centre()
    layer(np.ones((2, 3)))
    with pytest.raises(TypeError, match=said):
        layer.backward(np.ones((2, 3)))
    model = _Centred()
    model(np.ones((2, 3)))
    with pytest.raises(TypeError, match=said) as caught:
        model.backward(np.ones((2, 3)))
    assert str(caught.value).count("NumPy's reductions") == 1


class _OwnError(xn.Model):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2, dtype="float64")

    def forward(self, x, train=True):
        return self.fc(x)

    def backward(self, dy):
        return self.fc.backward(dy[:, :1])


def test_other_errors_of_a_backward_written_out_pass_unchanged():
    """An error that is no PyTorch tensor method's (here xpnet's own check of dy's shape) comes as it was."""
    model = _OwnError()
    y = model(np.ones((4, 3)))
    with pytest.raises(ValueError) as caught:
        model.backward(np.ones_like(y))
    assert "NumPy's" not in str(caught.value) and "line" not in str(caught.value)


# --- pytorch/examples word_language_model/generate.py (its RNN branch) --------------------------------------------

def _generate(checkpoint, ntokens, words, temperature, draws, first):
    """generate.py's RNN branch as a PyTorch user writes it in xpnet: the whole model loaded from the open file
    main.py's ``torch.save(model, f)`` wrote (``xn.save(model, f)``), ``model.eval()``, ``init_hidden(1)``, a (1, 1)
    input, then under no_grad one word per step, the hidden state carried over. ``draws(word_weights)`` stands for
    ``torch.multinomial(word_weights, 1)[0]`` (the test gives torch's draws); ``first`` for ``torch.randint(ntokens,
    (1, 1))``. Returns each step's word_weights and the last hidden state."""
    with open(checkpoint, 'rb') as f:
        model = xn.load(f, map_location="cpu")                    # torch.load(f, map_location=device)
    model.eval()
    hidden = model.init_hidden(1)
    input = first.copy()                                          # torch.randint(ntokens, (1, 1), dtype=torch.long)
    weights = []
    with xn.no_grad():                                            # with torch.no_grad()
        for i in range(words):
            output, hidden = model(input, hidden)
            word_weights = np.exp(output.squeeze() / temperature)  # output.squeeze().div(temperature).exp()
            word_idx = draws(word_weights)
            input.fill(word_idx)                                  # input.fill_(word_idx)
            weights.append(word_weights)
    return weights, hidden


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU"])
def test_word_language_model_generate_samples_as_pytorchs(rnn_type, tmp_path):
    """generate.py (pytorch/examples word_language_model/generate.py, its RNN branch) after main.py's ``with
    open(args.save, 'wb') as f: torch.save(model, f)``: the xpnet model saved to an open file and loaded back from one
    (``xn.load(f, map_location=...)``, the user's RNNModel class rebuilt), in eval mode (its Dropout 0.2 off), 6 words
    at temperature 0.8, each step's word weights (``exp(log_softmax / T)``) and the last hidden state equal torch's
    RNNModel's in float64, both fed the words torch.multinomial drew. torch's model is not saved: its class is local
    to the test (generate.py's torch.load needs it importable, under safe_globals)."""
    torch = _torch()
    torch.manual_seed(1111)
    ntokens, words, temperature = 11, 6, 0.8
    theirs = _torch_rnn_model(torch)(rnn_type, ntokens, 6, 6, 2, dropout=0.2, tie_weights=True).double()
    if rnn_type == "LSTM":  # PyTorch's two biases are one in xpnet's LSTM: bias_hh folded into bias_ih
        with torch.no_grad():
            for k in range(2):
                getattr(theirs.rnn, f"bias_ih_l{k}").add_(getattr(theirs.rnn, f"bias_hh_l{k}"))
                getattr(theirs.rnn, f"bias_hh_l{k}").zero_()
    ours = _RNNModel(rnn_type, ntokens, 6, 6, 2, dropout=0.2, tie_weights=True).to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    with open(tmp_path / "model.pt", 'wb') as f:                  # main.py: torch.save(model, f)
        xn.save(ours, f)

    theirs.eval()
    hidden = theirs.init_hidden(1)
    input = torch.randint(ntokens, (1, 1), dtype=torch.long)
    first, drawn, expected = input.numpy().copy(), [], []
    with torch.no_grad():
        for i in range(words):
            output, hidden = theirs(input, hidden)
            word_weights = output.squeeze().div(temperature).exp().cpu()
            word_idx = torch.multinomial(word_weights, 1)[0]
            input.fill_(word_idx)
            drawn.append(int(word_idx))
            expected.append(word_weights.numpy())

    draws = iter(drawn)
    weights, our_hidden = _generate(tmp_path / "model.pt", ntokens, words, temperature, lambda w: next(draws), first)
    for step, (got, want) in enumerate(zip(weights, expected)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=0, err_msg=f"word {step}")
    for got, want in zip(our_hidden if rnn_type == "LSTM" else (our_hidden,),
                         hidden if rnn_type == "LSTM" else (hidden,)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-14)


# --- pytorch/examples fast_neural_style/neural_style/neural_style.py: stylize() ------------------------------------

def _old_checkpoint(torch, tnet, path):
    """tnet's state dict saved by torch.save with the running_mean and running_var (zeros, ones) that PyTorch before
    0.4.0 kept for every InstanceNorm, as the example's pretrained models carry them."""
    state_dict = tnet.state_dict()
    for k in list(state_dict):
        if re.search(r'in\d+\.weight$', k):
            state_dict[k[:-len("weight")] + "running_mean"] = torch.zeros_like(state_dict[k])
            state_dict[k[:-len("weight")] + "running_var"] = torch.ones_like(state_dict[k])
    torch.save(state_dict, path)


def test_fast_neural_style_stylize_loads_an_old_checkpoint_and_stylizes_as_pytorchs(tmp_path):
    """stylize() (pytorch/examples fast_neural_style/neural_style/neural_style.py) on a checkpoint of torch.save
    holding the InstanceNorms' pre-0.4 running statistics, as a PyTorch user writes it in xpnet: the first guesses
    are refused saying what to write (``xn.load(path)``: a file of torch.save, read by ``xn.read_torch_file``;
    ``style_model.load_state_dict``: PyTorch's names, loaded by ``xn.load_torch_state_dict``; that call before the
    script's deletion loop: the InstanceNorms track no running statistics, delete the keys or pass strict=False,
    where it said only "built with track_running_stats=False", which led to building the layers with it, and eval
    mode then normalises with those statistics: silently another image). Then the script's loop, the load,
    ``eval()`` and the forward under no_grad give torch's stylized image in float64 (the net shrunk as in
    test_pytorch_ports_distill, an 8 x 8 picture), before and after utils.save_image's clamp(0, 255); strict=False
    loads the same weights."""
    torch = _torch()
    torch.manual_seed(0)
    trained = _torch_fast_neural_style(torch)[0].double()
    path = tmp_path / "epoch_2_2026_style.model"
    _old_checkpoint(torch, trained, path)
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)  # utils.load_image's picture

    with torch.no_grad():                                             # stylize(), as it is
        content_image = torch.from_numpy(img).permute(2, 0, 1).double().div(255)  # ToTensor(), in float64
        content_image = content_image.mul(255).unsqueeze(0)
        style_model = _torch_fast_neural_style(torch)[0].double()     # TransformerNet()
        state_dict = torch.load(path)
        with pytest.raises(RuntimeError, match="running_mean"):
            style_model.load_state_dict(state_dict)
        for k in list(state_dict.keys()):
            if re.search(r'in\d+\.running_(mean|var)$', k):
                del state_dict[k]
        style_model.load_state_dict(state_dict)
        style_model.eval()
        expected = style_model(content_image).cpu()
    expected_img = expected[0].clone().clamp(0, 255).numpy()

    content_image = (img.transpose(2, 0, 1) / 255 * 255)[None]       # ToTensor, x.mul(255), unsqueeze(0)
    with xn.no_grad():
        style_model = TransformerNet().to(dtype="float64")
        with pytest.raises(xn.io.XpnetFileError, match=r"a file of PyTorch's torch\.save, which "
                                                        r"xn\.read_torch_file\(path\) reads"):
            xn.load(path)
        state_dict = xn.read_torch_file(path)                       # torch.load(args.model)
        with pytest.raises(ValueError, match=r"look like a PyTorch state dict's names .*xn\.load_torch_state_dict"):
            style_model.load_state_dict(state_dict)
        with pytest.raises(ValueError, match=r"PyTorch's 'in1\.running_mean', 'in1\.running_var', .*'in5\.running_var'"
                                             r": running statistics of an InstanceNorm that tracks none .*leave them "
                                             r"out .* or pass strict=False\. Build the layer with "
                                             r"track_running_stats=True only where"):
            xn.load_torch_state_dict(style_model, state_dict)
        for k in list(state_dict.keys()):
            if re.search(r'in\d+\.running_(mean|var)$', k):
                del state_dict[k]
        xn.load_torch_state_dict(style_model, state_dict)           # style_model.load_state_dict(state_dict)
        style_model.eval()
        output = style_model(content_image)
        lenient = TransformerNet().to(dtype="float64")
        xn.load_torch_state_dict(lenient, xn.read_torch_file(path), strict=False)
    np.testing.assert_allclose(output, expected.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.clip(output[0], 0, 255), expected_img, rtol=1e-10, atol=1e-10)  # utils.save_image
    for name, value in lenient.state_dict().items():
        np.testing.assert_array_equal(value, style_model.state_dict()[name], err_msg=name)


# --- pytorch/examples mnist/main.py: Net, train(), test(), Adadelta and StepLR, the saved state dict ---------------

class MnistNet(xn.Model):
    """mnist/main.py's Net: F.relu as one ReLU, F.max_pool2d(x, 2) as MaxPool2d(2), torch.flatten(x, 1) as
    Flatten (``np.flatten(x, 1)``, the first guess, is refused saying so), F.log_softmax(x, dim=1) as
    LogSoftmax(dim=1); ``p1``, ``p2``: the Dropouts' (0.25 and 0.5 there). x (N, 1, 28, 28) -> (N, 10)."""

    def __init__(self, p1=0.25, p2=0.5, flatten="layer"):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(p1)
        self.dropout2 = nn.Dropout(p2)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)
        self.relu, self.pool, self.flatten = nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
        self.log_softmax = nn.LogSoftmax(dim=1)
        self.flattening = flatten

    def forward(self, x, train=True):
        x = self.conv1(x)
        x = self.relu(x)
        x = self.conv2(x)
        x = self.relu(x)
        x = self.pool(x)
        x = self.dropout1(x)
        x = self.flatten(x) if self.flattening == "layer" else np.flatten(x, 1)  # torch.flatten(x, 1)
        x = self.fc1(x)
        x = self.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        return self.log_softmax(x)

    def backward(self, dy):  # the forward's calls in reverse, the ReLU's three last first
        dy = self.fc2.backward(self.log_softmax.backward(dy))
        dy = self.fc1.backward(self.relu.backward(self.dropout2.backward(dy)))
        dy = self.pool.backward(self.dropout1.backward(self.flatten.backward(dy)))
        dy = self.conv2.backward(self.relu.backward(dy))
        return self.conv1.backward(self.relu.backward(dy))


def _mnist_train(model, train_loader, optimizer, epoch, log_interval=1):
    """train() as a PyTorch user writes it in xpnet; returns the losses it logged."""
    model.train()
    logged = []
    for batch_idx, (data, target) in enumerate(train_loader.epoch(epoch)):
        optimizer.zero_grad()
        output = model(data)
        criterion = xn.losses.NLLLoss()                                 # F.nll_loss(output, target)
        loss = criterion(output, target)
        model.backward(criterion.backward())                            # loss.backward()
        optimizer.step()
        if batch_idx % log_interval == 0:
            logged.append(loss.item())
    return logged


def _mnist_test(model, test_loader):
    """test() as a PyTorch user writes it in xpnet: (test_loss, correct)."""
    model.eval()
    test_loss = 0
    correct = 0
    with xn.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += xn.losses.NLLLoss(reduction='sum')(output, target).item()  # F.nll_loss(..., 'sum')
            pred = output.argmax(axis=1, keepdims=True)                # output.argmax(dim=1, keepdim=True)
            correct += (pred == target.reshape(pred.shape)).sum().item()  # pred.eq(target.view_as(pred))
    test_loss /= test_loader.n                                         # len(test_loader.dataset)
    return test_loss, correct


def _torch_mnist(torch):
    """mnist/main.py's Net, train() (its log lines' loss kept) and test() (its sums returned), as they are there."""
    nn_, F = torch.nn, torch.nn.functional

    class Net(nn_.Module):
        def __init__(self):
            super(Net, self).__init__()
            self.conv1 = nn_.Conv2d(1, 32, 3, 1)
            self.conv2 = nn_.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn_.Dropout(0.25)
            self.dropout2 = nn_.Dropout(0.5)
            self.fc1 = nn_.Linear(9216, 128)
            self.fc2 = nn_.Linear(128, 10)

        def forward(self, x):
            x = self.conv1(x)
            x = F.relu(x)
            x = self.conv2(x)
            x = F.relu(x)
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = self.fc1(x)
            x = F.relu(x)
            x = self.dropout2(x)
            x = self.fc2(x)
            output = F.log_softmax(x, dim=1)
            return output

    def train(model, device, train_loader, optimizer, epoch, log_interval=1):
        model.train()
        logged = []
        for batch_idx, (data, target) in enumerate(train_loader):
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            output = model(data)
            loss = F.nll_loss(output, target)
            loss.backward()
            optimizer.step()
            if batch_idx % log_interval == 0:
                logged.append(loss.item())
        return logged

    def test(model, device, test_loader):
        model.eval()
        test_loss = 0
        correct = 0
        with torch.no_grad():
            for data, target in test_loader:
                data, target = data.to(device), target.to(device)
                output = model(data)
                test_loss += F.nll_loss(output, target, reduction='sum').item()
                pred = output.argmax(dim=1, keepdim=True)
                correct += pred.eq(target.view_as(pred)).sum().item()
        test_loss /= len(test_loader.dataset)
        return test_loss, correct

    return Net, train, test


def test_mnist_main_trains_tests_and_saves_as_pytorchs(tmp_path):
    """mnist/main.py (pytorch/examples) as a PyTorch user writes it in xpnet: the Net, train() and test() with
    ``xn.datasets.BatchIterator`` loaders (shuffle=False; ``test_loader.n`` for ``len(test_loader.dataset)``),
    ``Adadelta(model.parameters(), lr=1.0)``, ``StepLR(optimizer, step_size=1, gamma=0.7)`` stepped after each
    epoch, then ``xn.save(model.state_dict(), "mnist_cnn.pt")`` and the weights loaded back into a new Net. Two
    epochs of two batches of 2 random images, a test set of 3 (a last batch of 1): the logged losses, the test
    loss (``reduction='sum'`` over the set, divided by its size) and count, the weights and the learning rate equal
    torch's in float64. The Dropouts' p is 0 in both (torch's draws are not xpnet's). The first guess for
    ``torch.flatten(x, 1)``, ``np.flatten(x, 1)``, is refused naming the line and Flatten."""
    torch = _torch()
    torch.manual_seed(1)
    TorchNet, torch_train, torch_test = _torch_mnist(torch)
    theirs = TorchNet().double()
    theirs.dropout1.p = theirs.dropout2.p = 0.0
    model = MnistNet(p1=0.0, p2=0.0).to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    rng = np.random.default_rng(0)
    x_train, y_train = rng.random((4, 1, 28, 28)), rng.integers(0, 10, 4)
    x_test, y_test = rng.random((3, 1, 28, 28)), rng.integers(0, 10, 3)

    with pytest.raises(AttributeError, match=r"^MnistNet\.forward: module 'numpy' has no attribute 'flatten' \(line "
                                             r"\d+: .*np\.flatten\(x, 1\).*\): numpy has no flatten\(\), PyTorch's "
                                             r"torch\.flatten; write self\.flatten = xn\.layers\.Flatten\(\)"):
        MnistNet(flatten="np").to(dtype="float64")(x_test)

    train_loader = xn.datasets.BatchIterator(x_train, y_train, batch_size=2, shuffle=False)
    test_loader = xn.datasets.BatchIterator(x_test, y_test, batch_size=2, shuffle=False)
    optimizer = xn.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = xn.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    TensorDataset, DataLoader = torch.utils.data.TensorDataset, torch.utils.data.DataLoader
    t_train_loader = DataLoader(TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)), batch_size=2)
    t_test_loader = DataLoader(TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test)), batch_size=2)
    t_optimizer = torch.optim.Adadelta(theirs.parameters(), lr=1.0)
    t_scheduler = torch.optim.lr_scheduler.StepLR(t_optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, 3):
        logged = _mnist_train(model, train_loader, optimizer, epoch)
        tested = _mnist_test(model, test_loader)
        scheduler.step()
        t_logged = torch_train(theirs, "cpu", t_train_loader, t_optimizer, epoch)
        t_tested = torch_test(theirs, "cpu", t_test_loader)
        t_scheduler.step()
        np.testing.assert_allclose(logged, t_logged, rtol=1e-10)
        assert tested[0] == pytest.approx(t_tested[0], rel=1e-10) and tested[1] == t_tested[1]
        assert optimizer.param_groups[0]["lr"] == pytest.approx(t_optimizer.param_groups[0]["lr"], rel=1e-15)
    for name, value in xn.torch_state_dict(model).items():
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)

    xn.save(model.state_dict(), tmp_path / "mnist_cnn.pt")             # torch.save(model.state_dict(), ...)
    loaded = MnistNet().to(dtype="float64")
    loaded.load_state_dict(xn.load(tmp_path / "mnist_cnn.pt"))
    assert _mnist_test(loaded, test_loader) == tested
