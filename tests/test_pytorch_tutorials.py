"""What tripped while porting PyTorch's beginner tutorials (quickstart, build model, optimization, save and
load, data, CIFAR-10 classifier, "What is torch.nn really?") to xpnet, written as a PyTorch user would."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L


class _SharedReLU(xn.Model):
    """The CIFAR-10 tutorial's habit: one activation object applied after each layer."""

    def __init__(self, width=8):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = L.Linear(4, width), L.Linear(width, width), L.Linear(width, 3)
        self.relu = L.ReLU()

    def forward(self, x, train=True):
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))

    def backward(self, dy):
        return self.fc1.backward(self.relu.backward(self.fc2.backward(self.relu.backward(self.fc3.backward(dy)))))


def _xt():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5)


def test_a_layer_called_twice_in_one_training_forward_is_refused_naming_it():
    """With equal widths the second use's ReLU mask silently served both backwards (wrong gradients); with
    different widths the error came later, in backward, as a dy of the wrong shape."""
    x, t = _xt()
    for width in (8, 6):
        xn.manual_seed(0)
        model = _SharedReLU(width)
        for call in (lambda: model(x), lambda: model.forward(x, train=True),
                     lambda: xn.train(model, (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=5,
                                      progress=False, device="cpu")):
            with pytest.raises(RuntimeError, match=r"^_SharedReLU.forward calls the layer 'relu' \(ReLU\) a second "
                                                   r"time in training mode; .*give each use its own object "
                                                   r"\(self.relu1 = xn.layers.ReLU\(...\), self.relu2 = ...\)$"):
                call()
        assert model.predict(x).shape == (5, 3)  # evaluation mode: no backward follows
        model.eval()
        assert model(x).shape == (5, 3)


def test_a_sub_model_called_twice_is_refused_too_and_the_record_ends_with_the_forward():
    x, _ = _xt()
    block = xn.Sequential(L.Linear(4, 4), L.Tanh())

    class Twice(xn.Model):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, x, train=True):
            return self.block(self.block(x))

    with pytest.raises(RuntimeError, match=r"^Twice.forward calls the layer 'block' \(Sequential\) a second time.*"
                                           r"\(self.block1 = Sequential\(...\)"):
        Twice()(x)
    assert block(block(x)).shape == (5, 4)  # outside any model's forward, each call stands alone
    relu = L.ReLU()
    assert np.array_equal(relu(relu(x)), np.maximum(x, 0))


def test_a_layer_with_weights_called_twice_says_how_to_share_them_as_well():
    """pytorch/examples' siamese network runs one backbone on both images, time_sequence_prediction one Linear at
    every step: the hint said only to make one object per use, which would train two sets of weights."""
    x, _ = _xt()

    class Siamese(xn.Model):
        def __init__(self):
            super().__init__()
            self.backbone = xn.Sequential(L.Linear(4, 3), L.Tanh())

        def forward(self, x1, x2, train=True):
            return self.backbone(x1) - self.backbone(x2)

    with pytest.raises(RuntimeError, match=r"^Siamese.forward calls the layer 'backbone' \(Sequential\) .*"
                                           r"self.backbone2 = ...\); to share its weights between the uses \(a siamese "
                                           r"network, .*call it once on the inputs joined along the batch axis"):
        Siamese()(x, -x)


@pytest.mark.parametrize("make, steps", [(L.CosineSimilarity, None), (lambda: L.Bilinear(4, 4, 2), None),
                                         (L.Attention, 3)], ids=["CosineSimilarity", "Bilinear", "Attention"])
def test_a_layer_of_two_inputs_called_twice_is_refused_as_one_of_one(make, steps):
    """A two-input layer (it keeps one call's inputs for its backward) called twice in one training forward
    handed the first use's backward the second's inputs, silently. The book's Attention takes (N, T, H)."""
    x, _ = _xt()
    x = x if steps is None else np.stack([x] * steps, axis=1) * np.arange(1, steps + 1, dtype=x.dtype)[:, None]
    pair = make()

    class Siamese(xn.Model):
        def __init__(self):
            super().__init__()
            self.pair = pair

        def forward(self, x, train=True):
            return self.pair(x, x) + self.pair(x, -x)

    with pytest.raises(RuntimeError, match=r"^Siamese.forward calls the layer 'pair' \(\w+\) a second time"):
        Siamese()(x)
    assert Siamese().forward(x, train=False).shape[0] == 5  # evaluation: no backward follows


def test_multihead_attention_called_twice_is_refused_and_a_decoder_layers_two_attentions_are_not():
    """self.mha(x, x, x) twice in one training forward handed the first use's backward the second's cache,
    silently: MultiheadAttention's __call__ recorded no use. A decoder layer's self- and cross-attention are two
    objects, called by forward, so a model calling the layer once is not refused."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)

    class Twice(xn.Model):
        def __init__(self):
            super().__init__()
            self.mha = L.MultiheadAttention(4, 2)

        def forward(self, x, train=True):
            return self.mha(x, x, x)[0] + self.mha(x, -x, -x)[0]

    class Decoder(xn.Model):
        def __init__(self):
            super().__init__()
            self.layer = L.TransformerDecoderLayer(4, 2, dim_feedforward=8)

        def forward(self, tgt, memory, train=True):
            return self.layer(tgt, memory)

    with pytest.raises(RuntimeError, match=r"^Twice.forward calls the layer 'mha' \(MultiheadAttention\) a second "
                                           r"time.*self.mha2 = \.\.\.\); to share its weights"):
        Twice()(x)
    assert Twice().forward(x, train=False).shape == x.shape  # evaluation: no backward follows
    assert Decoder()(x, -x).shape == x.shape


@pytest.mark.parametrize("make", [lambda: L.LSTM(4, 3), lambda: L.GRU(4, 3)], ids=["LSTM", "GRU"])
def test_a_single_recurrent_layer_called_twice_is_refused_as_a_stacked_one(make):
    """self.lstm(x) twice in one training forward: LSTM(4, 3, num_layers=2) was refused, the single LSTM handed
    the first use's backward the second's cache, silently (its __call__ recorded no use)."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)

    class Twice(xn.Model):
        def __init__(self):
            super().__init__()
            self.rnn = make()

        def forward(self, x, train=True):
            return self.rnn(x) + self.rnn(-x)

    with pytest.raises(RuntimeError, match=r"^Twice.forward calls the layer 'rnn' \((LSTM|GRU)\) a second time"):
        Twice()(x)
    assert Twice().forward(x, train=False).shape == (2, 3, 3)  # evaluation: no backward follows


@pytest.mark.parametrize("make", [lambda: L.GRU(4, 3, stateful=True), lambda: L.LSTM(4, 3, num_layers=2)],
                         ids=["GRU", "LSTM-stack"])
def test_a_recurrent_layer_called_at_each_step_of_a_loop_is_pointed_to_the_whole_sequence_or_its_cell(make):
    """PyTorch's seq2seq tutorial decoder calls its GRU once per time step: the hint said to join the inputs along
    the batch axis, which a loop whose steps depend on each other cannot do."""
    class Loop(xn.Model):
        def __init__(self):
            super().__init__()
            self.rnn = make()

        def forward(self, x, train=True):
            return [self.rnn(x[:, t:t + 1]) for t in range(x.shape[1])][-1]

    cell = "GRUCell" if "GRU" in repr(make()) else "LSTMCell"
    with pytest.raises(RuntimeError, match=r"over the steps of a loop, run it once on the whole sequence \(N, T, "
                                           rf"features\), stateful=True .*xn\.layers\.{cell}"):
        Loop()(np.ones((2, 3, 4), np.float32))


def test_a_forward_without_train_says_to_add_it_wherever_it_is_called():
    """The tutorials' forward(self, x): model(x) said "forward(x, train=True) takes 1 input, got 1" and pointed
    to initial states; predict gave Python's bare "unexpected keyword argument 'train'"."""
    class NeuralNetwork(xn.Model):
        def __init__(self):
            super().__init__()
            self.flatten, self.linear = L.Flatten(), L.Linear(16, 3)

        def forward(self, x):
            return self.linear(self.flatten(x))

    model, x = NeuralNetwork(), np.zeros((2, 4, 4), np.float32)
    hint = (r"NeuralNetwork.forward must take train= \(write def forward\(self, x, train=True\) and pass train on to "
            r"the layers; and backward\(self, dy\), returning dx: xpnet has no autograd\)")
    with pytest.raises(TypeError, match="^" + hint):
        model(x)
    with pytest.raises(TypeError, match="^predict: " + hint):
        model.predict(x)
    with pytest.raises(TypeError, match="^train: " + hint):
        xn.train(model, (x, np.zeros(2, int)), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=2)


def test_saving_a_state_dict_the_quickstarts_way_says_what_to_write_and_that_works(tmp_path, monkeypatch):
    """torch.save(model.state_dict(), "model.pth") then model.load_state_dict(torch.load("model.pth")): xn.save said
    only "expected an xn.Model, got dict", and load_state_dict given the model xn.load rebuilt "got Sequential"."""
    monkeypatch.chdir(tmp_path)
    xn.manual_seed(0)
    model, x = xn.Sequential(L.Linear(4, 3)), _xt()[0]
    with pytest.raises(TypeError, match=r"^xn.save: expected an xn.Model or xn.Sequential, got dict; xn.save writes "
                                        r"the whole model.*numpy.savez\('model.npz', \*\*model.state_dict\(\)\), then "
                                        r"model.load_state_dict\(numpy.load\('model.npz'\)\)$"):
        xn.save(model.state_dict(), "model.pth")
    np.savez("model.npz", **model.state_dict())  # the recipe the message gives
    fresh = xn.Sequential(L.Linear(4, 3))
    fresh.load_state_dict(np.load("model.npz"))
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    xn.save(model, "model.pth")
    with pytest.raises(TypeError, match=r"got Sequential; xn.load\(path\) rebuilds the whole model, ready to use"):
        fresh.load_state_dict(xn.load("model.pth"))
    fresh.load_state_dict(xn.load("model.pth").state_dict())
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_train_false_reaches_layers_called_the_pytorch_way():
    """model(x, train=False) and model.forward(x, train=False) (or the book's forward(x, False), by position) on a
    model in training mode ran self.drop(x) in training mode (it reads its own flag): units dropped where predict
    drops none."""
    class Net(xn.Model):
        def __init__(self):
            super().__init__()
            self.fc, self.drop, self.bn = L.Linear(4, 4), L.Dropout(0.5), L.BatchNorm(4)

        def forward(self, x, train=True):
            return self.bn(self.drop(self.fc(x)))

    x = _xt()[0]
    xn.manual_seed(0)
    model = Net()
    expected = model.predict(x)
    np.testing.assert_array_equal(model(x, train=False), expected)
    np.testing.assert_array_equal(model.forward(x, train=False), expected)
    np.testing.assert_array_equal(model.forward(x, False), expected)
    assert model.training and model.drop.training and model.bn.training  # the mode is the model's again after
    np.testing.assert_array_equal(model.bn.buffers["running_mean"], np.zeros(4, np.float32))
    assert not np.array_equal(model(x), expected)


class _Logistic(xn.Model):
    """nn_tutorial's Mnist_Logistic with nn.Parameter dropped: its arrays are plain attributes."""

    def __init__(self):
        super().__init__()
        self.weights = np.zeros((4, 3), np.float32)
        self.bias = np.zeros(3, np.float32)

    def forward(self, xb, train=True):
        return xb @ self.weights + self.bias


def test_a_model_whose_arrays_are_attributes_not_parameters_says_so_before_training():
    """Every optimizer and xn.train took it and trained nothing, silently: no parameters to update."""
    x, t = _xt()
    hint = (r"_Logistic has no parameters to train: weights, bias are array attributes, which an optimizer does not "
            r"see \(PyTorch's nn.Parameter\); put each in self.params \(self.params\['weights'\] = ...\)")
    for call in (lambda m: m.parameters(), lambda m: xn.optim.SGD(m.parameters(), lr=0.5),
                 lambda m: xn.optim.SGD(m, lr=0.5).step(), lambda m: xn.optim.Adam(1e-3).step(m),
                 lambda m: xn.train(m, (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=5)):
        with pytest.raises(TypeError, match=hint):
            call(_Logistic())
    assert _Logistic().predict(x).shape == (5, 3)  # it still runs; only training needs parameters
    assert xn.Sequential(L.ReLU()).parameters() == [] and xn.optim.SGD(xn.Sequential(L.ReLU()), lr=0.1).lr == 0.1


def test_an_unshuffled_batch_iterator_iterates_as_a_dataloader_without_shuffle():
    """The quickstart's test loop, for X, y in test_dataloader: refused before, also where no shuffle was asked."""
    x, t = _xt()
    loader = xn.datasets.BatchIterator(x, t, batch_size=2, shuffle=False)
    batches = [(xb, tb) for xb, tb in loader]
    assert [len(tb) for _, tb in batches] == [2, 2, 1] and len(batches) == len(loader)
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), x)
    assert [tb.tolist() for _, tb in batches] == [tb.tolist() for _, tb in loader.epoch(3)]
    with pytest.raises(TypeError, match=r"for xb, yb in batches.epoch\(epoch\): each epoch is its own seeded shuffle"):
        iter(xn.datasets.BatchIterator(x, t, batch_size=2))
