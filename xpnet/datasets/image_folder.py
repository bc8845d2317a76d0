"""A folder of class subfolders of images as arrays, read as torchvision's ``datasets.ImageFolder`` with
``transforms.Resize(resize)``, ``CenterCrop(size)``, ``ToTensor()`` and, optionally, ``Normalize(mean, std)``.

How a folder is read (torchvision's ``datasets/folder.py`` and ``transforms/functional.py``, step for step):

1. The classes are the sorted names of the subfolders of ``root`` (``find_classes``); a label is its class's index.
2. The samples of each class, classes in that order, are the files under its folder at any depth whose name ends
   with one of ``IMG_EXTENSIONS`` in any case, folders walked in sorted order, files sorted in each (``make_dataset``).
3. Each file is opened with Pillow and converted to RGB (``pil_loader``); resized (``resize``: its shorter side to
   that length, the longer one ``int(resize * long / short)``, or to ``(h, w)``) with Pillow's resampling, which
   antialiases; center-cropped to ``size``, zeros padded around an image smaller than the crop first, the crop's
   top ``int(round((h - size) / 2.0))`` (``CenterCrop``); and written into its row of one array made up front.

Why one function and arrays, not a dataset object: ``xn.train`` takes ``(x, y)`` and cuts the batches on the
device, so each image is decoded and resized once, not once per epoch. The whole folder is then in memory:
``N * 3 * H * W`` bytes as uint8 (a 224x224 image 147 KiB, the ants/bees tutorial's 397 images 57 MiB), four
times that as float32 with ``normalize``. A folder that does not fit loads in parts, the files that
``is_valid_file`` accepts at each call (with ``allow_empty=True``, so that every class keeps its label).
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from .._user import flag, install_hint, is_int, is_real, keyword_hints
from .mnist import DatasetNotFoundError

__all__ = ["IMG_EXTENSIONS", "ImageFolderData", "find_classes", "load_image_folder", "make_dataset"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# torchvision's InterpolationMode values and the Pillow filter each stands for (its pil_modes_mapping).
INTERPOLATIONS = {"nearest": "NEAREST", "nearest-exact": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC",
                  "box": "BOX", "hamming": "HAMMING", "lanczos": "LANCZOS"}
_PIL_CONSTANTS = {0: "nearest", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming", 1: "lanczos"}
_TORCH_ONLY = {
    "transform": "resize=, size= and normalize=(mean, std) are Resize, CenterCrop and Normalize; ToTensor is the "
                 "uint8 array that xn.train scales by 1/255; random augmentation of training batches is "
                 "xn.train(..., transform=xn.datasets.RandomShiftFlip())",
    "target_transform": "y holds the class indices: map them yourself, y = np.asarray(table)[y]",
    "loader": "files are opened with Pillow and converted to RGB, torchvision's default pil_loader; for another "
              "loader read the files of xn.datasets.make_dataset(root) into an (N, C, H, W) array yourself",
}


class ImageFolderData(NamedTuple):
    """``x, y, classes = xn.datasets.load_image_folder(root)``: x (N, 3, H, W) uint8 (float32 with ``normalize``),
    y (N,) int64 labels, classes the class names; ``class_to_idx`` is torchvision's dict of them."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}


def find_classes(directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
    """``(classes, class_to_idx)``: the sorted names of ``directory``'s subfolders (hidden ones such as
    ``.ipynb_checkpoints`` too, as torchvision's) and each one's index. DatasetNotFoundError where there is none."""
    return _find_classes(directory, "find_classes")


def make_dataset(directory: str | os.PathLike, class_to_idx: dict[str, int] | None = None,
                 extensions: str | Sequence[str] | None = None, is_valid_file: Callable[[str], bool] | None = None,
                 allow_empty: bool = False) -> list[tuple[str, int]]:
    """The samples ``[(path, class_index), ...]`` in torchvision's order: the rows of :func:`load_image_folder`.

    ``class_to_idx``: from :func:`find_classes` when None. A file counts when its path ends with one of
    ``extensions`` (any case) or when ``is_valid_file(path)`` is true; with neither, ``IMG_EXTENSIONS`` (where
    torchvision's raises). A class without files is a DatasetNotFoundError unless ``allow_empty``."""
    return _make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty, "make_dataset")


def _make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty, who):
    directory = _folder(directory, who)
    allow_empty = flag(allow_empty, who, "allow_empty")
    if class_to_idx is None:
        class_to_idx = _find_classes(directory, who)[1]
    elif not class_to_idx:
        raise ValueError(f"{who}: class_to_idx must have at least one entry to collect any samples")
    if extensions is not None and is_valid_file is not None:
        raise ValueError(f"{who}: pass extensions or is_valid_file, not both")
    chosen = is_valid_file is not None
    if not chosen:
        suffixes = tuple(s.lower() for s in ((extensions,) if isinstance(extensions, str) else
                                             extensions or IMG_EXTENSIONS))
        is_valid_file = lambda path: path.lower().endswith(suffixes)  # noqa: E731 - torchvision's test, one line
    samples, empty = [], []
    for name in sorted(class_to_idx):
        found = len(samples)
        target = os.path.join(directory, name)
        if os.path.isdir(target):
            for root, _, names in sorted(os.walk(target, followlinks=True)):
                samples += [(path, class_to_idx[name]) for path in (os.path.join(root, f) for f in sorted(names))
                            if is_valid_file(path)]
        if len(samples) == found:
            empty.append(name)
    if empty and not allow_empty:
        which = "is_valid_file accepts" if chosen else f"ends with {', '.join(suffixes)} (any case)"
        raise DatasetNotFoundError(f"{who}: no file that {which} in the class folder(s) {', '.join(empty)} of "
                                   f"{directory}; remove those folders or pass allow_empty=True")
    return samples


@keyword_hints("load_image_folder", _TORCH_ONLY)
def load_image_folder(root: str | os.PathLike, size: int | Sequence[int] | None = 224,
                      resize: int | Sequence[int] | None = 256, *, interpolation: Any = "bilinear",
                      max_size: int | None = None, normalize: tuple[Any, Any] | None = None,
                      extensions: str | Sequence[str] | None = None,
                      is_valid_file: Callable[[str], bool] | None = None, allow_empty: bool = False
                      ) -> ImageFolderData:
    """The images under ``root/<class>/`` as ``(x, y, classes)`` (an :class:`ImageFolderData`), as torchvision's
    ``ImageFolder(root, transform=Compose([Resize(resize), CenterCrop(size), ToTensor()]))`` gives them one by one.

    x: (N, 3, H, W) uint8, (H, W) = ``size`` (an int for a square, or (h, w)); ``xn.train``, ``xn.evaluate`` and
    ``predict`` scale uint8 by 1/255 on the device, ToTensor's scaling. ``normalize=(mean, std)`` (each a number or
    one per channel): float32 ``(x / 255 - mean) / std`` instead, ``Normalize(mean, std)`` after ``ToTensor()``,
    what torchvision's pretrained models expect (ImageNet's ``([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])``).
    y: (N,) int64 class indices into ``classes``, the sorted subfolder names; rows are in the order of
    ``make_dataset(root)``'s paths. ``resize``: int, the shorter side (``max_size``: at most this longer side, as
    Resize's), or (h, w); ``interpolation``: torchvision's mode name (``"bilinear"``, ``"bicubic"``,
    ``"nearest"``...), its ``InterpolationMode`` or Pillow's constant. ``resize=None``, ``size=None``: no resize,
    no crop (the images must then come out one size). ``extensions``, ``is_valid_file``, ``allow_empty``: which
    files count, as :func:`make_dataset`. Needs Pillow (``pip install pillow``). See the module docstring.
    """
    who = "load_image_folder"
    crop = None if size is None else _pair(size, who, "size", " (CenterCrop's size; torchvision's ImageFolder takes "
                                                              "transform second: here size= and resize= stand for it)")
    target = None if resize is None else _pair(resize, who, "resize", "")
    shorter = target is not None and len(target) == 1
    if max_size is not None and not (is_int(max_size) and shorter and max_size > target[0]):
        raise ValueError(f"{who}: max_size must be an int greater than resize, with resize an int (the shorter "
                         f"side), got max_size={max_size!r}, resize={resize!r}")
    image = _pillow()
    resample = _resample(image, interpolation, who)
    scale = None if normalize is None else _normalize(normalize, who)
    classes, class_to_idx = _find_classes(root, who)
    samples = _make_dataset(root, class_to_idx, extensions, is_valid_file, allow_empty, who)
    if not samples:
        raise DatasetNotFoundError(f"{who}: no image in the class folders of {_folder(root, who)}")
    x = None
    for i, (path, _) in enumerate(samples):
        a = _rgb(image, path)
        if target is not None:
            h, w = _resized_size(a.height, a.width, target, max_size, shorter)
            a = a if (h, w) == (a.height, a.width) else a.resize((w, h), resample)
        a = np.asarray(a)
        if crop is not None:
            a = _center_crop(a, crop[0], crop[-1])
        if x is None:
            x = np.empty((len(samples), 3, *a.shape[:2]), dtype=np.uint8 if scale is None else np.float32)
            first = path
        elif a.shape[:2] != x.shape[2:]:
            raise ValueError(f"{who}: {path} is {a.shape[0]}x{a.shape[1]} after resizing and {first} "
                             f"{x.shape[2]}x{x.shape[3]}; pass size= (a center crop) or resize=(h, w)")
        a = np.transpose(a, (2, 0, 1))
        x[i] = a if scale is None else (a.astype(np.float32) / np.float32(255) - scale[0]) / scale[1]
    return ImageFolderData(x, np.array([label for _, label in samples], dtype=np.int64), classes)


def _find_classes(directory: Any, who: str) -> tuple[list[str], dict[str, int]]:
    directory = _folder(directory, who)
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"{who}: no class folder in {directory}: put the images of each class in a "
                                   f"subfolder named after it ({os.path.join(directory, 'ants', 'a.jpg')}, ...)")
    return classes, {name: i for i, name in enumerate(classes)}


def _folder(directory: Any, who: str) -> str:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"{who}: root must be a folder path (str or os.PathLike), got {type(directory).__name__}")
    path = os.path.expanduser(os.fspath(directory))
    if not os.path.isdir(path):
        raise DatasetNotFoundError(f"{who}: {path!r} {'is not a folder' if os.path.exists(path) else 'does not exist'}"
                                   "; give the folder that holds one subfolder of images per class")
    return path


def _pair(value: Any, who: str, arg: str, hint: str) -> tuple[int, ...]:
    """torchvision's sizes: an int, or a sequence of one (the same) or two ints (h, w); each at least 1."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    if len(items) not in (1, 2) or not all(is_int(v) and v >= 1 for v in items):
        error = ValueError if len(items) in (1, 2) and all(is_int(v) for v in items) else TypeError
        raise error(f"{who}: {arg} must be an int >= 1 or (height, width), got {value!r}{hint}")
    return tuple(int(v) for v in items)


def _resized_size(h: int, w: int, target: tuple[int, ...], max_size: int | None, shorter: bool) -> tuple[int, int]:
    """torchvision's ``_compute_resized_output_size``, the shorter side given or both."""
    if not shorter:
        return target[0], target[-1]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = target[0], int(target[0] * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _center_crop(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """torchvision's ``center_crop`` of an (H, W, C) image: zeros around one smaller than the crop first."""
    h, w = a.shape[:2]
    if height > h or width > w:
        pad_h, pad_w = max(height - h, 0), max(width - w, 0)
        a = np.pad(a, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        h, w = a.shape[:2]
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return a[top:top + height, left:left + width]


def _rgb(image: Any, path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return image.open(f).convert("RGB")
    except Exception as e:  # Pillow's decoders raise OSError, ValueError, SyntaxError and more
        raise OSError(f"load_image_folder: cannot read {path} as an image ({type(e).__name__}: {e}); fix or "
                      "remove the file, or leave it out with is_valid_file=") from e


def _pillow() -> Any:
    try:
        from PIL import Image  # noqa: PLC0415 - Pillow is optional: only reading images needs it
    except ImportError as e:
        raise ImportError(f"load_image_folder needs Pillow to read images: {install_hint('images')} "
                          "(or pip install pillow)") from e
    return Image


def _resample(image: Any, interpolation: Any, who: str) -> Any:
    name = getattr(interpolation, "value", interpolation)  # torchvision's InterpolationMode is an Enum of these
    if is_int(name):
        name = _PIL_CONSTANTS.get(int(name), name)
    if name not in INTERPOLATIONS:
        raise ValueError(f"{who}: interpolation must be one of {', '.join(map(repr, INTERPOLATIONS))} "
                         f"(torchvision's InterpolationMode) or Pillow's constant, got {interpolation!r}")
    return getattr(image.Resampling, INTERPOLATIONS[name])


def _normalize(normalize: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) as float32 (3, 1, 1), ``Normalize``'s; a zero std in float32 refused as there."""
    try:
        mean, std = normalize
        values = [np.asarray(v, dtype=np.float32).reshape(-1) for v in (mean, std)]
    except (TypeError, ValueError):
        values = None
    if values is None or any(v.size not in (1, 3) for v in values) or not all(
            is_real(n) for v in (mean, std) for n in np.atleast_1d(v).tolist()):
        raise ValueError(f"{who}: normalize must be (mean, std), each a number or one per channel (3), "
                         f"got {normalize!r}")
    if np.any(values[1] == 0):
        raise ValueError(f"{who}: normalize's std {std!r} has a zero (in float32): it would divide by zero")
    return tuple(np.broadcast_to(v, (3,)).reshape(3, 1, 1) for v in values)
