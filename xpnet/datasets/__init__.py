"""Datasets: toy sets embedded in code, MNIST/Fashion-MNIST and Penn Treebank loaders, a folder of class
subfolders of images (torchvision's ImageFolder), the book's seq2seq sets, text as ids, and minibatch helpers
(BatchIterator; TokenStream for truncated BPTT).

All return host NumPy arrays; move them with ``xn.to_device`` (``xn.train`` does it per batch).
"""

from typing import Any

from .._chainer import DATASETS
from .._user import not_here
from .augment import RandomShiftFlip, shift_flip_params
from .batches import BatchIterator, StaticBatches, batch_bounds, epoch_permutation
from .idx import IDXFormatError, read_idx
from .image_folder import IMG_EXTENSIONS, ImageFolderData, find_classes, load_image_folder, make_dataset
from .mnist import (
    DatasetChecksumError,
    DatasetNotFoundError,
    cache_dir,
    find_files,
    load_fashion_mnist,
    load_mnist,
    search_dirs,
)
from .ptb import find_ptb, load_ptb
from .samples import stack_samples
from .seq2seq import (Seq2SeqData, addition, addition_lines, date_lines, dates, load_seq2seq_file,
                      seq2seq_from_lines)
from .stream import TokenStream
from .text import char_ids, python_docs, vocabulary
from .toy import blobs, spiral, xor

__all__ = [
    "BatchIterator",
    "RandomShiftFlip",
    "StaticBatches",
    "DatasetChecksumError",
    "DatasetNotFoundError",
    "IDXFormatError",
    "IMG_EXTENSIONS",
    "ImageFolderData",
    "batch_bounds",
    "blobs",
    "cache_dir",
    "epoch_permutation",
    "find_classes",
    "find_files",
    "load_image_folder",
    "load_fashion_mnist",
    "load_mnist",
    "make_dataset",
    "read_idx",
    "search_dirs",
    "shift_flip_params",
    "spiral",
    "stack_samples",
    "xor",
    "TokenStream",
    "Seq2SeqData",
    "addition",
    "addition_lines",
    "dates",
    "date_lines",
    "load_seq2seq_file",
    "seq2seq_from_lines",
    "load_ptb",
    "find_ptb",
    "char_ids",
    "python_docs",
    "vocabulary",
]

_SEQUENCE = ("the book's sequence.load_data(file_name) is xn.datasets.load_seq2seq_file(path), split as the book "
             "splits; its result holds char_to_id and id_to_char (the book's get_vocab()); xn.datasets.addition() "
             "and dates() generate such files' data offline")
# What a reader of the book's second volume reaches for in its dataset/ folder.
_BOOK_NAMES = {"sequence": _SEQUENCE, "get_vocab": _SEQUENCE, "load_data": (
    "the book's spiral.load_data() is xn.datasets.spiral(), ptb.load_data(data_type) xn.datasets.load_ptb(split), "
    "sequence.load_data(file_name) xn.datasets.load_seq2seq_file(path)")}

# What a PyTorch user reaches for in torchvision.datasets and torch.utils.data, and what xpnet has instead.
_IMAGES = ("(x_train, y_train), (x_test, y_test) = xn.datasets.{0}(): NumPy arrays, x float32 in [0, 1] as after "
           "ToTensor(), (N, 784), or (N, 1, 28, 28) with flatten=False; y int64 labels")
_BATCHES = ("xn.train(model, (x, y), batch_size=64) cuts the batches itself, on the device; in a loop of your own, "
            "loader = xn.datasets.BatchIterator(x, y, batch_size=64), then for xb, yb in loader.epoch(epoch)")
_FOLDER = ("x, y, classes = xn.datasets.load_image_folder(root, size=224, resize=256): the whole folder as one "
           "uint8 (N, 3, 224, 224) array, as ImageFolder with Resize(256), CenterCrop(224), ToTensor() gives it, and "
           "int64 labels; normalize=(mean, std) for Normalize, float32")
_PYTORCH_NAMES = {
    "FashionMNIST": _IMAGES.format("load_fashion_mnist"),
    "MNIST": _IMAGES.format("load_mnist"),
    "ImageFolder": _FOLDER,
    "DatasetFolder": _FOLDER,
    "CIFAR10": "xpnet has no CIFAR-10 loader: read its arrays yourself (x float32 (N, 3, 32, 32), y int labels) and "
               "pass them as (x, y)",
    "DataLoader": _BATCHES,
    **dict.fromkeys(("random_split", "Subset"),
                    "no dataset object to split: split the arrays, order = numpy.random.default_rng(0).permutation("
                    "len(x)), then x[order[:n]], y[order[:n]] and x[order[n:]], y[order[n:]]"),
    "TensorDataset": "no dataset object: pass the arrays as they are, (x, y); " + _BATCHES,
    "Dataset": "no dataset object: load every sample into two arrays, x (N, ...) and y (N, ...), with x, y = "
               "xn.datasets.stack_samples(dataset) for a Dataset of your own (len, and __getitem__ giving (x, y)); "
               + _BATCHES,
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, {**DATASETS, **_BOOK_NAMES, **_PYTORCH_NAMES})
