"""The book behind the seeds (*Deep Learning from Scratch*): its networks and its weight files.

- ``vol1``: builders for the first volume's networks (``two_layer_net``, ..., ``deep_convnet``);
- ``vol2``: builders for the second volume's (``rnnlm``, ``better_rnnlm``, ``seq2seq``, ``peeky_seq2seq``,
  ``attention_seq2seq``);
- ``params``: its ``params.pkl`` files copied into those models (``load_book_params``), read without
  running pickled code.

It may import the layers, the models, ``xpnet.io`` and the backend; nothing imports it but the package
face and the command line.
"""

from typing import Any

from .._user import not_here
from .params import load_book_params, read_book_params
from .vol2 import BOOK2_MODELS, attention_seq2seq, better_rnnlm, peeky_seq2seq, rnnlm, seq2seq
from .vol1 import BOOK_MODELS, deep_convnet, multi_layer_net, multi_layer_net_extend, simple_convnet, two_layer_net

__all__ = ["load_book_params", "read_book_params", "two_layer_net", "multi_layer_net", "multi_layer_net_extend",
           "simple_convnet", "deep_convnet", "BOOK_MODELS", "rnnlm", "better_rnnlm", "seq2seq", "peeky_seq2seq",
           "attention_seq2seq", "BOOK2_MODELS"]

_LM = "xn.book.rnnlm(vocab_size, wordvec_size, hidden_size)"
_SEQ = "(vocab_size, wordvec_size, hidden_size); its forward(xs, ts[:, :-1]) gives scores, the loss is apart"
# The book's class names, and the builders that make them here (lower case: they build an xn.Model).
_BOOK_NAMES = {
    "TwoLayerNet": "the book's TwoLayerNet is xn.book.two_layer_net(input_size, hidden_size, output_size): vol. 1's "
                   "(ch05, ReLU) by default, vol. 2's (ch01, Sigmoid) with activation='sigmoid'",
    "MultiLayerNet": "the book's MultiLayerNet is xn.book.multi_layer_net(input_size, hidden_size_list, output_size)",
    "MultiLayerNetExtend": "the book's MultiLayerNetExtend is xn.book.multi_layer_net_extend(input_size, "
                           "hidden_size_list, output_size, ...)",
    "SimpleConvNet": "the book's SimpleConvNet is xn.book.simple_convnet(...) (the same arguments)",
    "DeepConvNet": "the book's DeepConvNet is xn.book.deep_convnet(...) (the same arguments)",
    "SimpleRnnlm": "the book's SimpleRnnlm (ch05) is xn.Sequential(xn.layers.Embedding(V, D), xn.layers.RNN(D, H, "
                   "stateful=True), xn.layers.Linear(H, V, init='sigmoid')), weights drawn as the book's; " + _LM
                   + " is ch06's Rnnlm (an LSTM)",
    "Rnnlm": "the book's Rnnlm is " + _LM + ", an xn.models.LanguageModel; its forward(xs) gives scores, the loss "
             "is apart",
    "BetterRnnlm": "the book's BetterRnnlm is xn.book.better_rnnlm(vocab_size, wordvec_size, hidden_size, "
                   "dropout_ratio)",
    "RnnlmGen": "the book's RnnlmGen(...).generate(start_id, skip_ids, sample_size) is " + _LM
                + ".generate([start_id], length=sample_size, skip_ids=skip_ids)",
    "Seq2seq": "the book's Seq2seq is xn.book.seq2seq" + _SEQ,
    "PeekySeq2seq": "the book's PeekySeq2seq is xn.book.peeky_seq2seq" + _SEQ,
    "AttentionSeq2seq": "the book's AttentionSeq2seq is xn.book.attention_seq2seq" + _SEQ,
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _BOOK_NAMES)
