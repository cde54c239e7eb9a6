"""nsnet_jax.diagnose's scores and target quality on hand-computed cases (the run: test_train)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from nsnet_jax import diagnose


def test_frame_scores_from_the_recognizer_outputs():
    frame_logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]]))  # [B=1, T=2, C=3]
    labels = jnp.array([[0.0, 1.0, 0.0]])
    scores = diagnose.frame_scores({"frame_logits": frame_logits}, labels)
    np.testing.assert_allclose(scores["max_prob"], [[0.7, 0.6]], rtol=1e-6)
    np.testing.assert_allclose(scores["true_prob"], [[0.2, 0.3]], rtol=1e-6)
    np.testing.assert_array_equal(scores["correct"], [[False, False]])
    assert "maxpool_share" not in scores
    share = jnp.array([[[1.0, 0.5, 0.0], [0.0, 2.0, 3.0]]])
    scores = diagnose.frame_scores({"frame_logits": frame_logits, "pool_share": share}, labels)
    np.testing.assert_allclose(scores["maxpool_share"], [[0.5, 2.0]])


def test_target_quality_counts_frames_and_videos():
    evidence = np.array([[1, 1, 0, 0], [0, 0, 1, 0]], bool)
    targets = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], np.float32)
    q = diagnose.target_quality(targets, evidence)
    assert q == {"precision": 0.333, "recall": 0.333, "video_hit": 0.5, "positives_per_video": 1.5}


def test_share_recovered_and_its_interval():
    uniform = np.array([0, 0, 0, 1] * 50, float)  # 25%
    oracle = np.array([1, 1, 0, 1] * 50, float)  # 75%
    nsnet = np.array([1, 0, 0, 1] * 50, float)  # 50%: half of the distance
    out = diagnose.share_recovered(nsnet, uniform, oracle, resamples=500)
    assert out["share"] == 0.5
    assert (out["nsnet"], out["uniform"], out["oracle"]) == (0.5, 0.25, 0.75)
    low, high = out["ci95"]
    assert 0.3 < low < 0.5 < high < 0.7
    flat = diagnose.share_recovered(nsnet, uniform, uniform, resamples=50)
    assert flat["share"] is None and flat["ci95"] == [None, None]
