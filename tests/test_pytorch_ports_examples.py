"""pytorch/examples programs ported to xpnet as a PyTorch user writes them first (word_language_model,
siamese_network, time_sequence_prediction, super_resolution), each checked against the same program in torch,
float64, the same initial weights, a few steps; and the hints that porting them added. The data are tiny
synthetic stand-ins of the same shape and kind (the machine has no internet)."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


# --- word_language_model ------------------------------------------------------------------------------------------

class _RNNModel(xn.Model):
    """word_language_model/model.py's RNNModel (LSTM, GRU, RNN_TANH or RNN_RELU, time first, optionally tied), as
    docs/from-pytorch.md ports it: the hidden state passed in and returned, backward written out."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super().__init__()
        self.ntoken = ntoken
        self.drop = L.Dropout(dropout)
        self.encoder = L.Embedding(ntoken, ninp)
        if rnn_type in ['LSTM', 'GRU']:
            self.rnn = getattr(L, rnn_type)(ninp, nhid, num_layers=nlayers, dropout=dropout, batch_first=False,
                                            return_state=True)
        else:
            nonlinearity = {'RNN_TANH': 'tanh', 'RNN_RELU': 'relu'}[rnn_type]
            self.rnn = L.RNN(ninp, nhid, num_layers=nlayers, nonlinearity=nonlinearity, dropout=dropout,
                             batch_first=False, return_state=True)
        self.decoder = L.TiedLinear(self.encoder) if tie_weights else L.Linear(nhid, ntoken)
        self.log_softmax = L.LogSoftmax(dim=1)
        self.init_weights()
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def init_weights(self):
        initrange = 0.1
        xn.init.uniform_(self.encoder.weight, -initrange, initrange)
        xn.init.zeros_(self.decoder.bias)
        xn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden, train=True):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        self.decoded_shape = decoded.shape
        return self.log_softmax(decoded.reshape(-1, self.ntoken)), hidden

    def backward(self, dy):
        dy = self.decoder.backward(self.log_softmax.backward(dy).reshape(self.decoded_shape))
        self.encoder.backward(self.drop.backward(self.rnn.backward(self.drop.backward(dy))))

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        zeros = np.zeros((self.nlayers, bsz, self.nhid), dtype=weight.dtype)
        return (zeros, zeros.copy()) if self.rnn_type == "LSTM" else zeros


def _torch_rnn_model(torch):
    """word_language_model/model.py's RNNModel as it is there (its ValueError for another rnn_type and its
    TransformerModel left out)."""
    nn, F = torch.nn, torch.nn.functional

    class RNNModel(nn.Module):
        def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
            super(RNNModel, self).__init__()
            self.ntoken = ntoken
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(ntoken, ninp)
            if rnn_type in ['LSTM', 'GRU']:
                self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
            else:
                nonlinearity = {'RNN_TANH': 'tanh', 'RNN_RELU': 'relu'}[rnn_type]
                self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
            self.decoder = nn.Linear(nhid, ntoken)
            if tie_weights:
                self.decoder.weight = self.encoder.weight
            self.init_weights()
            self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

        def init_weights(self):
            initrange = 0.1
            nn.init.uniform_(self.encoder.weight, -initrange, initrange)
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -initrange, initrange)

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            output = self.drop(output)
            decoded = self.decoder(output)
            decoded = decoded.view(-1, self.ntoken)
            return F.log_softmax(decoded, dim=1), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            if self.rnn_type == 'LSTM':
                return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                        weight.new_zeros(self.nlayers, bsz, self.nhid))
            return weight.new_zeros(self.nlayers, bsz, self.nhid)

    return RNNModel


def _batchify(data, bsz):
    nbatch = data.shape[0] // bsz
    return data[:nbatch * bsz].reshape(bsz, -1).T.copy()


def _get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


@pytest.mark.parametrize("rnn_type, tied, use_optimizer", [("LSTM", True, False), ("GRU", False, False),
                                                           ("GRU", True, True), ("RNN_RELU", False, False)])
def test_word_language_model_trains_and_evaluates_as_pytorchs(rnn_type, tied, use_optimizer):
    """main.py's train() (repackage_hidden between batches, clip_grad_norm_, the manual SGD update or with
    --use-optimizer AdamW) over a batchified (T, N) corpus, then evaluate() in eval mode, equal to torch in
    float64. The corpus: random ids.
    PyTorch's LSTM and RNN have two biases where xpnet's have one (b = bias_ih + bias_hh): torch's bias_hh is
    folded into bias_ih and frozen, so that its SGD moves the same one bias (docs/from-pytorch.md, RNN, LSTM, GRU)."""
    torch = _torch()
    torch.manual_seed(0)
    ntokens, lr, clip, bptt = 11, 20.0, 0.25, 4
    theirs = _torch_rnn_model(torch)(rnn_type, ntokens, 6, 6, 2, dropout=0.0, tie_weights=tied).double()
    if rnn_type != "GRU":
        with torch.no_grad():
            for k in range(2):
                getattr(theirs.rnn, f"bias_ih_l{k}").add_(getattr(theirs.rnn, f"bias_hh_l{k}"))
                getattr(theirs.rnn, f"bias_hh_l{k}").zero_().requires_grad_(False)
    ours = _RNNModel(rnn_type, ntokens, 6, 6, 2, dropout=0.0, tie_weights=tied).to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    rng = np.random.default_rng(0)
    train_data, val_data = _batchify(rng.integers(0, ntokens, 58), 3), _batchify(rng.integers(0, ntokens, 25), 2)
    criterion, tcriterion = xn.losses.NLLLoss(), torch.nn.NLLLoss()
    if use_optimizer:
        lr = 0.01
        optimizer, toptimizer = xn.optim.AdamW(ours.parameters(), lr=lr), torch.optim.AdamW(theirs.parameters(), lr=lr)

    ours.train(), theirs.train()
    hidden, thidden = ours.init_hidden(3), theirs.init_hidden(3)
    for i in range(0, train_data.shape[0] - 1, bptt):
        data, targets = _get_batch(train_data, i, bptt)
        optimizer.zero_grad() if use_optimizer else ours.zero_grad()
        output, hidden = ours(data, hidden)
        loss = criterion(output, targets)
        ours.backward(criterion.backward())
        norm = xn.optim.clip_grad_norm(ours.parameters(), clip)
        if use_optimizer:
            optimizer.step()
        else:
            grads = ours.named_grads()
            for name, p in ours.named_params().items():
                p -= lr * grads[name]

        toptimizer.zero_grad() if use_optimizer else theirs.zero_grad()
        thidden = thidden.detach() if isinstance(thidden, torch.Tensor) else tuple(h.detach() for h in thidden)
        toutput, thidden = theirs(torch.from_numpy(data), thidden)
        tloss = tcriterion(toutput, torch.from_numpy(targets))
        tloss.backward()
        tnorm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), clip)
        if use_optimizer:
            toptimizer.step()
        else:
            for p in theirs.parameters():
                if p.grad is not None:
                    p.data.add_(p.grad, alpha=-lr)
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
        assert float(norm) == pytest.approx(tnorm.item(), rel=1e-10)

    for name, value in xn.torch_state_dict(ours).items():
        expected = theirs.state_dict()[name].numpy()
        if name.startswith("rnn.bias_hh") and rnn_type != "GRU":
            continue  # one bias in xpnet: compared through bias_ih below
        np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12, err_msg=name)

    ours.eval(), theirs.eval()
    hidden, thidden, total, ttotal = ours.init_hidden(2), theirs.init_hidden(2), 0.0, 0.0
    with xn.no_grad(), torch.no_grad():
        for i in range(0, val_data.shape[0] - 1, bptt):
            data, targets = _get_batch(val_data, i, bptt)
            output, hidden = ours(data, hidden)
            total += len(data) * criterion(output, targets).item()
            toutput, thidden = theirs(torch.from_numpy(data), thidden)
            ttotal += len(data) * tcriterion(toutput, torch.from_numpy(targets)).item()
    assert total == pytest.approx(ttotal, rel=1e-10)


def test_a_relu_rnn_saves_and_loads_as_relu(tmp_path):
    """nonlinearity='relu' is kept by model files (the stack's and the cell's too)."""
    xn.manual_seed(0)
    model = xn.Sequential(L.Embedding(7, 4), L.RNN(4, 5, num_layers=2, nonlinearity="relu"), L.Linear(5, 7))
    ids = np.random.default_rng(0).integers(0, 7, (2, 6))
    xn.save(model, tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz")
    assert loaded[1].l1.nonlinearity == "relu"
    np.testing.assert_array_equal(loaded.predict(ids), model.predict(ids))
    tanh = xn.Sequential(L.Embedding(7, 4), L.RNN(4, 5, num_layers=2), L.Linear(5, 7))
    tanh.load_state_dict(model.state_dict())
    assert not np.allclose(tanh.predict(ids), model.predict(ids))  # the same weights: relu made the difference
    assert L.RNNCell(3, 4, nonlinearity="relu").config()["nonlinearity"] == "relu"


def test_a_time_first_batch_given_to_a_batch_first_recurrent_layer_says_batch_first_false():
    """word_language_model's (T, N) batches and (num_layers, N, H) hidden into xpnet's LSTM, batch first by
    default: the error said "hx holds 3 sequences but the input has 4; give hx the input's N"."""
    lstm = L.LSTM(5, 6, num_layers=2, return_state=True)
    x, h0 = np.zeros((4, 3, 5), np.float32), np.zeros((2, 3, 6), np.float32)
    with pytest.raises(ValueError, match=r"hx holds 3 sequences but the input has 4; give hx the input's N; or, "
                                         r"where the input \(4, 3, 5\) is time first, \(T, N, 5\) \(PyTorch's "
                                         r"default\), build the layer with batch_first=False: it reads \(N, T, 5\)"):
        lstm(x, (h0, h0))
    out, (h, c) = L.LSTM(5, 6, num_layers=2, return_state=True, batch_first=False)(x, (h0, h0))
    assert out.shape == (4, 3, 6) and h.shape == (2, 3, 6)


def test_a_tied_output_layer_has_pytorchs_weight_and_bias():
    """init_weights' nn.init.zeros_(self.decoder.bias) and uniform_(self.decoder.weight, ...) on the tied decoder:
    TiedLinear.bias was its bool flag ("tensor must be an array ..., got a bool") and it had no weight."""
    emb = L.Embedding(7, 4)
    tied = L.TiedLinear(emb)
    assert tied.weight is emb.params["W"] and tied.bias is tied.params["b"] and tied.has_bias
    xn.init.uniform_(tied.weight, 0.5, 0.6)
    assert float(emb.params["W"].min()) >= 0.5
    assert L.TiedLinear(emb, bias=False).bias is None


def test_next_of_parameters_gives_them_one_by_one():
    """init_hidden's weight = next(self.parameters()) raised "'Parameters' object is not an iterator"."""
    model = xn.Sequential(L.Linear(2, 3), L.Linear(3, 1))
    params = model.parameters()
    assert next(params) is model[0].params["W"] and next(params) is model[0].params["b"]
    assert next(model.parameters()) is model[0].params["W"] and len(list(params)) == 4


# --- siamese_network ----------------------------------------------------------------------------------------------

class _SiameseNetwork(xn.Model):
    """siamese_network/main.py's SiameseNetwork as docs/from-pytorch.md ports it, its ResNet-18 replaced by a small
    backbone (conv, BatchNorm, ReLU, global pooling) that torch writes without torchvision, its head cut off the
    PyTorch way: a Sequential of all its children but the last."""

    def __init__(self, width=4):
        super().__init__()
        self.resnet = xn.Sequential(L.Conv2d(1, width, 3, stride=2, padding=1, bias=False), L.BatchNorm(width),
                                    L.ReLU(), L.AdaptiveAvgPool2d(1), L.Linear(width, 10))
        self.fc_in_features = self.resnet[-1].in_features
        self.resnet = xn.Sequential(*list(self.resnet.named_children().values())[:-1])
        self.fc = xn.Sequential(L.Linear(self.fc_in_features * 2, 6), L.ReLU(), L.Linear(6, 1))
        self.sigmoid = L.Sigmoid()
        self.resnet.apply(self.init_weights)
        self.fc.apply(self.init_weights)

    def init_weights(self, m):
        if isinstance(m, L.Linear):
            xn.init.xavier_uniform_(m.weight)
            xn.init.constant_(m.bias, 0.01)

    def forward_once(self, x):
        output = self.resnet(x)
        return output.reshape(output.shape[0], -1)

    def forward(self, input1, input2, train=True):
        output1 = self.forward_once(input1)
        output2 = self.forward_once(input2)
        output = np.concatenate((output1, output2), 1)
        return self.sigmoid(self.fc(output))

    def backward(self, dy):
        n = self.fc_in_features
        dy = self.fc.backward(self.sigmoid.backward(dy.reshape(-1, 1)))   # the loss took outputs.squeeze()
        dx2 = self.resnet.backward(dy[:, n:].reshape(-1, n, 1, 1))       # the second call's backward first
        dx1 = self.resnet.backward(dy[:, :n].reshape(-1, n, 1, 1))
        return dx1, dx2


def test_siamese_network_one_backbone_called_twice_trains_as_pytorchs():
    """main.py's train() and test(): the backbone applied to both images in one forward (its weights' gradients
    summed over the two calls, each call's BatchNorm on its own batch), features concatenated, BCELoss, Adadelta
    and StepLR; then eval mode's loss and predictions. Equal to torch in float64; the images: random pairs."""
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(0)
    resnet = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1))
    fc = nn.Sequential(nn.Linear(8, 6), nn.ReLU(inplace=True), nn.Linear(6, 1))

    def init_weights(m):
        if isinstance(m, nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            m.bias.data.fill_(0.01)

    fc.apply(init_weights)
    theirs = nn.ModuleDict({"resnet": resnet, "fc": fc}).double()

    def their_model(input1, input2):
        output1 = resnet(input1)
        output2 = resnet(input2)
        output = torch.cat((output1.view(output1.size()[0], -1), output2.view(output2.size()[0], -1)), 1)
        return torch.sigmoid(fc(output))

    ours = _SiameseNetwork().to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    criterion, tcriterion = xn.losses.BCELoss(), nn.BCELoss()
    optimizer, toptimizer = xn.optim.Adadelta(ours.parameters(), lr=1.0), torch.optim.Adadelta(theirs.parameters(),
                                                                                            lr=1.0)
    scheduler = xn.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    tscheduler = torch.optim.lr_scheduler.StepLR(toptimizer, step_size=1, gamma=0.7)
    rng = np.random.default_rng(0)
    for epoch in range(2):
        ours.train(), theirs.train()
        for _ in range(2):
            images_1, images_2 = rng.random((4, 1, 8, 8)), rng.random((4, 1, 8, 8))
            targets = np.array([1.0, 0.0, 1.0, 0.0])
            optimizer.zero_grad()
            loss = criterion(ours(images_1, images_2).squeeze(), targets)
            ours.backward(criterion.backward())
            optimizer.step()
            toptimizer.zero_grad()
            tloss = tcriterion(their_model(torch.from_numpy(images_1), torch.from_numpy(images_2)).squeeze(),
                               torch.from_numpy(targets))
            tloss.backward()
            toptimizer.step()
            assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
        scheduler.step(), tscheduler.step()
    for name, value in xn.torch_state_dict(ours).items():
        if not name.endswith("num_batches_tracked"):  # xpnet counts it with momentum=None only
            np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    ours.eval(), theirs.eval()
    images_1, images_2 = rng.random((6, 1, 8, 8)), rng.random((6, 1, 8, 8))
    with xn.no_grad(), torch.no_grad():
        outputs = ours(images_1, images_2).squeeze()
        toutputs = their_model(torch.from_numpy(images_1), torch.from_numpy(images_2)).squeeze()
    np.testing.assert_allclose(outputs, toutputs.numpy(), rtol=1e-10)
    np.testing.assert_array_equal(np.where(outputs > 0.5, 1, 0), torch.where(toutputs > 0.5, 1, 0).numpy())



def test_a_loss_value_sums_as_a_0d_tensor():
    """siamese_network's test(): test_loss += criterion(outputs, targets).sum().item() said "'LossValue' object has
    no attribute 'sum'"; sum, mean and detach of a 0-d tensor give it back."""
    value = xn.losses.BCELoss()(np.array([0.2, 0.7]), np.array([0.0, 1.0]))
    for same in (value.sum(), value.mean(), value.detach()):
        assert same.item() == value.item() == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2)
    with pytest.raises(AttributeError, match="xpnet has no autograd"):
        value.sum().backward()


# --- time_sequence_prediction -------------------------------------------------------------------------------------

class _Sequence(xn.Model):
    """time_sequence_prediction/train.py's Sequence as docs/from-pytorch.md ports it: two LSTMCells and a Linear
    stepped over time, ``future`` extra steps feeding the output back; the backward through the steps written out."""

    def __init__(self, hidden=51):
        super().__init__()
        self.hidden = hidden
        self.lstm1 = L.LSTMCell(1, hidden)
        self.lstm2 = L.LSTMCell(hidden, hidden)
        self.linear = L.Linear(hidden, 1)

    def forward(self, input, future=0, train=True):
        outputs = []
        h_t = np.zeros((input.shape[0], self.hidden), dtype=np.float64)
        c_t = np.zeros((input.shape[0], self.hidden), dtype=np.float64)
        h_t2 = np.zeros((input.shape[0], self.hidden), dtype=np.float64)
        c_t2 = np.zeros((input.shape[0], self.hidden), dtype=np.float64)
        for input_t in np.split(input, input.shape[1], axis=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for i in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        self.future = future
        return np.concatenate(outputs, axis=1)

    def backward(self, dy):
        dh = dc = dh2 = dc2 = None
        dfed = 0.0  # the gradient of an output fed back as the next step's input (the future steps)
        for t in reversed(range(dy.shape[1])):
            dh_t2 = self.linear.backward(dy[:, t:t + 1] + dfed)
            dx2, (dh2, dc2) = self.lstm2.backward(dh_t2 if dh2 is None else dh_t2 + dh2, dc2)
            dx1, (dh, dc) = self.lstm1.backward(dx2 if dh is None else dx2 + dh, dc)
            dfed = dx1 if t >= dy.shape[1] - self.future else 0.0


def _torch_sequence(torch, hidden):
    """train.py's Sequence as it is there (51 hidden units made a parameter)."""
    nn = torch.nn

    class Sequence(nn.Module):
        def __init__(self):
            super(Sequence, self).__init__()
            self.lstm1 = nn.LSTMCell(1, hidden)
            self.lstm2 = nn.LSTMCell(hidden, hidden)
            self.linear = nn.Linear(hidden, 1)

        def forward(self, input, future=0):
            outputs = []
            h_t = torch.zeros(input.size(0), hidden, dtype=torch.double)
            c_t = torch.zeros(input.size(0), hidden, dtype=torch.double)
            h_t2 = torch.zeros(input.size(0), hidden, dtype=torch.double)
            c_t2 = torch.zeros(input.size(0), hidden, dtype=torch.double)
            for input_t in input.split(1, dim=1):
                h_t, c_t = self.lstm1(input_t, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                output = self.linear(h_t2)
                outputs += [output]
            for i in range(future):
                h_t, c_t = self.lstm1(output, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                output = self.linear(h_t2)
                outputs += [output]
            return torch.cat(outputs, dim=1)

    return Sequence()


def _sine_waves(n=6, length=16, T=20):
    """generate_sine_wave.py's data, shorter: n shifted sine waves of ``length`` points, float64."""
    rng = np.random.RandomState(2)
    x = np.empty((n, length), 'int64')
    x[:] = np.array(range(length)) + rng.randint(-4 * T, 4 * T, n).reshape(n, 1)
    return np.sin(x / 1.0 / T).astype('float64')


def _sequences(hidden=8):
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_sequence(torch, hidden).double()
    with torch.no_grad():  # one LSTM bias, as xpnet's: b = bias_ih + bias_hh (docs/from-pytorch.md, LSTMCell)
        for cell in (theirs.lstm1, theirs.lstm2):
            cell.bias_ih.add_(cell.bias_hh)
            cell.bias_hh.zero_().requires_grad_(False)
    ours = _Sequence(hidden).to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    return torch, ours, theirs


def test_time_sequence_prediction_trains_with_lbfgs_as_pytorchs():
    """train.py's loop: LBFGS(lr=0.8) steps with a closure on the whole training set, each followed by a
    prediction 5 steps into the future under no_grad (the model left in training mode, as there): losses, test
    losses, predictions and weights equal to torch in float64."""
    torch, ours, theirs = _sequences()
    data = _sine_waves()
    input, target, test_input, test_target = data[3:, :-1], data[3:, 1:], data[:3, :-1], data[:3, 1:]
    criterion, tcriterion = xn.losses.MeanSquaredError(), torch.nn.MSELoss()
    optimizer = xn.optim.LBFGS(ours.parameters(), lr=0.8, max_iter=5)
    toptimizer = torch.optim.LBFGS([p for p in theirs.parameters() if p.requires_grad], lr=0.8, max_iter=5)
    losses, tlosses = [], []
    for i in range(2):
        def closure():
            optimizer.zero_grad()
            loss = criterion(ours(input), target)
            losses.append(loss.item())
            ours.backward(criterion.backward())
            return loss

        def tclosure():
            toptimizer.zero_grad()
            loss = tcriterion(theirs(torch.from_numpy(input)), torch.from_numpy(target))
            tlosses.append(loss.item())
            loss.backward()
            return loss

        optimizer.step(closure)
        toptimizer.step(tclosure)
        future = 5
        with xn.no_grad(), torch.no_grad():
            pred = ours(test_input, future=future)
            tpred = theirs(torch.from_numpy(test_input), future=future)
        np.testing.assert_allclose(pred, tpred.numpy(), rtol=1e-9, atol=1e-12)
        assert criterion(pred[:, :-future], test_target).item() == pytest.approx(
            tcriterion(tpred[:, :-future], torch.from_numpy(test_target)).item(), rel=1e-9)
    np.testing.assert_allclose(losses, tlosses, rtol=1e-9)
    state = theirs.state_dict()
    for name, value in xn.torch_state_dict(ours).items():
        if "bias_hh" not in name:
            np.testing.assert_allclose(value, state[name].numpy(), rtol=1e-8, atol=1e-12, err_msg=name)


def test_time_sequence_prediction_backward_through_its_fed_back_future_steps_is_pytorchs():
    """A loss over the predicted future too (each future step's input is the step before's output): every
    gradient equal to torch's autograd in float64."""
    torch, ours, theirs = _sequences()
    data = _sine_waves(n=3, length=6)
    target = np.random.default_rng(0).standard_normal((3, 5 + 4))
    criterion = xn.losses.MeanSquaredError()
    criterion(ours(data[:, :-1], future=4), target)
    ours.backward(criterion.backward())
    torch.nn.MSELoss()(theirs(torch.from_numpy(data[:, :-1]), future=4), torch.from_numpy(target)).backward()
    grads = ours.named_grads()
    for name, ref in (("lstm1.Wx", theirs.lstm1.weight_ih.grad.T), ("lstm1.Wh", theirs.lstm1.weight_hh.grad.T),
                      ("lstm1.b", theirs.lstm1.bias_ih.grad), ("lstm2.Wh", theirs.lstm2.weight_hh.grad.T),
                      ("lstm2.b", theirs.lstm2.bias_ih.grad), ("linear.W", theirs.linear.weight.grad.T)):
        np.testing.assert_allclose(grads[name], ref.numpy(), rtol=1e-10, atol=1e-14, err_msg=name)


# --- super_resolution ---------------------------------------------------------------------------------------------

class _SuperResolutionNet(xn.Model):
    """super_resolution/model.py's Net as docs/from-pytorch.md ports it: one ReLU object after three convolutions,
    PixelShuffle, orthogonal_ init with calculate_gain('relu'); the backward written out."""

    def __init__(self, upscale_factor):
        super().__init__()
        self.relu = L.ReLU()
        self.conv1 = L.Conv2d(1, 64, (5, 5), (1, 1), (2, 2))
        self.conv2 = L.Conv2d(64, 64, (3, 3), (1, 1), (1, 1))
        self.conv3 = L.Conv2d(64, 32, (3, 3), (1, 1), (1, 1))
        self.conv4 = L.Conv2d(32, upscale_factor ** 2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = L.PixelShuffle(upscale_factor)
        self._initialize_weights()

    def forward(self, x, train=True):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))

    def backward(self, dy):
        dy = self.conv4.backward(self.pixel_shuffle.backward(dy))
        dy = self.conv3.backward(self.relu.backward(dy))
        dy = self.conv2.backward(self.relu.backward(dy))
        return self.conv1.backward(self.relu.backward(dy))

    def _initialize_weights(self):
        xn.init.orthogonal_(self.conv1.weight, xn.init.calculate_gain('relu'))
        xn.init.orthogonal_(self.conv2.weight, xn.init.calculate_gain('relu'))
        xn.init.orthogonal_(self.conv3.weight, xn.init.calculate_gain('relu'))
        xn.init.orthogonal_(self.conv4.weight)


def test_super_resolution_trains_as_pytorchs():
    """main.py's train() (MSELoss, Adam(lr=0.01)) and test()'s PSNR, equal to torch in float64 from model.py's
    Net with its weights copied over; low- and high-resolution images: random (N, 1, 6, 6) and (N, 1, 12, 12).
    The orthogonal init itself: each conv's weight, flattened to (out, in*kh*kw), has orthogonal rows (or
    columns) of norm calculate_gain('relu') = sqrt(2), as PyTorch's."""
    torch = _torch()
    nn, init = torch.nn, torch.nn.init

    class Net(nn.Module):
        def __init__(self, upscale_factor):
            super(Net, self).__init__()
            self.relu = nn.ReLU()
            self.conv1 = nn.Conv2d(1, 64, (5, 5), (1, 1), (2, 2))
            self.conv2 = nn.Conv2d(64, 64, (3, 3), (1, 1), (1, 1))
            self.conv3 = nn.Conv2d(64, 32, (3, 3), (1, 1), (1, 1))
            self.conv4 = nn.Conv2d(32, upscale_factor ** 2, (3, 3), (1, 1), (1, 1))
            self.pixel_shuffle = nn.PixelShuffle(upscale_factor)
            self._initialize_weights()

        def forward(self, x):
            x = self.relu(self.conv1(x))
            x = self.relu(self.conv2(x))
            x = self.relu(self.conv3(x))
            x = self.pixel_shuffle(self.conv4(x))
            return x

        def _initialize_weights(self):
            init.orthogonal_(self.conv1.weight, init.calculate_gain('relu'))
            init.orthogonal_(self.conv2.weight, init.calculate_gain('relu'))
            init.orthogonal_(self.conv3.weight, init.calculate_gain('relu'))
            init.orthogonal_(self.conv4.weight)

    xn.manual_seed(123)
    ours = _SuperResolutionNet(upscale_factor=2)
    for conv, gain in ((ours.conv1, 2.0), (ours.conv2, 2.0), (ours.conv4, 1.0)):
        w = conv.weight.reshape(conv.weight.shape[0], -1).astype(np.float64)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        np.testing.assert_allclose(gram, gain * np.eye(len(gram)), atol=1e-5)
    torch.manual_seed(123)
    theirs = Net(upscale_factor=2).double()
    ours = ours.to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    criterion, tcriterion = xn.losses.MeanSquaredError(), nn.MSELoss()
    optimizer, toptimizer = xn.optim.Adam(ours.parameters(), lr=0.01), torch.optim.Adam(theirs.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    for iteration in range(2):
        input, target = rng.random((2, 1, 6, 6)), rng.random((2, 1, 12, 12))
        optimizer.zero_grad()
        loss = criterion(ours(input), target)
        ours.backward(criterion.backward())
        optimizer.step()
        toptimizer.zero_grad()
        tloss = tcriterion(theirs(torch.from_numpy(input)), torch.from_numpy(target))
        tloss.backward()
        toptimizer.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
    for name, value in xn.torch_state_dict(ours).items():
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    input, target = rng.random((2, 1, 6, 6)), rng.random((2, 1, 12, 12))
    with xn.no_grad(), torch.no_grad():
        psnr = 10 * np.log10(1 / criterion(ours(input), target).item())
        tpsnr = 10 * np.log10(1 / tcriterion(theirs(torch.from_numpy(input)), torch.from_numpy(target)).item())
    assert psnr == pytest.approx(tpsnr, rel=1e-10)
