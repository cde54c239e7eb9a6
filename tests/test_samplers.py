"""The baseline samplers, each by its own definition: motion-guided and per-frame saliency."""

import numpy as np

from nsnet_jax.evaluation import samplers
from nsnet_jax.evaluation.methods import METHODS, active_methods
from tests.tiny import tiny_config


def _moving_square(t=12, moves=(4, 5, 6), size=16):
    """Videos [1, T, s, s, 3]: a white square that moves only into frames `moves`."""
    frames = np.zeros((1, t, size, size, 3), np.uint8)
    x = 0
    for i in range(t):
        if i in moves:
            x += 3
        frames[0, i, 4:8, x : x + 4] = 255
    return frames


def test_motion_guided_picks_the_frames_where_the_object_moves():
    frames = _moving_square()
    np.testing.assert_array_equal(
        samplers.frame_motion(frames)[0] > 0, np.isin(range(12), [4, 5, 6])
    )
    for k in (1, 2, 3):
        idx = samplers.motion_guided_indices(frames, k)
        assert idx.shape == (1, k) and set(idx[0]) <= {4, 5, 6}, idx
    np.testing.assert_array_equal(samplers.motion_guided_indices(frames, 3), [[4, 5, 6]])
    # more frames than moving ones: still K distinct frames, nearest the motion
    idx = samplers.motion_guided_indices(frames, 5)[0]
    assert len(set(idx)) == 5 and list(idx) == sorted(idx) and {4, 5, 6} <= set(idx)


def test_motion_guided_on_a_static_video_is_uniform_and_its_cost_is_counted():
    static = np.zeros((2, 8, 4, 4, 3), np.uint8)
    np.testing.assert_array_equal(samplers.motion_guided_indices(static, 2), [[1, 5], [1, 5]])
    config = tiny_config()
    assert samplers.motion_gmacs(config) == 5 * 32 * 32 * 3 / 1e9
    assert METHODS["mgsampler"].extra_gmacs(config) == samplers.motion_gmacs(config)
    assert "mgsampler" not in active_methods(baselines=True, has_evidence=False, config=config)
    assert "scsampler" not in active_methods(baselines=True, has_evidence=False, config=config)
    motion = tiny_config(eval__mgsampler=True)
    assert "mgsampler" in active_methods(baselines=True, has_evidence=False, config=motion)
    on = tiny_config(eval__scsampler_videos=8)
    assert "scsampler" in active_methods(baselines=True, has_evidence=False, config=on)
    idx = METHODS["mgsampler"].select(None, None, None, 3, _moving_square())
    np.testing.assert_array_equal(idx, [[4, 5, 6]])


def test_saliency_rule_ranks_frames_by_their_most_confident_class():
    logits = np.log(np.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]]))
    np.testing.assert_allclose(samplers.saliency_scores(logits), [[0.5, 0.9, 0.8, 0.6]], rtol=1e-6)
    np.testing.assert_array_equal(samplers.saliency_indices(logits, 2), [[1, 2]])


def test_saliency_head_trained_on_video_labels_finds_the_class_frames():
    """Fixed features: 2 of 8 frames carry the class direction, the rest are shared noise."""
    rng = np.random.default_rng(0)
    n, t, d, c = 120, 8, 6, 3
    labels = rng.integers(0, c, n)
    feats = rng.normal(0, 1, (n, t, d))
    salient = np.stack([rng.choice(t, 2, replace=False) for _ in range(n)])
    for v in range(n):
        feats[v, salient[v], labels[v]] += 4.0
    head = samplers.fit_saliency_head(feats[:100], np.eye(c)[labels[:100]])
    picked = samplers.saliency_indices(samplers.saliency_logits(head, feats[100:]), 2)
    hits = np.mean([len(set(p) & set(s)) / 2 for p, s in zip(picked, salient[100:], strict=True)])
    assert hits > 0.85, hits  # chance: 2 of 8 frames, 0.25
