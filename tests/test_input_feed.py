"""Fast input: the DCT draft scale, the sampler cache, the GPU decoder's CPU fallback."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from input_pipeline import decode


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    shift = 7 * seed
    return np.stack([(x + shift) % 256, y % 256, (x + y + shift) % 256], -1).astype(np.uint8)


def test_draft_scale_follows_the_crop_not_the_frame():
    # A 341x256 frame (4:3 at short side 256): the centre square drafts at 1/2 for 128 px, 1/4
    # for 64 px; a crop narrower than 2x the output decodes at full scale (never upsampled).
    center = decode.center_box(341, 256)
    assert decode.draft_scale(center, 128) == 2
    assert decode.draft_scale(center, 64) == 4
    assert decode.draft_scale(center, 224) == 1
    assert decode.draft_scale((10.0, 20.0, 210.0, 220.0), 128) == 1


def test_draft_on_odd_width_frame_matches_full_decode_closely():
    enc = _jpeg(_frame(341, 256))
    fast = decode.decode_frames([enc], 128).astype(float)
    slow = decode.decode_frames([enc], 128, draft=False).astype(float)
    assert np.abs(fast - slow).mean() < 3.0
    assert not np.array_equal(fast, slow)  # the draft really applied
