"""The pseudo-label table: stage 2 writes one `pseudo_labels/part-<process>.npz` per process
(per training video: p_t[y] per frame, argmax correctness, maxpool share); stage 3 looks rows up
by video id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from etils import epath


def video_id_str(video_id: Any) -> str:
    return video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)


class PseudoLabelTable:
    def __init__(
        self, ids: np.ndarray, p_gt: np.ndarray, correct: np.ndarray, share: np.ndarray | None
    ) -> None:
        self.ids, self.p_gt, self.correct, self.share = ids, p_gt, correct, share
        self.row = {v: i for i, v in enumerate(ids.tolist())}

    def rows(self, video_ids: np.ndarray) -> list[int]:
        try:
            rows = [self.row[video_id_str(v)] for v in video_ids]
        except KeyError as e:
            raise KeyError(
                f"video {e.args[0]!r} has no pseudo labels: they were computed on another dataset "
                "or split. Delete workdir/pseudo_labels and rerun --config.stage=pseudo_labels"
            ) from None
        return rows


def load_pseudo_labels(workdir: str) -> PseudoLabelTable:
    parts = sorted((epath.Path(workdir) / "pseudo_labels").glob("part-*.npz"))
    if not parts:
        raise FileNotFoundError(
            f"no pseudo labels in {workdir}/pseudo_labels; run --config.stage=pseudo_labels first"
        )
    ids, p_gt, correct, share = [], [], [], []
    for part in parts:
        with part.open("rb") as f:
            data = np.load(f, allow_pickle=False)
            ids.append(data["video_id"])
            p_gt.append(data["p_gt"])
            correct.append(data["correct"])
            share.append(data["share"] if "share" in data else None)
    shares = None if any(s is None for s in share) else np.concatenate(share)
    return PseudoLabelTable(
        np.concatenate(ids), np.concatenate(p_gt), np.concatenate(correct), shares
    )
