"""Locate and load Fashion-MNIST offline, because the benchmark must build without internet.

Source order: an explicit folder, then the Debian package `dataset-fashion-mnist`, then TFDS's own
`fashion_mnist` (which downloads where there is internet). If none works, one error names both
install routes.
"""

from __future__ import annotations

import gzip
import logging
import os

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INSTALL_HELP = (
    "Install it one of two ways: (1) Debian/Ubuntu: `apt-get install dataset-fashion-mnist` "
    f"(files land in {DEBIAN_DIR}); or (2) on a machine with internet, TFDS downloads it: "
    "`python -c \"import tensorflow_datasets as tfds; tfds.builder('fashion_mnist')"
    '.download_and_prepare()"`. Or pass a folder holding '
    + ", ".join(f for pair in _FILES.values() for f in pair)
    + " as the builder config's `fashion_mnist_dir`."
)


class FashionMnistNotFoundError(FileNotFoundError):
    """Raised when no Fashion-MNIST source is available; the message says how to install it."""


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _has_files(folder: str, split: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, f)) for f in _FILES[split])


def _load_from_folder(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_file, labels_file = _FILES[split]
    images = _read_idx(os.path.join(folder, images_file))
    labels = _read_idx(os.path.join(folder, labels_file)).astype(np.int64)
    if images.shape != (len(labels), 28, 28):
        raise ValueError(f"Unexpected Fashion-MNIST shapes in {folder}: {images.shape}")
    return images, labels


def _load_from_tfds(
    split: str, data_dir: str | None, debian_dir: str
) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds

    builder = tfds.builder("fashion_mnist", data_dir=data_dir)
    if not builder.is_prepared():
        logging.warning(  # without internet TFDS retries for minutes before it fails
            "Fashion-MNIST is not in %s: trying TFDS's download (needs internet). Offline: "
            "apt-get install dataset-fashion-mnist",
            debian_dir,
        )
        builder.download_and_prepare()
    source = tfds.data_source("fashion_mnist", split=split, data_dir=data_dir)
    items = [source[i] for i in range(len(source))]
    images = np.stack([it["image"][..., 0] for it in items])
    labels = np.array([it["label"] for it in items], np.int64)
    return images, labels


def load_fashion_mnist(
    split: str,
    explicit_dir: str | None = None,
    *,
    debian_dir: str = DEBIAN_DIR,
    try_tfds: bool = True,
    tfds_data_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N,28,28], labels int64 [N]) for split 'train' or 'test'."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if explicit_dir:
        if not _has_files(explicit_dir, split):
            raise FashionMnistNotFoundError(
                f"fashion_mnist_dir={explicit_dir!r} lacks {_FILES[split]}. {INSTALL_HELP}"
            )
        return _load_from_folder(explicit_dir, split)
    if _has_files(debian_dir, split):
        return _load_from_folder(debian_dir, split)
    tfds_error = "TFDS fallback disabled"
    if try_tfds:
        try:
            return _load_from_tfds(split, tfds_data_dir, debian_dir)
        except Exception as e:  # noqa: BLE001 - any failure means "not available here"
            tfds_error = f"TFDS fashion_mnist failed: {type(e).__name__}: {e}"[:500]
    raise FashionMnistNotFoundError(
        f"Fashion-MNIST not found: not in {debian_dir}, and {tfds_error}. {INSTALL_HELP}"
    )
