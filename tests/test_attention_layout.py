"""PyTorch's time-first Transformer code ported onto xpnet's batch-first layers without ``batch_first=False``:
refused where the model tells (its forward reading axis 0 of the output as positions; a PositionalEncoding in the
other layout than its Transformer layers), while the same models written for either layout run as before."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import MultiheadAttention, PositionalEncoding, TransformerEncoder, TransformerEncoderLayer

E, HEADS = 8, 2


def _x(shape=(5, 3, E)):
    return np.random.default_rng(0).standard_normal(shape)


class LanguageModel(xn.Model):
    """The language-modelling tutorial's TransformerModel (embedding left out), its layouts chosen."""

    def __init__(self, encoding_batch_first, encoder_batch_first):
        super().__init__()
        self.pos_encoder = PositionalEncoding(E, 0.0, batch_first=encoding_batch_first)
        layer = TransformerEncoderLayer(E, HEADS, 16, 0.0, batch_first=encoder_batch_first, dtype="float64")
        self.transformer_encoder = TransformerEncoder(layer, 2)

    def forward(self, src, train=True):
        return self.transformer_encoder(self.pos_encoder(src))

    def backward(self, dy):
        return self.pos_encoder.backward(self.transformer_encoder.backward(dy))


@pytest.mark.parametrize("encoding_batch_first", [True, False])
def test_a_positional_encoding_in_the_other_layout_than_the_transformer_is_refused(encoding_batch_first):
    model = LanguageModel(encoding_batch_first, not encoding_batch_first)
    with pytest.raises(ValueError, match=f"PositionalEncoding 'pos_encoder' is .*TransformerEncoder "
                                         f"'transformer_encoder'.*batch_first={not encoding_batch_first}"):
        model(_x())


def test_one_layout_throughout_runs_and_time_first_is_batch_first_permuted():
    xn.init.seed(0)
    time_first = LanguageModel(False, False)
    batch_first = LanguageModel(True, True)
    batch_first.load_state_dict(time_first.state_dict())
    y = time_first(_x())
    np.testing.assert_allclose(y.transpose(1, 0, 2), batch_first(_x().transpose(1, 0, 2)), rtol=1e-12, atol=1e-12)
    dy = _x()
    np.testing.assert_allclose(time_first.backward(dy).transpose(1, 0, 2),
                               batch_first.backward(dy.transpose(1, 0, 2)), rtol=1e-12, atol=1e-12)


class MeanOverPositions(xn.Model):
    """A text classifier's encoder, its output pooled over the positions, batch first."""

    def __init__(self, batch_first=True):
        super().__init__()
        layer = TransformerEncoderLayer(E, HEADS, 16, 0.0, batch_first=batch_first, dtype="float64")
        self.encoder = TransformerEncoder(layer, 1)

    def forward(self, x, train=True):
        x = self.encoder(x)
        return x.mean(axis=1)


class MeanOverDim0(MeanOverPositions):
    """The same ported from PyTorch's time-first code."""

    def forward(self, x, train=True):
        x = self.encoder(x)
        x = x.mean(dim=0)  # PyTorch's, refused before it runs
        return x


class NumPyMeanOverAxis0(MeanOverPositions):
    def forward(self, x, train=True):
        x = self.encoder(x)
        return np.mean(x, 0)  # torch.mean(x, 0) ported


class FirstPosition(MeanOverPositions):
    def forward(self, x, train=True):
        return self.encoder(x)[0]


@pytest.mark.parametrize("model, read, instead", [(MeanOverDim0, "x.mean(dim=0)", "x.mean(axis=1)"),
                                                   (NumPyMeanOverAxis0, "np.mean(x, 0)", "np.mean(x, axis=1)"),
                                                   (FirstPosition, "self.encoder(x)[0]", "self.encoder(x)[:, 0]")])
def test_reading_axis_0_of_a_batch_first_encoders_output_as_positions_is_refused(model, read, instead):
    with pytest.raises(ValueError, match=r"of self\.encoder's output.*batch_first=False.*positions' axis") as refused:
        model()(_x())
    assert f"takes {read} of" in str(refused.value) and f"axis, {instead} " in str(refused.value)


def test_the_same_reads_run_where_the_encoder_is_time_first_and_axis_1_where_it_is_batch_first():
    xn.init.seed(0)
    time_first = NumPyMeanOverAxis0(batch_first=False)
    batch_first = MeanOverPositions()
    batch_first.load_state_dict(time_first.state_dict())
    np.testing.assert_allclose(time_first(_x()), batch_first(_x().transpose(1, 0, 2)), rtol=1e-12, atol=1e-12)
    assert FirstPosition(batch_first=False)(_x()).shape == (3, E)


class ClassToken(xn.Model):
    """vision_transformer's attention read PyTorch's way: nn.MultiheadAttention(E, H) is time first there."""

    def __init__(self):
        super().__init__()
        self.attention = MultiheadAttention(E, HEADS, dtype="float64")

    def forward(self, x, train=True):
        out, _ = self.attention(x, x, x)
        return out[0]


class ClassTokenBatchFirst(ClassToken):
    def forward(self, x, train=True):
        return self.attention(x, x, x)[0][:, 0]


def test_multihead_attention_output_read_time_first_is_refused_and_batch_first_runs():
    with pytest.raises(ValueError, match=r"takes out\[0\] of self\.attention's output.*out\[:, 0\]"):
        ClassToken()(_x())
    assert ClassTokenBatchFirst()(_x()).shape == (5, E)
