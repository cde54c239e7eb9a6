"""Early exit on NSNet's ranking: score order, the exit rules, exactness against fixed-K NSNet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax.evaluation import early_exit_eval, early_exit_sweep
from nsnet_jax.inference import exit_rules
from nsnet_jax.inference.jitted import make_recognize_fn
from nsnet_jax.models import selection
from nsnet_jax.models.nsnet import build_model, init_variables
from tests.tiny import tiny_config


def test_score_order_is_best_first_and_its_prefixes_are_nsnet_j():
    scores = jnp.array([[0.1, 0.9, 0.3, 0.8, 0.2], [0.5, 0.7, 0.5, 0.7, 0.5]])
    order = np.asarray(selection.topk_indices_by_score(scores, 4))
    np.testing.assert_array_equal(order, [[1, 3, 2, 4], [1, 3, 0, 2]])  # ties: earlier first
    for j in range(1, 5):
        np.testing.assert_array_equal(np.sort(order[:, :j], 1), selection.topk_indices(scores, j))
    np.testing.assert_array_equal(selection.topk_indices(scores, 3), [[1, 2, 3], [0, 1, 3]])


def _logits_for(probs):
    return np.log(np.asarray(probs, np.float64))


def test_exit_at_the_first_prefix_strictly_above_the_threshold():
    prefix = np.stack(
        [
            _logits_for([[0.6, 0.4], [0.95, 0.05], [0.5, 0.5]]),  # exits at frame 2 (0.95)
            _logits_for([[0.3, 0.7], [0.2, 0.8], [0.1, 0.9]]),  # never above 0.9: K_max
            _logits_for([[0.99, 0.01], [0.5, 0.5], [0.5, 0.5]]),  # exits at frame 1
        ]
    )
    used, logits = exit_rules.apply_exit(prefix, 0.9)
    np.testing.assert_array_equal(used, [2, 3, 1])
    np.testing.assert_array_equal(logits, prefix[[0, 1, 2], [1, 2, 0]])
    # strict: a confidence equal to the threshold does not exit
    at = exit_rules.confidences(prefix, "max_prob")[0, 1]
    assert exit_rules.apply_exit(prefix, at)[0][0] == 3


def test_threshold_one_uses_k_max_even_when_softmax_saturates_and_zero_uses_one_frame():
    prefix = np.zeros((2, 3, 4))
    prefix[:, :, 0] = 200.0  # float softmax rounds to exactly 1.0
    assert exit_rules.confidences(prefix, "max_prob").max() == 1.0
    np.testing.assert_array_equal(exit_rules.apply_exit(prefix, 1.0)[0], [3, 3])
    np.testing.assert_array_equal(exit_rules.apply_exit(prefix, 0.0)[0], [1, 1])
    for rule in exit_rules.RULES:
        np.testing.assert_array_equal(exit_rules.apply_exit(prefix, 0.0, rule)[0], [1, 1])
        np.testing.assert_array_equal(exit_rules.apply_exit(prefix, 1.0, rule)[0], [3, 3])


def test_multi_label_rule_exits_once_another_frame_stops_changing_the_distribution():
    p = [[0.5, 0.4, 0.1], [0.45, 0.45, 0.1], [0.45, 0.45, 0.1]]
    conf = exit_rules.confidences(_logits_for([p]), "stable")[0]
    np.testing.assert_allclose(conf[1:], [0.95, 1.0])
    assert exit_rules.rule_for(True) == "stable" and exit_rules.rule_for(False) == "margin"
    assert exit_rules.rule_for(False, "max_prob") == "max_prob"
    with pytest.raises(ValueError, match="not one of"):
        exit_rules.confidences(_logits_for([p]), "nope")
    with pytest.raises(ValueError, match="not one of"):
        exit_rules.rule_for(False, "nope")


def test_margin_rule_is_the_gap_between_the_two_most_likely_classes():
    prefix = _logits_for([[[0.5, 0.3, 0.2], [0.45, 0.1, 0.45], [0.8, 0.15, 0.05]]])
    np.testing.assert_allclose(exit_rules.confidences(prefix, "margin")[0], [0.2, 0.0, 0.65])
    # a tie between two classes never exits, however large their share: max_prob would at 0.4
    np.testing.assert_array_equal(exit_rules.apply_exit(prefix, 0.4, "margin")[0], [3])
    np.testing.assert_array_equal(exit_rules.apply_exit(prefix, 0.4, "max_prob")[0], [1])


@pytest.mark.parametrize("rule", exit_rules.RULES)
def test_exit_by_prefix_runs_only_undecided_videos_and_decides_as_apply_exit(rule):
    rng = np.random.default_rng(0)
    prefix = rng.normal(0, 2, (40, 4, 5)).astype(np.float32)
    conf = exit_rules.confidences(prefix, rule)
    for threshold in (0.0, 1.0, *np.quantile(conf, [0.2, 0.5, 0.8])):
        calls = []

        def recognize(rows, j, calls=calls):
            calls.append((rows.copy(), j))
            return prefix[rows, j - 1]

        out = exit_rules.exit_by_prefix(recognize, 40, 4, float(threshold), rule)
        used, logits = exit_rules.apply_exit(prefix, float(threshold), rule)
        np.testing.assert_array_equal(out["frames_used"], used)
        np.testing.assert_array_equal(out["logits"], logits)  # bit for bit
        for rows, j in calls:  # prefix j only for the videos that had not exited before it
            np.testing.assert_array_equal(rows, np.flatnonzero(used >= j))
        assert sum(len(r) for r, _ in calls) == used.sum()  # one recognizer call per used prefix


def test_sweep_rows_count_the_sampler_and_each_used_frame():
    prefix = np.stack([_logits_for([[0.6, 0.4], [0.95, 0.05]]), _logits_for([[0.99, 0.01]] * 2)])
    labels = np.array([[1, 0], [0, 1]])
    table = exit_rules.gmacs_table(2, 1.0, 10.0)
    np.testing.assert_array_equal(table, [11.0, 21.0])
    np.testing.assert_array_equal(exit_rules.gmacs_table(2, 1.0, 10.0, {2: 20.9}), [11.0, 20.9])
    rows = early_exit_sweep.sweep(prefix, labels, [0.0, 0.9], gmacs=table)
    assert [r["mean_frames"] for r in rows] == [1.0, 1.5]
    assert [r["gmacs"] for r in rows] == [11.0, 16.0]
    assert rows[1]["gmacs_p95"] == pytest.approx(20.5)
    assert [r["top1"] for r in rows] == [0.5, 0.5]


def test_prefixes_equal_fixed_k_nsnet_bit_for_bit():
    config = tiny_config(model__recognizer__backbone="patch_cnn")
    model = build_model(config)
    variables = init_variables(model, config, jax.random.key(0))
    frames = jax.random.randint(jax.random.key(1), (3, 6, 32, 32, 3), 0, 255).astype(jnp.uint8)
    scores = np.asarray(jax.random.normal(jax.random.key(2), (3, 6)))
    recognize = make_recognize_fn(model)
    prefix, order = early_exit_eval.prefix_logits(
        lambda idx: np.asarray(recognize(variables, frames, idx)), scores, 4
    )
    fixed = {k: np.asarray(recognize(variables, frames, selection.topk_indices(scores, k)))
             for k in (1, 4)}  # fmt: skip
    np.testing.assert_array_equal(exit_rules.apply_exit(prefix, 1.0)[1], fixed[4])
    np.testing.assert_array_equal(exit_rules.apply_exit(prefix, 0.0)[1], fixed[1])
    np.testing.assert_array_equal(order[:, 0], scores.argmax(1))


def test_the_figure_draws_the_sweep_beside_fixed_k(tmp_path, monkeypatch):
    import matplotlib.axes

    from nsnet_jax import demo

    labels = []
    plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "plot",
        lambda ax, *a, **kw: labels.append(kw.get("label")) or plot(ax, *a, **kw),
    )
    row = {"top1": 0.5, "gmacs": 0.01, "k": 1}
    results = {
        "split": "test", "num_videos": 2,
        "rows": [{**row, "method": "nsnet"}, {**row, "method": "mgsampler"}],
        "early_exit": {"rows": [{**row, "k": 4, "threshold": t, "gmacs": 0.01 + t / 100}
                                for t in (0.5, 0.9)]},
    }  # fmt: skip
    demo.plot_accuracy_vs_gmacs(results, str(tmp_path / "acc.png"))
    assert (tmp_path / "acc.png").exists()
    assert labels == ["nsnet", "mgsampler", "early exit (K<=4)"]
