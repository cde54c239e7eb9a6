"""A contact sheet per predicted video: the T candidates, their scores, the K selected in red."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np


def write_contact_sheet(out_dir: str, line: dict[str, Any], frames: np.ndarray) -> str:
    """PNG of `frames` [T, h, w, 3] titled with the scores; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.basename(line["path"].rstrip("/")) or "video"
    tag = hashlib.sha1(line["path"].encode()).hexdigest()[:8]  # same names in other folders
    path = os.path.join(out_dir, f"{stem}.{tag}.png")
    t = len(frames)
    fig, axes = plt.subplots(1, t, figsize=(t * 0.9, 1.5), squeeze=False)
    for i in range(t):
        ax = axes[0, i]
        ax.imshow(frames[i])
        ax.set_xticks([])
        ax.set_yticks([])
        chosen = i in line["selected"]
        for spine in ax.spines.values():
            spine.set_edgecolor("red" if chosen else "none")
            spine.set_linewidth(3 if chosen else 0)
        sec = line.get("candidate_seconds", [None] * t)[i]
        ax.set_title(f"{line['scores'][i]:.2f}" + (f"\n{sec:.1f}s" if sec is not None else ""),
                     fontsize=6, pad=2)  # fmt: skip
    best = line["top"][0]
    fig.suptitle(
        f"{stem}: {best['class']} ({best['prob']:.2f}); sampler score per frame, red: selected",
        fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
