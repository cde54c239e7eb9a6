"""Losses and pseudo-label rules against values computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax.train import losses


def test_to_multihot_accepts_int_and_multihot_and_names_bad_shapes():
    np.testing.assert_array_equal(losses.to_multihot(jnp.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    multi = jnp.array([[1.0, 0, 1]])
    np.testing.assert_array_equal(losses.to_multihot(multi, 3), multi)
    with pytest.raises(ValueError, match=r"multi-hot \[batch, 4\]"):
        losses.to_multihot(multi, 4)


def test_ground_truth_stats_uses_the_best_of_several_labels():
    logits = jnp.log(jnp.array([[[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]]]))
    p_gt, correct = losses.ground_truth_stats(logits, jnp.array([[0.0, 1.0, 1.0]]))
    np.testing.assert_allclose(p_gt, [[0.3, 0.5]], rtol=1e-6)
    np.testing.assert_array_equal(correct, [[False, True]])


P_GT = jnp.array([[0.9, 0.2, 0.6, 0.6, 0.1, 0.05], [0.1, 0.1, 0.2, 0.05, 0.3, 0.3]])
CORRECT = jnp.array([[True, False, False, True, False, False], [False] * 6])


@pytest.mark.parametrize(
    "rule,expected",
    [
        # top ceil(0.34*6)=3 by p_gt; ties to the earlier frame (0.6 at frames 2 and 3 both fit)
        ("rank", [[1, 0, 1, 1, 0, 0], [0, 0, 1, 0, 1, 1]]),
        # p >= 0.5; video 2 has none -> its single best frame (first 0.3, frame 4)
        ("threshold", [[1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0]]),
        ("correct", [[1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]),
        ("correct_and_rank", [[1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]),
        # the sampler stage passes the ground-truth evidence as `correct`
        ("evidence", [[1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]),
    ],
)
def test_hard_pseudo_label_rules(rule, expected):
    out = losses.pseudo_labels(P_GT, CORRECT, rule, ratio=0.34, threshold=0.5)
    np.testing.assert_array_equal(out, expected)


def test_maxpool_share_rule_ranks_by_the_true_class_share():
    pool_share = jnp.array([[[0.1, 2.0], [3.0, 0.5], [0.2, 1.0]]])  # [B=1, T=3, C=2]
    labels = jnp.array([[0.0, 1.0]])
    share = losses.true_class_share(pool_share, labels)
    np.testing.assert_allclose(share, [[2.0, 0.5, 1.0]])
    p_gt, correct = jnp.zeros((1, 3)), jnp.zeros((1, 3), bool)
    out = losses.pseudo_labels(p_gt, correct, "maxpool_share", ratio=2 / 3, share=share)
    np.testing.assert_array_equal(out, [[1, 0, 1]])
    with pytest.raises(ValueError, match="needs the frames' pool shares"):
        losses.pseudo_labels(p_gt, correct, "maxpool_share", ratio=2 / 3)


def test_rank_ratio_tie_break_and_soft_rule():
    out = losses.pseudo_labels(P_GT, CORRECT, "rank", ratio=2 / 6)
    np.testing.assert_array_equal(out[0], [1, 0, 1, 0, 0, 0])  # 0.6 tie: frame 2 before frame 3
    soft = losses.pseudo_labels(P_GT, CORRECT, "soft", ratio=0.5)
    np.testing.assert_allclose(soft[1], np.array([0.1, 0.1, 0.2, 0.05, 0.3, 0.3]) / 0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="pseudo_label.rule='best'"):
        losses.pseudo_labels(P_GT, CORRECT, "best", ratio=0.5)


def test_frame_loss_matches_hand_computed_bce():
    logits = jnp.array([[0.0, math.log(3.0)]])  # s = 0.5, 0.75
    targets = jnp.array([[1.0, 0.0]])
    # -(1/2) [2 * log 0.5 + log(1 - 0.75)] with pos_weight 2
    expected = -(2 * math.log(0.5) + math.log(0.25)) / 2
    assert float(losses.frame_loss(logits, targets, pos_weight=2.0)) == pytest.approx(expected)


def test_softmax_cross_entropy_spreads_multilabel_targets():
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    value = losses.softmax_cross_entropy(logits, jnp.array([[1.0, 1.0, 0.0]]))
    assert float(value) == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))


def test_video_loss_background_form():
    sal = jnp.log(jnp.array([[0.5, 0.3, 0.2]]))  # 2 classes + background
    ns = jnp.log(jnp.array([[0.1, 0.1, 0.8]]))
    total, parts = losses.video_loss(sal, ns, jnp.array([[0.0, 1.0]]), "background", 0.5)
    assert float(parts["video_salient"]) == pytest.approx(-math.log(0.3), rel=1e-5)
    assert float(parts["video_nonsalient"]) == pytest.approx(-math.log(0.8), rel=1e-5)
    assert float(total) == pytest.approx(-math.log(0.3) - 0.5 * math.log(0.8), rel=1e-5)


def test_video_loss_uniform_and_complement_forms():
    sal = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
    ns = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    labels = jnp.array([[1.0, 0.0, 0.0]])
    _, uni = losses.video_loss(sal, ns, labels, "uniform")
    kl = sum((1 / 3) * (math.log(1 / 3) - math.log(p)) for p in (0.5, 0.25, 0.25))
    assert float(uni["video_nonsalient"]) == pytest.approx(kl, rel=1e-5)
    assert float(uni["video_salient"]) == pytest.approx(-math.log(0.7), rel=1e-5)
    _, comp = losses.video_loss(sal, ns, labels, "complement")
    assert float(comp["video_nonsalient"]) == pytest.approx(-math.log(0.5), rel=1e-5)


def test_video_loss_background_needs_the_extra_class():
    with pytest.raises(ValueError, match="needs 3 video logits"):
        losses.video_loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.ones((1, 2)), "background")
    with pytest.raises(ValueError, match="loss.nonsalient='none'"):
        losses.video_loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.ones((1, 2)), "none")


def test_sampler_loss_combines_the_weighted_terms():
    outputs = {
        "frame_logits": jnp.zeros((1, 2)),
        "salient_logits": jnp.zeros((1, 3)),
        "nonsalient_logits": jnp.zeros((1, 3)),
    }
    total, parts = losses.sampler_loss(
        outputs,
        jnp.array([[1.0, 0.0]]),
        jnp.array([[1.0, 0.0]]),
        frame_weight=2.0,
        video_weight=0.5,
        nonsalient="background",
        nonsalient_weight=1.0,
        pos_weight=1.0,
    )
    assert float(parts["frame"]) == pytest.approx(math.log(2))
    assert float(parts["video"]) == pytest.approx(2 * math.log(3), rel=1e-5)
    assert float(total) == pytest.approx(2 * math.log(2) + 0.5 * 2 * math.log(3), rel=1e-5)


def test_own_top_k_adds_the_samplers_best_frames_and_passes_no_gradient():
    import jax

    targets = jnp.array([[1.0, 0, 0, 0], [0, 0, 0.3, 0]])
    scores = jnp.array([[0.1, 0.9, 0.5, 0.2], [2.0, 0.0, 1.0, -1.0]])
    got = losses.with_own_top_k(targets, scores, 2)
    # video 0: pseudo label 0 kept, own top-2 = 1, 2; video 1: own top-2 = 0, 2 (2 raised to 1)
    np.testing.assert_array_equal(got, [[1, 1, 1, 0], [1, 0, 1, 0]])
    grad = jax.grad(lambda s: losses.with_own_top_k(targets, s, 1).sum())(scores)
    np.testing.assert_array_equal(grad, np.zeros_like(scores))


def test_best_frame_cross_entropy_takes_each_videos_best_frame_and_only_its_gradient():
    import jax

    frame_logits = jnp.array(
        [[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], [[0.0, 0.0, 1.0], [0.0, 0.0, 0.5]]]
    )  # [B=2, K=2, C=3]
    labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])

    def ce(logits, c):
        return -(logits[c] - math.log(np.exp(np.asarray(logits)).sum()))

    expected = (ce(frame_logits[0, 0], 0) + ce(frame_logits[1, 0], 2)) / 2
    got = losses.best_frame_cross_entropy(frame_logits, labels)
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    grads = jax.grad(losses.best_frame_cross_entropy)(frame_logits, labels)
    # frame 0 is each video's best: the other frames get no gradient
    np.testing.assert_array_equal(np.asarray(grads[:, 1]), 0.0)
    assert np.abs(np.asarray(grads[:, 0])).sum() > 0
