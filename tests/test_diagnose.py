"""nsnet_jax.diagnose's scores and target quality on hand-computed cases (the run: test_train)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from nsnet_jax import diagnose


def test_maxpool_share_counts_what_each_frame_passes_through_the_pool():
    # frame 0 wins the max-pool on unit 0, frame 2 on unit 1
    hidden = jnp.array([[[2.0, 1.0], [1.0, 0.5], [0.0, 3.0]]])
    classifier = jnp.array([[1.0, -1.0], [0.5, 2.0]])  # [D, C]
    logits = jnp.zeros((1, 3, 2))
    for label, expected in ((0, [2.0, 0.0, 1.5]), (1, [0.0, 0.0, 6.0])):
        labels = jnp.eye(2)[None, label]
        scores = diagnose.frame_scores(logits, labels, hidden, classifier)
        np.testing.assert_allclose(scores["maxpool_share"], [expected])
    assert "maxpool_share" not in diagnose.frame_scores(logits, labels, None, classifier)


def test_target_quality_counts_frames_and_videos():
    evidence = np.array([[1, 1, 0, 0], [0, 0, 1, 0]], bool)
    targets = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], np.float32)
    q = diagnose.target_quality(targets, evidence)
    assert q == {"precision": 0.333, "recall": 0.333, "video_hit": 0.5, "positives_per_video": 1.5}
