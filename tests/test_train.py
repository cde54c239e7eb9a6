"""The trainer: all stages, resume after a kill, preemption, 1 vs 8 devices, ablations."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax import pipeline_run
from nsnet_jax.bench.common import synthetic_train_batch
from nsnet_jax.config_fields import parse
from nsnet_jax.models.nsnet import build_model, init_variables
from nsnet_jax.sharding import data_mesh
from nsnet_jax.train import (
    checkpointing,
    init,
    loop,
    losses,
    optim,
    provenance,
    pseudo_labels,
    stages,
)
from nsnet_jax.train.step import (
    build_stage_optimizer,
    create_train_state,
    make_train_step,
    pseudo_label_ratio,
)
from tests import tiny_train_config
from tests.helpers import TINY
from tests.tiny import set_fields, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def train_config(data_dir: str, **overrides):
    return set_fields(tiny_train_config.get_config(), data__data_dir=data_dir, **overrides)


class RecordingWriter:
    """A CLU-style metric writer that keeps what it is given (Scenic's habit, for assertions)."""

    def __init__(self) -> None:
        self.scalars: list[tuple[int, dict]] = []

    def write_scalars(self, step, scalars):
        self.scalars.append((step, dict(scalars)))

    def flush(self):
        pass


def _final_params(workdir, stage):
    return checkpointing.restore_variables(os.path.join(workdir, stage, "final"))["params"]


def _assert_trees_close(a, b, atol):
    flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b)
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


@pytest.fixture(scope="module")
def finished_run(tiny_fashion_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    writer = RecordingWriter()
    summaries = pipeline_run.train_and_evaluate(
        train_config(tiny_fashion_dir), workdir, writer=writer
    )
    return workdir, summaries, writer


def test_all_stages_run_and_report_every_method(finished_run):
    workdir, summaries, writer = finished_run
    assert list(summaries) == ["recognizer", "pseudo_labels", "sampler", "eval"]
    assert summaries["recognizer"]["steps"] == 4 and summaries["sampler"]["steps"] == 2
    assert summaries["pseudo_labels"]["videos"] == TINY["num_train"]
    rows = summaries["eval"]["rows"]
    methods = {(r["method"], r["k"]) for r in rows}
    for k in (1, 2):
        assert {("nsnet", k), ("uniform", k), ("random", k), ("oracle", k)} <= methods
    assert ("all", TINY["num_frames"]) in methods
    assert summaries["eval"]["num_videos"] == TINY["num_test"]  # padding counted nowhere
    for r in rows:
        assert 0.0 <= r["top1"] <= 1.0 and r["gmacs"] > 0 and r["videos_per_s"] > 0
    oracle = [r for r in rows if r["method"] == "oracle"]
    assert all(r["evidence_recall"] == 1.0 for r in oracle)
    results = json.loads((Path(workdir) / "eval" / "results.json").read_text())
    assert results["rows"] == rows
    assert "| nsnet | 2 |" in (Path(workdir) / "eval" / "results.md").read_text()
    info = json.loads((Path(workdir) / "run_info.json").read_text())
    assert info["devices"] == 8 and info["global_batch_size"] == 8
    assert info["class_names"][:2] == ["T-shirt/top", "Trouser"]  # predict's labels
    per_video = (Path(workdir) / "eval" / "per_video.jsonl").read_text().splitlines()
    assert len(per_video) == len(rows) * TINY["num_test"]  # every method and K, every video
    assert "per_video" not in results
    logged = {k for _, scalars in writer.scalars for k in scalars}
    assert {"recognizer/loss", "sampler/loss", "sampler/frame", "sampler/video"} <= logged


def test_rerun_skips_finished_stages(finished_run, tiny_fashion_dir):
    workdir, summaries, _ = finished_run
    before = sorted(p.name for p in (Path(workdir) / "recognizer" / "checkpoints").iterdir())
    again = pipeline_run.train_and_evaluate(
        train_config(tiny_fashion_dir), workdir, RecordingWriter()
    )
    assert again["eval"]["rows"] == summaries["eval"]["rows"]
    after = sorted(p.name for p in (Path(workdir) / "recognizer" / "checkpoints").iterdir())
    assert before == after


def test_init_from_copies_parameters_by_path_and_honours_skip(finished_run, tiny_fashion_dir):
    workdir, _, _ = finished_run
    source = _final_params(workdir, "sampler")
    config = train_config(tiny_fashion_dir)
    config.init_from.path = os.path.join(workdir, "sampler", "final")
    config.init_from.skip = "params/recognizer/*"
    config.seed = 7  # a fresh init differs from the source everywhere
    model = build_model(config)
    variables = init.create_variables(config, model, data_mesh())
    _assert_trees_close(variables["params"]["sampler"], source["sampler"], atol=0)
    kernel = variables["params"]["recognizer"]["backbone"]["fc"]["kernel"]
    assert not np.allclose(kernel, source["recognizer"]["backbone"]["fc"]["kernel"])


def test_one_device_and_eight_device_mesh_give_the_same_training(tiny_fashion_dir, tmp_path):
    config = train_config(tiny_fashion_dir, stage="recognizer")
    results = {}
    for n in (1, 8):
        writer = RecordingWriter()
        workdir = str(tmp_path / f"dev{n}")
        pipeline_run.train_and_evaluate(config, workdir, writer, devices=jax.devices()[:n])
        results[n] = (
            [s["recognizer/loss"] for _, s in writer.scalars],
            _final_params(workdir, "recognizer"),
        )
    np.testing.assert_allclose(results[1][0], results[8][0], rtol=1e-4)
    _assert_trees_close(results[1][1], results[8][1], atol=1e-4)


def test_non_finite_loss_advice_restarts_the_stage_and_following_it_finishes(
    tiny_fashion_dir, tmp_path
):
    config = train_config(tiny_fashion_dir, stage="recognizer")
    config.recognizer_training.learning_rate = 1e6  # diverges: parameters first, the loss later
    config.recognizer_training.warmup_steps = 0
    config.checkpoint_every_steps = 1
    with pytest.raises(loop.NonFiniteLossError) as failure:
        pipeline_run.train_and_evaluate(config, str(tmp_path), RecordingWriter())
    message = str(failure.value)
    assert "largest |parameter| now" in message and "may hold diverged weights" in message
    move = next(line.strip() for line in message.splitlines() if line.strip().startswith("mv "))
    _, src, dst = move.split()
    assert src == str(tmp_path / "recognizer" / "checkpoints")
    os.rename(src, dst)  # follow the advice: move the checkpoints aside, lower the learning rate
    config.recognizer_training.learning_rate = 0.01
    summaries = pipeline_run.train_and_evaluate(config, str(tmp_path), RecordingWriter())
    assert summaries["recognizer"]["steps"] == 4 and np.isfinite(summaries["recognizer"]["loss"])


def test_non_finite_loss_before_any_checkpoint_says_so(tiny_fashion_dir, tmp_path):
    config = train_config(tiny_fashion_dir, stage="recognizer")
    config.recognizer_training.learning_rate = float("inf")
    config.recognizer_training.warmup_steps = 0
    config.checkpoint_every_steps = 100
    with pytest.raises(loop.NonFiniteLossError, match="No checkpoint was saved yet") as failure:
        pipeline_run.train_and_evaluate(config, str(tmp_path), RecordingWriter())
    assert "None" not in str(failure.value)


def test_a_changed_config_never_reports_a_finished_workdirs_results(
    finished_run, tiny_fashion_dir, tmp_path
):
    workdir = str(tmp_path / "copy")
    shutil.copytree(finished_run[0], workdir)
    config_json = (Path(workdir) / "config.json").read_text()
    changed = train_config(tiny_fashion_dir, model__recognizer__width=0.25, eval__num_select="2")
    with pytest.raises(provenance.StaleWorkdirError) as failure:
        pipeline_run.train_and_evaluate(changed, workdir, RecordingWriter())
    message = str(failure.value)
    assert "stage 'recognizer'" in message and "model.recognizer.width: 0.125" in message
    assert "new --workdir" in message and f"mv {workdir}/recognizer" in message
    assert (Path(workdir) / "config.json").read_text() == config_json  # failed before any work

    before = sorted(p.name for p in (Path(workdir) / "sampler" / "checkpoints").iterdir())
    eval_only = train_config(tiny_fashion_dir, eval__num_select="2")
    summaries = pipeline_run.train_and_evaluate(eval_only, workdir, RecordingWriter())
    assert {r["k"] for r in summaries["eval"]["rows"] if r["method"] == "nsnet"} == {2}
    after = sorted(p.name for p in (Path(workdir) / "sampler" / "checkpoints").iterdir())
    assert before == after  # the sampler was not retrained
    assert (Path(workdir) / "config.previous-1.json").read_text() == config_json


def test_a_model_changed_under_a_half_finished_stage_names_path_shapes_and_field(
    tiny_fashion_dir, tmp_path
):
    config = train_config(tiny_fashion_dir, stage="recognizer", recognizer_training__num_steps=2)
    pipeline_run.train_and_evaluate(config, str(tmp_path), RecordingWriter())
    (tmp_path / "recognizer" / "DONE.json").unlink()  # as if stopped after its step-2 checkpoint
    wider = train_config(
        tiny_fashion_dir, stage="recognizer", model__recognizer__width=0.25,
        recognizer_training__num_steps=4,
    )  # fmt: skip
    with pytest.raises(checkpointing.CheckpointMismatchError) as failure:
        pipeline_run.train_and_evaluate(wider, str(tmp_path), RecordingWriter())
    message = str(failure.value)
    assert "params/recognizer/backbone/conv1/kernel: (7, 7, 3, 8) in the checkpoint" in message
    assert "model.recognizer.width: 0.125 (recorded) -> 0.25 (now)" in message
    assert "strict" not in message


def test_a_bad_eval_k_fails_before_the_first_stage(tiny_fashion_dir, tmp_path):
    config = train_config(tiny_fashion_dir, eval__num_select="1,40")
    with pytest.raises(ValueError, match=r"eval\.num_select='1,40' has K=40"):
        pipeline_run.train_and_evaluate(config, str(tmp_path), RecordingWriter())
    assert not (tmp_path / "recognizer").exists()


def _main_cmd(data_dir, workdir, *extra):
    config = ROOT / "tests" / "tiny_train_config.py"
    return [
        sys.executable, "-m", "nsnet_jax.main", f"--config={config}", f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}", "--config.stage=recognizer", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(tiny_fashion_dir, tmp_path):
    steps = ["--config.recognizer_training.num_steps=8", "--config.checkpoint_every_steps=2"]
    uninterrupted = tmp_path / "straight"
    subprocess.run(_main_cmd(tiny_fashion_dir, uninterrupted, *steps), check=True, cwd=ROOT,
                   timeout=400, capture_output=True)  # fmt: skip
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_main_cmd(tiny_fashion_dir, killed, *steps,
                                      "--config.data.num_threads=1"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    ckpt = killed / "recognizer" / "checkpoints" / "2"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert ckpt.exists(), "the run ended before its step-2 checkpoint"
    assert not (killed / "recognizer" / "final").exists(), "killed too late to test a resume"
    resumed = subprocess.run(_main_cmd(tiny_fashion_dir, killed, *steps), cwd=ROOT, timeout=400,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr
    _assert_trees_close(
        _final_params(uninterrupted, "recognizer"), _final_params(killed, "recognizer"), atol=1e-6
    )


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits(tiny_fashion_dir, tmp_path):
    proc = subprocess.Popen(
        _main_cmd(tiny_fashion_dir, tmp_path, "--config.recognizer_training.num_steps=400",
                  "--config.checkpoint_every_steps=1000"),
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "recognizer step 3/400" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, "".join(seen)[-2000:] + rest[-2000:]
    steps = [int(p.name) for p in (tmp_path / "recognizer" / "checkpoints").iterdir()
             if p.name.isdigit()]  # fmt: skip
    assert steps and 3 <= max(steps) < 400
    assert "preempted; checkpoint saved" in rest


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_exits(tiny_fashion_dir, tmp_path):
    """SIGINT, sent to the process group as a terminal's Ctrl-C is, checkpoints like SIGTERM."""
    proc = subprocess.Popen(
        _main_cmd(tiny_fashion_dir, tmp_path, "--config.recognizer_training.num_steps=400",
                  "--config.checkpoint_every_steps=1000"),
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "recognizer step 3/400" in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(seen)[-2000:] + rest[-2000:]
    steps = [int(p.name) for p in (tmp_path / "recognizer" / "checkpoints").iterdir()
             if p.name.isdigit()]  # fmt: skip
    assert steps and 3 <= max(steps) < 400
    assert "SIGINT (Ctrl-C) received: checkpointing at the next step" in rest
    assert "preempted; checkpoint saved" in rest
    assert "KeyboardInterrupt" not in rest and "Traceback" not in rest, rest[-3000:]


def test_mistyped_override_fails_with_its_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nsnet_jax.main", "--config=configs/salient_fashion.py",
         f"--workdir={tmp_path}", "--config.sampler_training.learning_rat=0.1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "learning_rat" in result.stderr


# ---- ablation switches: each runs a real training step -------------------------------------------

ABLATIONS = [
    {"loss__nonsalient": "background"},
    {"loss__nonsalient": "uniform"},
    {"loss__nonsalient": "complement"},
    {"loss__frame_weight": 0.0},  # video-level loss only
    {"loss__video_weight": 0.0},  # frame-level loss only
    *(
        {"pseudo_label__rule": r}
        for r in ("rank", "threshold", "correct", "soft", "correct_and_rank")
    ),
    *({"model__sampler__fusion": f} for f in ("sum", "product", "rank")),
    *({"model__sampler__temporal": t} for t in ("conv1d", "transformer")),
    {"selection__train_mode": "perturbed", "selection__num_samples": 8},
    {
        "selection__train_mode": "perturbed",
        "selection__num_samples": 8,
        "selection__perturbed_estimator": "first_order",
    },
    {"selection__train_mode": "gumbel"},
    {"selection__train_mode": "sinkhorn", "selection__sinkhorn_iters": 5},
    {"sampler_training__train_recognizer": True},
    {"model__recognizer__aggregation": "maxpool_mlp", "sampler_training__train_recognizer": True},
]


@pytest.mark.parametrize(
    "switches", ABLATIONS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items())
)
def test_each_ablation_switch_runs_a_training_step(switches):
    config = tiny_config(**switches)
    model = build_model(config)
    variables = jax.jit(lambda k: init_variables(model, config, k))(jax.random.key(0))
    batch = synthetic_train_batch(config, "sampler", batch=4)
    joint = config.sampler_training.train_recognizer
    tx, _ = build_stage_optimizer(config, "sampler", variables["params"], steps_per_epoch=10)
    state = create_train_state(variables, tx)
    step = jax.jit(make_train_step(config, model, "sampler", tx))
    new_state, metrics = step(state, batch, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    moved = lambda part: (
        not np.allclose(  # noqa: E731
            jax.tree.leaves(new_state.params[part])[0], jax.tree.leaves(state.params[part])[0]
        )
    )
    head = new_state.params["sampler"]["frame_head"]["kernel"]
    assert not np.allclose(head, state.params["sampler"]["frame_head"]["kernel"]) or (
        config.loss.frame_weight == 0
    )
    assert moved("recognizer") == joint
    if config.selection.train_mode != "none" or joint:
        assert "recognizer" in metrics


def test_best_frame_weight_adds_the_best_single_frame_loss_to_the_recognizer_step():
    from nsnet_jax.train.step import recognizer_loss_fn

    results = {}
    for weight in (0.0, 0.5):
        config = tiny_config(
            recognizer_training__best_frame_weight=weight,
            recognizer_training__frames_per_video=-1,
            model__recognizer__aggregation="maxpool_mlp",
        )
        model = build_model(config)
        variables = jax.jit(lambda k, m=model, c=config: init_variables(m, c, k))(jax.random.key(0))
        batch = synthetic_train_batch(config, "recognizer", batch=4)
        loss_fn = jax.jit(recognizer_loss_fn(config, model))
        loss, (_, metrics) = loss_fn(
            variables["params"], variables["batch_stats"], batch, jax.random.key(1)
        )
        results[weight] = (float(loss), metrics)
    base, with_best = results[0.0], results[0.5]
    assert "best_frame" not in base[1]
    best = float(with_best[1]["best_frame"])
    assert best > 0
    np.testing.assert_allclose(with_best[0], base[0] + 0.5 * best, rtol=1e-5)


def test_optimizer_freezes_and_scales_by_path():
    params = {"a": {"w": jnp.ones((2, 2))}, "b": {"w": jnp.ones((2, 2))}, "c": {"w": jnp.ones(2)}}
    cfg = tiny_config().sampler_training
    cfg.optimizer, cfg.learning_rate, cfg.momentum, cfg.weight_decay = "sgd", 1.0, 0.0, 0.0
    cfg.lr_multipliers = "b=0.5"
    tx = optim.build_optimizer(cfg, params, ("a", "b"), total_steps=4)
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    for _ in range(2):  # warmup 0 -> step 0 lr = peak
        updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["c"]["w"], 0.0)
    np.testing.assert_allclose(updates["b"]["w"], 0.5 * np.asarray(updates["a"]["w"]))
    with pytest.raises(ValueError, match="'b0.5' must look like"):
        optim.parse_multipliers("b0.5")


def test_demo_figures_are_written(finished_run, tiny_fashion_dir):
    from nsnet_jax import demo

    workdir, summaries, _ = finished_run
    demo.plot_accuracy_vs_gmacs(summaries["eval"], os.path.join(workdir, "acc.png"))
    demo.plot_selections(train_config(tiny_fashion_dir), workdir, os.path.join(workdir, "sel.png"))
    for name in ("acc.png", "sel.png"):
        data = (Path(workdir) / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_backbone_init_from_an_orbax_export(tmp_path, tiny_fashion_dir):
    """model.recognizer.init_from loads exported backbone variables (the convert format)."""
    config = train_config(tiny_fashion_dir)
    model = build_model(config)
    donor = jax.jit(lambda k: init_variables(model, config, k))(jax.random.key(5))
    backbone = {c: donor[c]["recognizer"]["backbone"] for c in ("params", "batch_stats")}
    checkpointing.save_variables(str(tmp_path / "export"), backbone)
    config.model.recognizer.init_from.path = str(tmp_path / "export")
    config.model.recognizer.init_from.format = "orbax"
    config.model.recognizer.init_from.skip = "fc/*"
    variables = init.create_variables(config, model, data_mesh())
    got = variables["params"]["recognizer"]["backbone"]
    _assert_trees_close(got["conv1"], backbone["params"]["conv1"], atol=0)
    assert not np.allclose(got["fc"]["kernel"], backbone["params"]["fc"]["kernel"])


def test_the_sampler_step_crops_and_flips_when_the_input_left_it_to_the_step():
    config = tiny_config()
    model = build_model(config)
    variables = jax.jit(lambda k: init_variables(model, config, k))(jax.random.key(0))
    tx, _ = build_stage_optimizer(config, "sampler", variables["params"], steps_per_epoch=10)
    state = create_train_state(variables, tx)
    step = jax.jit(make_train_step(config, model, "sampler", tx))
    batch = synthetic_train_batch(config, "sampler", batch=4)
    s = config.data.sampler_size
    whole = {
        **batch,
        "sampler_box": np.tile([0.0, 0.0, s, s], (4, 1)),
        "sampler_flip": np.zeros(4, bool),
    }
    half = {**whole, "sampler_box": np.tile([0.0, 0.0, s / 2, s / 2], (4, 1))}
    plain = float(step(state, batch, jax.random.key(1))[1]["loss"])
    np.testing.assert_allclose(
        float(step(state, whole, jax.random.key(1))[1]["loss"]), plain, rtol=1e-5
    )
    assert abs(float(step(state, half, jax.random.key(1))[1]["loss"]) - plain) > 1e-4


def test_self_training_adds_the_samplers_top_k_to_the_targets_from_own_from_on():
    """pseudo_label.own_top_k: before own_from the frame loss is the pseudo labels' BCE, after it
    the BCE against the pseudo labels plus the sampler's own top-k frames."""
    from nsnet_jax.models.nsnet import NSNet

    config = tiny_config(pseudo_label__own_top_k=2, pseudo_label__own_from=0.5)
    model = build_model(config)
    variables = jax.jit(lambda k: init_variables(model, config, k))(jax.random.key(0))
    batch = synthetic_train_batch(config, "sampler", batch=4)
    tx, total = build_stage_optimizer(config, "sampler", variables["params"], steps_per_epoch=10)
    with pytest.raises(ValueError, match="pass make_train_step"):
        make_train_step(config, model, "sampler", tx)
    step = jax.jit(make_train_step(config, model, "sampler", tx, total_steps=total))
    state = create_train_state(variables, tx)
    out = model.apply(
        variables, batch["sampler_frames"], train=True, method=NSNet.sample, mutable=["batch_stats"]
    )[0]
    pseudo = losses.pseudo_labels(
        batch["p_gt"], batch["correct"], config.pseudo_label.rule, ratio=pseudo_label_ratio(config)
    )
    union = losses.with_own_top_k(pseudo, out["scores"], 2)
    assert float(union.sum()) > float(pseudo.sum())  # the sampler's top-2 adds frames here
    expected = {
        name: float(losses.frame_loss(out["frame_logits"], t, config.loss.pos_weight))
        for name, t in (("before", pseudo), ("after", union))
    }
    for name, at in (("before", total // 2 - 1), ("after", total // 2)):
        metrics = step(state.replace(step=at), batch, jax.random.key(1))[1]
        np.testing.assert_allclose(float(metrics["frame"]), expected[name], rtol=1e-5)
        added = float((union - pseudo).sum(-1).mean()) if name == "after" else 0.0
        np.testing.assert_allclose(float(metrics["own_added"]), added, rtol=1e-5)


def test_evidence_and_maxpool_share_rules_reach_the_sampler_batch(
    finished_run, tiny_fashion_dir, monkeypatch, tmp_path
):
    from nsnet_jax.input_pipeline import pipeline

    workdir, _, _ = finished_run
    config = train_config(tiny_fashion_dir, stage="sampler", pseudo_label__rule="evidence")
    seen = {}

    def keep_host_keys(name, config, workdir, model, mesh, writer, variables, **inputs):
        seen["add_host_keys"] = inputs["add_host_keys"]
        return {}

    monkeypatch.setattr(stages, "train_stage", keep_host_keys)
    stages.run_sampler_stage(config, workdir, build_model(config), data_mesh(), None, parse(config))
    batches, _ = pipeline.create_dataset(
        config.data, "train", train=True, global_batch_size=8, seed=0, views=("sampler",)
    )
    batch = seen["add_host_keys"](next(batches))
    evidence = np.asarray(batch["evidence"], bool)
    assert evidence.any(axis=1).all() and not evidence.all()
    np.testing.assert_array_equal(batch["correct"], evidence)
    targets = losses.pseudo_labels(
        jnp.asarray(batch["p_gt"]), jnp.asarray(batch["correct"]), "evidence", ratio=2 / 6
    )
    np.testing.assert_array_equal(np.asarray(targets), evidence.astype(np.float32))
    copy = tmp_path / "run"  # the pseudo-label stage's own report scores the rule's targets
    shutil.copytree(workdir, copy)
    summary = stages.run_pseudo_label_stage(
        config, str(copy), build_model(config), data_mesh(), None, parse(config)
    )
    assert summary["pseudo_label_precision"] == summary["pseudo_label_recall"] == 1.0

    config = train_config(tiny_fashion_dir, stage="sampler", pseudo_label__rule="maxpool_share")
    stages.run_sampler_stage(config, workdir, build_model(config), data_mesh(), None, parse(config))
    batch = seen["add_host_keys"](batch)
    table = pseudo_labels.load_pseudo_labels(workdir)
    assert table.share is not None  # written by the pseudo-label stage (zeros: no max-pool here)
    np.testing.assert_array_equal(batch["share"], table.share[table.rows(batch["video_id"])])

    config = train_config(tiny_fashion_dir, stage="sampler", pseudo_label__rule="evidence")
    monkeypatch.setattr(pipeline, "dataset_meta_fields", lambda b: {"has_evidence": False})
    with pytest.raises(ValueError, match="has none.*pick another pseudo_label.rule"):
        stages.run_sampler_stage(
            config, workdir, build_model(config), data_mesh(), None, parse(config)
        )


def test_diagnose_reports_the_recognizer_ceiling_and_the_pseudo_labels(finished_run):
    from nsnet_jax import diagnose

    workdir, summaries, _ = finished_run
    report = diagnose.diagnose(workdir, ks=(1, 2, TINY["num_frames"]))
    for name in ("max_prob", "true_prob"):  # resnet18 + mean_logits: no max-pool share
        recall = report["recognizer_ranking"][name]
        assert 0.0 <= recall["1"] <= recall["2"] <= 1.0
        assert recall[str(TINY["num_frames"])] == 1.0  # all frames always hold the evidence
    assert "maxpool_share" not in report["recognizer_ranking"]
    configured = report["pseudo_labels"]["rules"]["correct_and_rank"]
    logged = summaries["pseudo_labels"]  # the pseudo-label stage scored the same frames
    assert configured["precision"] == round(logged["pseudo_label_precision"], 3)
    assert configured["recall"] == round(logged["pseudo_label_recall"], 3)
    rows = {f"{r['method']}-{r['k']}": r["evidence_recall"] for r in summaries["eval"]["rows"]}
    assert report["sampler"] == {k: v for k, v in rows.items() if k in report["sampler"]}
    assert {"nsnet-1", "uniform-2"} <= set(report["sampler"])
    assert set(report["share_recovered"]) == {"1", "2"}  # the evaluated K with an oracle row
    top1 = {(r["method"], r["k"]): r["top1"] for r in summaries["eval"]["rows"]}
    for k, share in report["share_recovered"].items():
        assert share["nsnet"] == round(top1[("nsnet", int(k))], 4)
        assert share["oracle"] == round(top1[("oracle", int(k))], 4)
    assert json.loads((Path(workdir) / "diagnose.json").read_text()) == report
    assert "| correct_and_rank (configured) |" in diagnose.format_report(report)


def test_a_field_added_later_matches_old_records_only_at_its_earlier_behaviour():
    from nsnet_jax.train import provenance

    current = provenance.stage_fields(tiny_config(), "recognizer")
    old_record = {k: v for k, v in current.items() if k != "model.recognizer.spatial_pool"}
    assert provenance.differences(old_record, current) == []
    changed = provenance.stage_fields(
        tiny_config(model__recognizer__spatial_pool="max"), "recognizer"
    )
    assert provenance.differences(old_record, changed) == [
        ("model.recognizer.spatial_pool", None, "max")
    ]


def test_demo_with_a_single_stage_runs_it_and_ends_without_an_evaluation(
    tmp_path, tiny_fashion_dir, capsys
):
    from nsnet_jax import demo

    config = train_config(tiny_fashion_dir, stage="recognizer")
    demo.main(config, str(tmp_path), [])
    out = capsys.readouterr().out
    assert '"done": true' in out and "| method |" not in out
    assert (tmp_path / "recognizer" / "DONE.json").exists()
    assert not (tmp_path / "accuracy_vs_gmacs.png").exists()
