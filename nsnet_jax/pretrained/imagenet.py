"""A few ImageNet-1k class names and the standard eval crop, for sanity-checking loaded weights.

Only the classes near the scikit-image sample photos (a cat, an espresso) are named: enough to read
a top-5 list without shipping the 1000-name table. Indices follow the usual sorted-synset order.
"""

from __future__ import annotations

import numpy as np

IMAGENET_SOME_LABELS: dict[int, str] = {
    0: "tench",
    1: "goldfish",
    281: "tabby cat",
    282: "tiger cat",
    283: "Persian cat",
    284: "Siamese cat",
    285: "Egyptian cat",
    286: "cougar",
    287: "lynx",
    504: "coffee mug",
    505: "coffeepot",
    550: "espresso maker",
    809: "soup bowl",
    849: "teapot",
    904: "window screen",
    923: "plate",
    925: "consomme",
    960: "chocolate sauce",
    967: "espresso",
    968: "cup",
    969: "eggnog",
}
CAT_CLASSES = (281, 282)  # tabby, tiger cat
ESPRESSO_CLASSES = (967, 968)  # espresso, cup


def imagenet_label(index: int) -> str:
    return IMAGENET_SOME_LABELS.get(int(index), f"ImageNet class {int(index)}")


def eval_crop(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """uint8 HWC -> float32 (size, size, 3): bicubic resize of the short side to size/0.875, crop.

    This is the evaluation transform the ImageNet weights were scored with; values stay 0..255
    (apply `normalize_images` for the backbone afterwards).
    """
    from PIL import Image

    pil = Image.fromarray(np.asarray(image, np.uint8))
    width, height = pil.size
    scale = size / crop_fraction / min(width, height)
    pil = pil.resize((round(width * scale), round(height * scale)), Image.BICUBIC)
    left, top = (pil.size[0] - size) // 2, (pil.size[1] - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)), np.float32)
