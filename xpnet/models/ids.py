"""Which Embeddings read a model's inputs, and their ids checked once rather than in every forward.

An Embedding's ``check_ids`` reads one value back from the ids' device in each forward, which on a GPU
waits for the work queued before it: a training step, or a generated token, would wait for the one
before. Where the ids a run will feed those Embeddings are known (the data of ``xn.train``,
``xn.evaluate`` and ``predict``; a prompt, then ids the model itself picks, in generation), they are
checked once and the per-forward check is off for the run.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from ..backend import namespace
from ..layers.embedding import Embedding
from .language import LanguageModel
from .seq2seq import AttentionSeq2seq, PeekySeq2seq, Seq2seq
from .sequential import Sequential

__all__ = ["input_embeddings", "ids_checked_once"]


def input_embeddings(model: Any) -> list[tuple[Embedding, int]]:
    """The Embeddings that read ``model``'s inputs, with the index of the input each reads: the first layer
    through Sequentials and LanguageModels (whose forward runs their layers in order), the encoder's and
    the decoder's of the seq2seq models; none for any other model, whose order is its own."""
    if type(model) in (Seq2seq, PeekySeq2seq, AttentionSeq2seq):
        return [(model.encoder.embed, 0), (model.decoder.embed, 1)]
    node = model
    while not isinstance(node, Embedding):
        if type(node) is Sequential and len(node):
            node = node[0]
        elif type(node) is LanguageModel:
            node = node.layers[0]
        else:
            return []
    return [(node, 0)]


@contextmanager
def ids_checked_once(model: Any, datasets: list[tuple[Any, ...]]) -> Iterator[None]:
    """Within: the Embeddings that read the model's inputs (:func:`input_embeddings`) have the ids of
    ``datasets`` (each the tuple of a data set's inputs) checked here, once, instead of in each forward
    (``check_ids``), where the one value read back makes each step wait for the work a GPU has queued.
    After: their checks as they were. Other Embeddings keep theirs."""
    checked = [(embed, i) for embed, i in input_embeddings(model) if embed.check_ids]
    for embed, i in checked:
        for inputs in datasets:
            if i < len(inputs) and namespace(inputs[i]).isdtype(inputs[i].dtype, "integral"):
                embed.check_range(inputs[i])
    for embed, _ in checked:
        embed.check_ids = False
    try:
        yield
    finally:
        for embed, _ in checked:
            embed.check_ids = True
