"""xn.datasets.load_image_folder: torchvision's ImageFolder + Resize + CenterCrop + ToTensor (+ Normalize), pixel for
pixel on generated PNG and JPEG files, against a transcription of torchvision 0.29's datasets/folder.py and
transforms/functional.py (torchvision is not a test dependency; the same Pillow does the resampling)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import xpnet as xn

Image = pytest.importorskip("PIL.Image")
ImageOps = pytest.importorskip("PIL.ImageOps")


def torchvision_resize(img, size, max_size=None):
    """transforms.functional.resize of a PIL image, BILINEAR (Resize's default), with _compute_resized_output_size."""
    image_width, image_height = img.size  # F_pil.get_dimensions
    size = [size] if isinstance(size, int) else list(size)
    h, w = image_height, image_width
    short, long = (w, h) if w <= h else (h, w)
    if len(size) == 1:
        requested_new_short = size[0]
        new_short, new_long = requested_new_short, int(requested_new_short * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        new_w, new_h = size[1], size[0]
    if [image_height, image_width] == [new_h, new_w]:
        return img
    return img.resize(tuple([new_h, new_w][::-1]), Image.BILINEAR)  # F_pil.resize


def torchvision_center_crop(img, output_size):
    """transforms.functional.center_crop of a PIL image: F_pil.pad (ImageOps.expand, fill 0) then F_pil.crop."""
    crop_height, crop_width = (output_size, output_size) if isinstance(output_size, int) else output_size
    image_width, image_height = img.size
    if crop_width > image_width or crop_height > image_height:
        padding_ltrb = [
            (crop_width - image_width) // 2 if crop_width > image_width else 0,
            (crop_height - image_height) // 2 if crop_height > image_height else 0,
            (crop_width - image_width + 1) // 2 if crop_width > image_width else 0,
            (crop_height - image_height + 1) // 2 if crop_height > image_height else 0,
        ]
        img = ImageOps.expand(img, border=tuple(padding_ltrb), fill=(0, 0, 0))  # _parse_fill: 0 per channel
        image_width, image_height = img.size
        if crop_width == image_width and crop_height == image_height:
            return img
    crop_top = int(round((image_height - crop_height) / 2.0))
    crop_left = int(round((image_width - crop_width) / 2.0))
    return img.crop((crop_left, crop_top, crop_left + crop_width, crop_top + crop_height))


def torchvision_sample(path, size, resize, max_size=None):
    """ImageFolder's __getitem__ image: pil_loader, Resize, CenterCrop, then ToTensor's uint8 (C, H, W) before /255."""
    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")
    img = torchvision_center_crop(torchvision_resize(img, resize, max_size), size)
    return np.asarray(img).transpose(2, 0, 1)


# (relative path, PIL mode, (width, height)); odd sizes, portrait and landscape, one smaller than every crop.
FILES = [("bees/b.jpg", "RGB", (23, 13)), ("bees/sub/a.PNG", "L", (11, 29)), ("bees/A.png", "RGBA", (17, 17)),
         ("ants/x.jpeg", "RGB", (31, 12)), ("ants/tiny.png", "P", (4, 6)), ("ants/notes.txt", None, None),
         ("bees/sub/deep/c.bmp", "RGB", (9, 7)), ("bees/sub-b/d.png", "RGB", (7, 9))]
# torchvision's order: sorted(os.walk(...)) sorts the folders as strings, "sub-b" before "sub/deep".
ORDER = ["ants/tiny.png", "ants/x.jpeg", "bees/A.png", "bees/b.jpg", "bees/sub/a.PNG", "bees/sub-b/d.png",
         "bees/sub/deep/c.bmp"]


@pytest.fixture
def folder(tmp_path):
    root, rng = tmp_path / "hymenoptera", np.random.default_rng(0)
    for name, mode, (w, h) in ((n, m, s or (0, 0)) for n, m, s in FILES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            path.write_text("not an image")
            continue
        channels = {"RGB": 3, "RGBA": 4}.get(mode)
        pixels = rng.integers(0, 256, (h, w, channels) if channels else (h, w), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(path)
    return root


@pytest.mark.parametrize("size,resize,max_size", [(8, 10, None), ((10, 6), 7, 9), (5, (7, 12), None)])
def test_pixels_labels_and_order_are_torchvisions(folder, size, resize, max_size):
    x, y, classes = data = xn.datasets.load_image_folder(folder, size=size, resize=resize, max_size=max_size)
    assert classes == ["ants", "bees"] and data.class_to_idx == {"ants": 0, "bees": 1}
    assert [p for p, _ in xn.datasets.make_dataset(folder)] == [str(folder / p) for p in ORDER]
    assert x.dtype == np.uint8 and y.dtype == np.int64 and y.tolist() == [0, 0, 1, 1, 1, 1, 1]
    want = np.stack([torchvision_sample(folder / p, size, resize, max_size) for p in ORDER])
    np.testing.assert_array_equal(x, want)
    gray = x[ORDER.index("bees/sub/a.PNG")]
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()


def test_normalize_is_torchvisions_after_to_tensor(folder):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = xn.datasets.load_image_folder(folder, 8, 10, normalize=(mean, std)).x
    t = torch.from_numpy(xn.datasets.load_image_folder(folder, 8, 10).x).to(torch.float32).div(255)  # ToTensor
    t = t.sub_(torch.as_tensor(mean).view(-1, 1, 1)).div_(torch.as_tensor(std).view(-1, 1, 1))  # F_t.normalize
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, t.numpy())


def test_no_resize_or_crop_keeps_the_files_pixels(tmp_path):
    for i, name in enumerate(["a/1.png", "b/2.bmp"]):
        (tmp_path / name).parent.mkdir()
        Image.fromarray(np.full((3, 5, 3), i * 50, dtype=np.uint8)).save(tmp_path / name)
    x, y, _ = xn.datasets.load_image_folder(tmp_path, size=None, resize=None)
    assert x.shape == (2, 3, 3, 5) and (x[1] == 50).all() and y.tolist() == [0, 1]
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(tmp_path / "b" / "3.png")
    with pytest.raises(ValueError, match=r"3\.png is 4x5 after resizing and .*1\.png 3x5; pass size="):
        xn.datasets.load_image_folder(tmp_path, size=None, resize=None)


def test_errors_name_the_folder_the_file_or_the_argument(folder, tmp_path, monkeypatch):
    load = xn.datasets.load_image_folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(xn.datasets.DatasetNotFoundError, match=r"no class folder in .*empty"):
        load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"'.*nowhere' does not exist"):
        load(tmp_path / "nowhere")
    (folder / "wasps").mkdir()
    (folder / "wasps" / "w.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"class folder\(s\) wasps of .*allow_empty=True"):
        load(folder, 8, 10)
    assert load(folder, 8, 10, allow_empty=True).classes == ["ants", "bees", "wasps"]
    (folder / "wasps" / "w.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match=r"cannot read .*w\.jpg as an image"):
        load(folder, 8, 10)
    with pytest.raises(TypeError, match="unexpected keyword argument 'transform': resize=, size= and normalize"):
        load(folder, transform=None)
    with pytest.raises(TypeError, match=r"size must be an int >= 1 or \(height, width\), got 'crop'.*transform"):
        load(folder, "crop")
    with pytest.raises(ValueError, match="max_size must be an int greater than resize"):
        load(folder, 8, (10, 12), max_size=20)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        load(folder, interpolation="cubic")
    with pytest.raises(ValueError, match="std .* has a zero"):
        load(folder, normalize=(0.5, [0.2, 0.0, 0.2]))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"needs Pillow to read images: pip install .*\[images\]"):
        load(folder)
