"""pytorch/tutorials' beginner_source/transformer_tutorial.py (Language Modeling with nn.TransformerEncoder) ported as
a PyTorch user writes it: a time-first TransformerEncoder LM with the tutorial's hand-written PositionalEncoding,
batchify/get_batch, SGD with clip_grad_norm_(0.5) and StepLR; its current version calls model(data), the older one
model(data, src_mask) with generate_square_subsequent_mask. Run against the tutorial's classes in torch, float64, the
same initial weights and random token ids standing in for WikiText-2. The port left batch first (xpnet's default,
PyTorch's is batch_first=False) is refused, where it would silently attend across the batch."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn

NTOKENS, EMSIZE, D_HID, NLAYERS, NHEAD, BPTT = 11, 8, 16, 2, 2, 4


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


class PositionalEncoding(xn.Model):
    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = np.arange(max_len)[:, None]
        div_term = np.exp(np.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = np.zeros((max_len, 1, d_model))
        pe[:, 0, 0::2] = np.sin(position * div_term)
        pe[:, 0, 1::2] = np.cos(position * div_term)
        self.buffers['pe'] = pe  # self.register_buffer('pe', pe)

    def forward(self, x, train=True):
        x = x + self.buffers['pe'][:x.shape[0]]
        return self.dropout(x)

    def backward(self, dy):
        return self.dropout.backward(dy)


class TransformerModel(xn.Model):
    def __init__(self, ntoken, d_model, nhead, d_hid, nlayers, dropout=0.5, batch_first=False):
        super().__init__()
        self.pos_encoder = PositionalEncoding(d_model, dropout)
        encoder_layers = nn.TransformerEncoderLayer(d_model, nhead, d_hid, dropout, batch_first=batch_first)
        self.transformer_encoder = nn.TransformerEncoder(encoder_layers, nlayers)
        self.embedding = nn.Embedding(ntoken, d_model)
        self.d_model = d_model
        self.linear = nn.Linear(d_model, ntoken)
        self.init_weights()

    def init_weights(self):
        initrange = 0.1
        xn.init.uniform_(self.embedding.weight, -initrange, initrange)
        xn.init.zeros_(self.linear.bias)
        xn.init.uniform_(self.linear.weight, -initrange, initrange)

    def generate_square_subsequent_mask(self, sz):  # the older version's
        mask = (np.triu(np.ones((sz, sz))) == 1).T
        return np.where(mask, 0.0, float('-inf'))

    def forward(self, src, src_mask=None, train=True):
        src = self.embedding(src) * math.sqrt(self.d_model)
        src = self.pos_encoder(src)
        output = self.transformer_encoder(src, src_mask)
        return self.linear(output)

    def backward(self, dy):
        d = self.pos_encoder.backward(self.transformer_encoder.backward(self.linear.backward(dy)))
        self.embedding.backward(d * math.sqrt(self.d_model))


def batchify(data, bsz):
    seq_len = data.shape[0] // bsz
    return data[:seq_len * bsz].reshape(bsz, seq_len).T.copy()  # .view(bsz, seq_len).t().contiguous()


def get_batch(source, i):
    seq_len = min(BPTT, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


def _data():
    rng = np.random.default_rng(0)
    return batchify(rng.integers(0, NTOKENS, 54), 4), batchify(rng.integers(0, NTOKENS, 21), 2)


def _torch_model(torch):
    """The tutorial's TransformerModel and PositionalEncoding (the current version; its forward takes src_mask)."""
    tnn = torch.nn

    class TPositionalEncoding(tnn.Module):
        def __init__(self, d_model, dropout=0.1, max_len=5000):
            super().__init__()
            self.dropout = tnn.Dropout(p=dropout)
            position = torch.arange(max_len).unsqueeze(1)
            div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(max_len, 1, d_model)
            pe[:, 0, 0::2] = torch.sin(position * div_term)
            pe[:, 0, 1::2] = torch.cos(position * div_term)
            self.register_buffer('pe', pe)

        def forward(self, x):
            return self.dropout(x + self.pe[:x.size(0)])

    class TTransformerModel(tnn.Module):
        def __init__(self, ntoken, d_model, nhead, d_hid, nlayers, dropout=0.5):
            super().__init__()
            self.pos_encoder = TPositionalEncoding(d_model, dropout)
            self.transformer_encoder = tnn.TransformerEncoder(
                tnn.TransformerEncoderLayer(d_model, nhead, d_hid, dropout), nlayers, enable_nested_tensor=False)
            self.embedding = tnn.Embedding(ntoken, d_model)
            self.d_model = d_model
            self.linear = tnn.Linear(d_model, ntoken)
            self.embedding.weight.data.uniform_(-0.1, 0.1)
            self.linear.bias.data.zero_()
            self.linear.weight.data.uniform_(-0.1, 0.1)

        def forward(self, src, src_mask=None):
            src = self.pos_encoder(self.embedding(src) * math.sqrt(self.d_model))
            return self.linear(self.transformer_encoder(src, src_mask))

    return TTransformerModel(NTOKENS, EMSIZE, NHEAD, D_HID, NLAYERS, 0.0).double()


def _torch_run(torch, model, train_data, val_data, masked):
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1.0, gamma=0.95)
    mask = (lambda n: torch.nn.Transformer.generate_square_subsequent_mask(n, dtype=torch.float64)) if masked else \
        (lambda n: None)
    losses, val_losses = [], []
    for epoch in range(2):
        model.train()
        for i in range(0, train_data.shape[0] - 1, BPTT):
            data, targets = (torch.tensor(a) for a in get_batch(train_data, i))
            loss = criterion(model(data, mask(data.size(0))).view(-1, NTOKENS), targets)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        total_loss = 0.
        with torch.no_grad():
            for i in range(0, val_data.shape[0] - 1, BPTT):
                data, targets = (torch.tensor(a) for a in get_batch(val_data, i))
                total_loss += data.size(0) * criterion(model(data, mask(data.size(0))).view(-1, NTOKENS),
                                                       targets).item()
        val_losses.append(total_loss / (len(val_data) - 1))
        scheduler.step()
    return losses, val_losses


@pytest.mark.parametrize("masked", [False, True], ids=["current-no-mask", "older-src-mask"])
def test_the_transformer_language_model_trains_as_pytorchs(masked):
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_model(torch)
    model = TransformerModel(NTOKENS, EMSIZE, NHEAD, D_HID, NLAYERS, 0.0).to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    train_data, val_data = _data()
    expected, expected_val = _torch_run(torch, theirs, train_data, val_data, masked)

    criterion = xn.losses.SoftmaxCrossEntropy()
    optimizer = xn.optim.SGD(model.parameters(), lr=5.0)
    scheduler = xn.optim.lr_scheduler.StepLR(optimizer, 1.0, gamma=0.95)
    mask = model.generate_square_subsequent_mask if masked else (lambda n: None)
    losses, val_losses = [], []
    for epoch in range(2):
        model.train()
        for i in range(0, train_data.shape[0] - 1, BPTT):
            data, targets = get_batch(train_data, i)
            output = model(data, mask(data.shape[0]))
            loss = criterion(output.reshape(-1, NTOKENS), targets)
            optimizer.zero_grad()
            model.backward(criterion.backward().reshape(output.shape))  # loss.backward()
            xn.optim.clip_grad_norm(model.parameters(), 0.5)
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        total_loss = 0.
        with xn.no_grad():
            for i in range(0, val_data.shape[0] - 1, BPTT):
                data, targets = get_batch(val_data, i)
                total_loss += data.shape[0] * criterion(model(data, mask(data.shape[0])).reshape(-1, NTOKENS),
                                                        targets).item()
        val_losses.append(total_loss / (len(val_data) - 1))
        scheduler.step()
    np.testing.assert_allclose(losses, expected, rtol=1e-9)
    np.testing.assert_allclose(val_losses, expected_val, rtol=1e-9)
    for name, value in xn.torch_state_dict(model).items():
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-8, atol=1e-11, err_msg=name)


def test_the_port_left_batch_first_is_refused_where_it_would_attend_across_the_batch():
    model = TransformerModel(NTOKENS, EMSIZE, NHEAD, D_HID, NLAYERS, 0.0, batch_first=True).to(dtype="float64")
    data, _ = get_batch(_data()[0], 0)
    with pytest.raises(ValueError, match=r"TransformerModel: its pos_encoder\.buffers\['pe'\] of shape \(5000, 1, 8\) "
                                         r"is a positional table in PyTorch's time-first layout.*"
                                         r"TransformerEncoderLayer 'transformer_encoder\.layers\.0' is batch first.*"
                                         r"batch_first=False"):
        model(data)


class _SizeOfTorch(PositionalEncoding):
    def forward(self, x, train=True):
        x = x + self.buffers['pe'][:x.size(0)]
        return self.dropout(x)


def test_pytorchs_size_of_an_axis_in_a_forward_says_to_write_shape():
    with pytest.raises(TypeError, match=r"_SizeOfTorch\.forward: 'int' object is not callable \(line \d+: x = x \+ "
                                        r"self\.buffers\['pe'\]\[:x\.size\(0\)\]\): NumPy's x\.size is the number of "
                                        r"elements.*x\.shape\[d\] for x\.size\(d\)"):
        _SizeOfTorch(EMSIZE, 0.0)(np.zeros((3, 2, EMSIZE)))


class _PermutedForTheLayer(TransformerModel):
    """Batch-first layers given the time-first input permuted: the tutorial's table is then right."""

    def forward(self, src, src_mask=None, train=True):
        src = self.pos_encoder(self.embedding(src) * math.sqrt(self.d_model))
        return self.linear(self.transformer_encoder(src.transpose(1, 0, 2))).transpose(1, 0, 2)


def test_the_time_first_table_runs_where_the_forward_permutes_for_a_batch_first_layer():
    xn.init.seed(0)
    permuted = _PermutedForTheLayer(NTOKENS, EMSIZE, NHEAD, D_HID, NLAYERS, 0.0, batch_first=True).to(dtype="float64")
    time_first = TransformerModel(NTOKENS, EMSIZE, NHEAD, D_HID, NLAYERS, 0.0).to(dtype="float64")
    time_first.load_state_dict(permuted.state_dict())
    data, _ = get_batch(_data()[0], 0)
    np.testing.assert_allclose(permuted(data), time_first(data), rtol=1e-12, atol=1e-12)
