"""Builders for the networks of the book's second volume, from its constructors' arguments.

``rnnlm`` (ch06 ``Rnnlm``), ``better_rnnlm`` (ch06 ``BetterRnnlm``), ``seq2seq`` and ``peeky_seq2seq``
(ch07 ``Seq2seq``, ``PeekySeq2seq``), ``attention_seq2seq`` (ch08 ``AttentionSeq2seq``): the book's
defaults, its layers in its order (so that ``xn.load_book_params`` copies its ``save_params`` files
in) and its initial weights (embeddings N(0, 0.01**2), LSTM and output matrices N(0, 1/fan_in),
biases zero). The models are :class:`xpnet.models.language.LanguageModel` and the encoder-decoders of
:mod:`xpnet.models.seq2seq`; they train with ``xn.train`` and save with ``xn.save`` like any model.
"""

from __future__ import annotations

from ..models.language import LanguageModel
from ..models.seq2seq import AttentionSeq2seq, PeekySeq2seq, Seq2seq

__all__ = ["rnnlm", "better_rnnlm", "seq2seq", "peeky_seq2seq", "attention_seq2seq", "BOOK2_MODELS"]


def rnnlm(vocab_size: int = 10000, wordvec_size: int = 100, hidden_size: int = 100,
          dtype: str = "float32") -> LanguageModel:
    """The book's ``Rnnlm``: Embedding, a stateful LSTM, an output Linear (TimeAffine)."""
    return LanguageModel(vocab_size, wordvec_size, hidden_size, dtype=dtype)


def better_rnnlm(vocab_size: int = 10000, wordvec_size: int = 650, hidden_size: int = 650,
                 dropout_ratio: float = 0.5, dtype: str = "float32") -> LanguageModel:
    """The book's ``BetterRnnlm``: two stateful LSTMs, Dropout after the embedding and each LSTM, and
    the output layer tied to the embedding (one matrix, :class:`~xpnet.layers.TiedLinear`)."""
    return LanguageModel(vocab_size, wordvec_size, hidden_size, num_layers=2, dropout=dropout_ratio,
                         tie_weights=True, dtype=dtype)


def seq2seq(vocab_size: int, wordvec_size: int, hidden_size: int, dtype: str = "float32") -> Seq2seq:
    """The book's ``Seq2seq``: forward(xs, ts) -> scores, ``generate(xs, start_id, length)``."""
    return Seq2seq(vocab_size, wordvec_size, hidden_size, dtype)


def peeky_seq2seq(vocab_size: int, wordvec_size: int, hidden_size: int, dtype: str = "float32") -> PeekySeq2seq:
    """The book's ``PeekySeq2seq``: the encoder's state fed to every decoder step."""
    return PeekySeq2seq(vocab_size, wordvec_size, hidden_size, dtype)


def attention_seq2seq(vocab_size: int, wordvec_size: int, hidden_size: int,
                      dtype: str = "float32") -> AttentionSeq2seq:
    """The book's ``AttentionSeq2seq``: the decoder attends over every encoder state."""
    return AttentionSeq2seq(vocab_size, wordvec_size, hidden_size, dtype)


BOOK2_MODELS = {"Rnnlm": rnnlm, "BetterRnnlm": better_rnnlm, "Seq2seq": seq2seq, "PeekySeq2seq": peeky_seq2seq,
                "AttentionSeq2seq": attention_seq2seq}
