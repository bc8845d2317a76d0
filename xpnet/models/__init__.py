"""Models: layers put together, saved and loaded.

- ``model``: :class:`Model`, a model of your own with forward and backward written out, and what
  every model has (``predict``, ``summary``, ``save``; modes and state dicts come with every layer);
- ``sequential``: :class:`Sequential`, layers applied in order (a Model);
- ``chain``: :func:`backward_chain`, the backward of a model whose parts run in order, stopping at the earliest
  part that trains when no input gradient is wanted (Sequential's and the models' below; one's own ``xn.Model``);
- ``files``: a model as a device-independent ``.npz`` file (``model.save``, ``xn.save``, ``xn.load``), and a state
  dict or checkpoint dict as one (``xn.save(model.state_dict(), path)``, through ``xpnet.io.tree_file``);
- ``language``: :class:`LanguageModel`, stacked LSTMs over ids (the book's Rnnlm, BetterRnnlm), sampling;
- ``seq2seq``: the book's encoder-decoders (``Seq2seq``, ``PeekySeq2seq``, ``AttentionSeq2seq``), greedy decoding;
- ``resnet``: torchvision's ResNets (``xn.models.resnet18``, ``resnet34``, ``resnet50``, ``resnet101``,
  ``resnet152``, ``resnext50_32x4d``, ``resnext101_32x8d``, ``resnext101_64x4d``, ``wide_resnet50_2``,
  ``wide_resnet101_2``; ``ResNet``, ``BasicBlock``, ``Bottleneck``), its module names, so that its state dicts load;
- ``mobilenet``: torchvision's MobileNetV2 (``xn.models.mobilenet_v2``), likewise;
- ``vgg``: torchvision's VGGs (``xn.models.vgg11``, ``vgg11_bn``, ``vgg13``, ``vgg13_bn``, ``vgg16``,
  ``vgg16_bn``, ``vgg19``, ``vgg19_bn``; ``VGG``, and ``make_layers`` and ``cfgs`` in the module), likewise;
- ``alexnet``: torchvision's AlexNet (``xn.models.alexnet``; ``AlexNet``), likewise;
- ``summary``: the table of layers, output shapes and parameter counts;
- ``torch_weights``: PyTorch's state dicts in and out (``xn.load_torch_state_dict``, ``xn.torch_state_dict``),
  names and layouts converted per layer type, and ``torch.save``'s files read without torch (``xn.read_torch_file``);
- ``chainer_npz``: Chainer's ``serializers.save_npz`` files into a model (``xn.load_chainer_npz``), names and
  layouts converted per layer type;
- ``ids``: the Embeddings that read a model's inputs, their ids checked once per run (training,
  evaluation, generation) instead of in every forward.

It may import the layers, ``xpnet.io``, ``xpnet.init`` and the backend; training, gradcheck, the book
and the command line stand on it.
"""

from .alexnet import AlexNet, alexnet
from .chain import backward_chain
from .chainer_npz import load_chainer_npz
from .files import XpnetFileError, load, save
from .language import LanguageModel
from .mobilenet import InvertedResidual, MobileNetV2, mobilenet_v2
from .model import Model
from .resnet import (BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101, resnet152,
                     resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2)
from .seq2seq import AttentionSeq2seq, PeekySeq2seq, Seq2seq
from .sequential import Sequential
from .torch_weights import load_torch_state_dict, read_torch_file, torch_state_dict
from .vgg import VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn

__all__ = ["Model", "Sequential", "backward_chain", "XpnetFileError", "load", "save", "LanguageModel", "Seq2seq",
           "PeekySeq2seq", "AttentionSeq2seq", "load_chainer_npz", "load_torch_state_dict", "read_torch_file",
           "torch_state_dict",
           "ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
           "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
           "MobileNetV2", "InvertedResidual", "mobilenet_v2", "VGG", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16",
           "vgg16_bn", "vgg19", "vgg19_bn", "AlexNet", "alexnet"]
