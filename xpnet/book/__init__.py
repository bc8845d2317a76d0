"""The book behind the seeds (*Deep Learning from Scratch*): its networks and its weight files.

- ``vol1``: builders for the first volume's networks (``two_layer_net``, ..., ``deep_convnet``);
- ``vol2``: builders for the second volume's (``rnnlm``, ``better_rnnlm``, ``seq2seq``, ``peeky_seq2seq``,
  ``attention_seq2seq``);
- ``params``: its ``params.pkl`` files copied into those models (``load_book_params``), read without
  running pickled code.

It may import the layers, the models, ``xpnet.io`` and the backend; nothing imports it but the package
face and the command line.
"""

from .params import load_book_params, read_book_params
from .vol2 import BOOK2_MODELS, attention_seq2seq, better_rnnlm, peeky_seq2seq, rnnlm, seq2seq
from .vol1 import BOOK_MODELS, deep_convnet, multi_layer_net, multi_layer_net_extend, simple_convnet, two_layer_net

__all__ = ["load_book_params", "read_book_params", "two_layer_net", "multi_layer_net", "multi_layer_net_extend",
           "simple_convnet", "deep_convnet", "BOOK_MODELS", "rnnlm", "better_rnnlm", "seq2seq", "peeky_seq2seq",
           "attention_seq2seq", "BOOK2_MODELS"]
