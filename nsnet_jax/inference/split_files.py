"""A built TFDS split written back to files: one frame folder per video plus a list file.

The stored JPEG frames are written unchanged, so predict on these folders sees exactly the bytes
evaluation decodes; the list file (`<split>.txt`: folder, T, labels) is `video_folder`'s format.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def export_split_frames(
    data_config: Any, split: str, out_dir: str, limit: int = 0
) -> list[dict[str, Any]]:
    """Writes OUT/<video_id>/frame_00001.jpg ... and OUT/<split>.txt; returns id, folder, labels."""
    import tensorflow_datasets as tfds

    from nsnet_jax.input_pipeline import pipeline

    pipeline.load_builder(data_config.name, data_config.data_dir)  # built? else a clear error
    source = tfds.data_source(
        data_config.name,
        split=split,
        data_dir=data_config.data_dir or None,
        decoders={"video": pipeline._PassThrough()},
    )
    n = len(source) if limit <= 0 else min(limit, len(source))
    rows = []
    os.makedirs(out_dir, exist_ok=True)
    for i in range(n):
        record = source[i]
        vid = record["video_id"]
        vid = vid.decode() if isinstance(vid, bytes) else str(vid)
        folder = os.path.join(out_dir, vid.replace("/", "_"))
        os.makedirs(folder, exist_ok=True)
        for t, jpeg in enumerate(record["video"]):
            with open(os.path.join(folder, f"frame_{t + 1:05d}.jpg"), "wb") as f:
                f.write(jpeg)
        labels = np.atleast_1d(np.asarray(record.get("labels", record["label"]))).tolist()
        rows.append({"video_id": vid, "folder": folder, "labels": [int(x) for x in labels],
                     "label": int(record["label"])})  # fmt: skip
    with open(os.path.join(out_dir, f"{split}.txt"), "w") as f:
        for r in rows:
            t = len(os.listdir(r["folder"]))
            f.write(f"{os.path.basename(r['folder'])} {t} {' '.join(map(str, r['labels']))}\n")
    return rows


def accuracy_against_split(lines: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict:
    """predict's top-1 on an exported split, matched to `rows` by folder; errors count as wrong."""
    by_folder = {os.path.abspath(r["folder"]): r for r in rows}
    correct = matched = 0
    for line in lines:
        row = by_folder.get(os.path.abspath(line["path"]))
        if row is None:
            continue
        matched += 1
        correct += "top" in line and line["top"][0]["index"] in row["labels"]
    return {"videos": len(rows), "predicted": matched, "top1": correct / max(1, len(rows))}
