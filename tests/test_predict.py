"""predict: JSON lines per video from files, folders, lists and trees; bad inputs are one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from nsnet_jax.inference import export, predictor
from nsnet_jax.inference.jitted import make_inference_fn
from nsnet_jax.inference.predictor import PredictOptions, predict
from nsnet_jax.inference.trained import load_trained
from nsnet_jax.inference.video_reader import open_frame_folder, open_video_file
from tests.helpers import (
    CLASS_NAMES,
    break_stablehlo,
    tiny_predict_config,
    write_mp4,
    write_workdir,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _frames(n: int, seed: int, h: int = 36, w: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 3, 4, 3), dtype=np.uint8)
    return [np.asarray(Image.fromarray(b).resize((w, h), Image.BILINEAR)) for b in base]


def _write_folder(folder: str, frames: list[np.ndarray]) -> None:
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(os.path.join(folder, f"image_{i + 1:05d}.jpg"), quality=95)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("videos")
    tree = root / "tree" / "cats"
    tree.mkdir(parents=True)
    paths = {
        "mp4": str(tree / "a.mp4"),
        "mp4_b": str(root / "tree" / "b.mp4"),
        "folder": str(root / "tree" / "c_frames"),
        "short": str(root / "short.mp4"),
        "corrupt": str(root / "corrupt.mp4"),
        "empty_dir": str(root / "empty"),
        "missing": str(root / "nope.mp4"),
        "list": str(root / "list.txt"),
    }
    write_mp4(paths["mp4"], _frames(20, 0))
    write_mp4(paths["mp4_b"], _frames(13, 1))
    _write_folder(paths["folder"], _frames(9, 2))
    write_mp4(paths["short"], _frames(3, 3))
    with open(paths["corrupt"], "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    os.makedirs(paths["empty_dir"])
    with open(paths["list"], "w") as f:
        f.write("tree/cats/a.mp4 0\ntree/c_frames 9 1\n")
    return paths


def _run(workdir: str, inputs, **opts) -> tuple[list[dict], dict]:
    """predict through jitted JAX unless a test asks for another engine (exact comparisons)."""
    lines: list[dict] = []
    opts.setdefault("engine", "jax")
    summary = predict(load_trained(workdir), inputs, lines.append, PredictOptions(**opts))
    return lines, summary


def test_the_tf_engine_chooses_the_same_frames_as_jax(tiny_workdir, videos):
    inputs = [videos["mp4"], videos["folder"], videos["mp4_b"]]
    jax_lines, jax_summary = _run(tiny_workdir, inputs, engine="jax")
    tf_lines, tf_summary = _run(tiny_workdir, inputs, engine="tf")
    assert (jax_summary["engine"], tf_summary["engine"]) == ("jax", "tf")
    assert len(tf_lines) == len(jax_lines) == 3
    for a, b in zip(jax_lines, tf_lines, strict=True):
        assert a["selected"] == b["selected"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
        assert [c["index"] for c in a["top"]][:1] == [c["index"] for c in b["top"]][:1]


def _export_this_tensorflow_cannot_run(trained, directory, *args, real=export.export_saved_model):
    path = real(trained, directory, *args)
    break_stablehlo(path)
    return path


def test_auto_engine_falls_back_to_jax_when_the_saved_model_cannot_run(
    tiny_workdir, videos, monkeypatch, caplog
):
    inputs = [videos["mp4"], videos["folder"]]
    jax_lines, _ = _run(tiny_workdir, inputs, engine="jax")
    monkeypatch.setattr(export, "export_saved_model", _export_this_tensorflow_cannot_run)
    # as if the ONNX engines were not installed
    monkeypatch.setattr(predictor, "auto_cpu_order", lambda: ("tf",))
    with caplog.at_level(logging.WARNING, logger="nsnet_jax"):
        auto_lines, auto_summary = _run(tiny_workdir, inputs, engine="auto")
    assert auto_summary["engine"] == "jax"
    assert [a["selected"] for a in auto_lines] == [a["selected"] for a in jax_lines]
    warned = [r.getMessage() for r in caplog.records if "instead of the SavedModel" in r.message]
    assert len(warned) == 1 and "does not run in TensorFlow" in warned[0] and "\n" not in warned[0]
    with pytest.raises(export.SavedModelUnreadable, match="re-export"):
        _run(tiny_workdir, inputs, engine="tf")  # asked for by name: no silent fallback


@pytest.fixture(scope="module")
def ee_workdir(tmp_path_factory) -> str:
    """A tiny workdir whose evaluation reports K = 1, 2, 3: early exit's K_max is 3 (K is 2)."""
    workdir = str(tmp_path_factory.mktemp("early_exit"))
    write_workdir(workdir, tiny_predict_config(eval__num_select="1,2,3"), seed=2)
    return workdir


def _open(path: str):
    return (open_frame_folder if os.path.isdir(path) else open_video_file)(path, 6, 16, 32)


def _evaluation_prefixes(workdir: str, paths: list[str]):
    """Evaluation's early exit inputs for these videos: prefix logits [B, 3, C], score order."""
    from nsnet_jax.evaluation import early_exit_eval
    from nsnet_jax.inference.jitted import make_recognize_fn, make_scores_fn

    trained = load_trained(workdir)
    vids = [_open(p) for p in paths]
    low = np.stack([v.low for v in vids])
    high = np.stack([v.full(list(range(6))) for v in vids])
    scores = np.asarray(make_scores_fn(trained.model)(trained.variables, low))
    recognize = make_recognize_fn(trained.model)

    def run(idx):
        return np.asarray(recognize(trained.variables, high, idx))

    return early_exit_eval.prefix_logits(run, scores, 3)


def _check_exit_line(line: dict, used: int, order: np.ndarray, logits: np.ndarray, gmacs):
    ee = line["early_exit"]
    assert ee["frames_used"] == used and ee["order"] == order[:used].tolist()
    assert (ee["k_max"], ee["rule"]) == (3, "margin") and len(ee["confidence"]) == used
    assert line["selected"] == sorted(ee["order"])  # the frames the recognizer aggregated
    assert line["gmacs"] == ee["gmacs"] == gmacs[used - 1]
    probs = np.asarray(jax.nn.softmax(logits.astype(np.float32)))
    assert line["top"][0]["index"] == int(np.argmax(probs))
    assert line["top"][0]["prob"] == pytest.approx(float(probs.max()), abs=2e-6)


def test_early_exit_is_evaluations_on_the_same_videos(ee_workdir, videos):
    """Frames used, their order and the prediction are evaluation's early exit (exit_rules on
    NSNet-j's logits); threshold 1 is NSNet-K_max, 0 is NSNet-1, and between them videos differ."""
    from nsnet_jax.inference import exit_rules

    paths = [videos["mp4"], videos["mp4_b"], videos["folder"]]
    prefix, order = _evaluation_prefixes(ee_workdir, paths)
    first = np.sort(exit_rules.confidences(prefix, "margin")[:, 0])  # the default rule
    between = float(first[0] + first[1]) / 2  # the least sure video goes on, the others stop
    for threshold in (1.0, 0.0, between):
        lines, summary = _run(ee_workdir, paths, batch_size=4, early_exit_threshold=threshold)
        gmacs = summary["early_exit"]["gmacs_by_frames"]
        used, logits = exit_rules.apply_exit(prefix, threshold, "margin")
        for i, line in enumerate(lines):
            assert line["early_exit"]["threshold"] == threshold
            _check_exit_line(line, int(used[i]), order[i], logits[i], gmacs)
        if threshold == 1.0:
            assert used.tolist() == [3, 3, 3]
            np.testing.assert_array_equal(logits, prefix[:, -1])  # NSNet-3's own call
        if threshold == 0.0:
            assert used.tolist() == [1, 1, 1]
            np.testing.assert_array_equal(logits, prefix[:, 0])  # NSNet-1's own call
        if threshold == between:
            assert sorted(set(used.tolist()))[0] == 1 and used.max() > 1
        assert summary["early_exit"]["mean_frames_used"] == pytest.approx(used.mean(), abs=1e-6)
        assert summary["gmacs_per_video"] == pytest.approx(np.mean([x["gmacs"] for x in lines]))
    assert gmacs[0] < gmacs[1] < gmacs[2]


def test_early_exit_prefix_logits_are_evaluations_bit_for_bit(ee_workdir, videos):
    from nsnet_jax.inference import exit_rules
    from nsnet_jax.inference.jitted import make_recognize_fn
    from nsnet_jax.inference.predictor import EarlyExit

    paths = [videos["mp4"], videos["mp4_b"], videos["folder"]]
    prefix, order = _evaluation_prefixes(ee_workdir, paths)
    trained = load_trained(ee_workdir)
    vids = [_open(p) for p in paths]
    high = np.stack([v.full(list(o)) for v, o in zip(vids, order, strict=True)])
    recognize = make_recognize_fn(trained.model)
    ee = EarlyExit(1.0, 3, "max_prob", np.ones(3))
    out = ee.run(lambda f, pos: recognize(trained.variables, f, pos), high, order, [3])
    np.testing.assert_array_equal(out["prefix"], prefix)
    np.testing.assert_array_equal(out["frames_used"], exit_rules.apply_exit(prefix, 1.0)[0])


def test_threshold_one_equals_fixed_k_predict(tiny_workdir, videos):
    inputs = [videos["mp4"], videos["folder"]]
    fixed, fixed_summary = _run(tiny_workdir, inputs)
    exit_lines, _ = _run(tiny_workdir, inputs, early_exit_threshold=1.0)
    assert all("early_exit" not in x for x in fixed) and "early_exit" not in fixed_summary
    for a, b in zip(fixed, exit_lines, strict=True):
        assert b["early_exit"]["frames_used"] == 2  # K_max = model.num_select here
        assert a["selected"] == b["selected"] and a["scores"] == b["scores"]
        assert a["gmacs"] == b["gmacs"]
        assert [t["index"] for t in a["top"]] == [t["index"] for t in b["top"]]
        np.testing.assert_allclose([t["prob"] for t in a["top"]], [t["prob"] for t in b["top"]],
                                   atol=2e-6)  # fmt: skip


def test_the_tf_engine_exits_as_jax_does(ee_workdir, videos):
    from nsnet_jax.inference import exit_rules

    paths = [videos["mp4"], videos["mp4_b"], videos["folder"]]
    prefix, _ = _evaluation_prefixes(ee_workdir, paths)
    conf = np.sort(exit_rules.confidences(prefix, "margin").ravel())
    gaps = np.diff(conf)[: len(conf) // 2]  # a threshold far from every confidence, low enough
    threshold = float(conf[gaps.argmax()] + gaps.max() / 2)  # that some video exits early
    jax_lines, _ = _run(ee_workdir, paths, early_exit_threshold=threshold, engine="jax")
    tf_lines, tf_summary = _run(ee_workdir, paths, early_exit_threshold=threshold, engine="tf")
    assert tf_summary["engine"] == "tf"
    for a, b in zip(jax_lines, tf_lines, strict=True):
        assert a["early_exit"]["order"] == b["early_exit"]["order"]
        assert a["early_exit"]["frames_used"] == b["early_exit"]["frames_used"]
        assert a["selected"] == b["selected"] and a["gmacs"] == b["gmacs"]
        assert a["top"][0]["index"] == b["top"][0]["index"]
        np.testing.assert_allclose(a["early_exit"]["confidence"], b["early_exit"]["confidence"],
                                   atol=1e-4)  # fmt: skip
    assert min(x["early_exit"]["frames_used"] for x in jax_lines) < 3


def test_budget_flag_reads_the_threshold_evaluation_chose(tmp_path):
    from nsnet_jax.errors import UserError
    from nsnet_jax.predict import budget_threshold

    with pytest.raises(UserError, match="early_exit_budget_gmacs=0.02"):
        budget_threshold(str(tmp_path), 0.02)
    (tmp_path / "eval").mkdir()
    results = tmp_path / "eval" / "results.json"
    results.write_text(json.dumps({"rows": []}))
    with pytest.raises(UserError, match="no early exit threshold chosen"):
        budget_threshold(str(tmp_path), 0.02)
    results.write_text(json.dumps({"early_exit": {"budget_gmacs": 0.02, "budget_threshold": 0.9}}))
    assert budget_threshold(str(tmp_path), 0.02) == 0.9
    with pytest.raises(UserError, match="threshold for 0.02 GMACs per video, not 0.03"):
        budget_threshold(str(tmp_path), 0.03)


def test_reader_samples_like_video_folder_and_decodes_k_on_demand(videos):
    v = open_video_file(videos["mp4"], 6, 16, 32)
    assert v.low.shape == (6, 16, 16, 3) and v.low.dtype == np.uint8
    np.testing.assert_array_equal(v.frame_numbers, ((np.arange(6) + 0.5) * 20 / 6).astype(int))
    np.testing.assert_allclose(v.timestamps, v.frame_numbers / 10.0, atol=1e-6)
    assert v.full([1, 4]).shape == (2, 32, 32, 3)
    f = open_frame_folder(videos["folder"], 6, 16, 32, fps=3.0)
    assert f.timestamps[0] == pytest.approx(f.frame_numbers[0] / 3.0)
    assert open_frame_folder(videos["folder"], 6, 16, 32).timestamps[0] is None


def test_seeking_reads_the_same_frames_as_decoding_through(tmp_path):
    path = str(tmp_path / "long.mp4")
    write_mp4(path, _frames(150, 5), rate=10, gop=8)
    through = open_video_file(path, 6, 16, 32, mode="sequential")
    seeking = open_video_file(path, 6, 16, 32, mode="exact")  # gaps are 2.5 s: seeks
    np.testing.assert_array_equal(seeking.frame_numbers, through.frame_numbers)
    np.testing.assert_array_equal(seeking.low, through.low)
    np.testing.assert_array_equal(seeking.full([0, 5]), through.full([0, 5]))
    assert seeking.timestamps == through.timestamps


def test_predict_every_input_form_and_bad_inputs_are_lines(tiny_workdir, videos):
    inputs = [videos[k] for k in ("mp4", "folder", "list", "short", "corrupt", "empty_dir",
                                  "missing")]  # fmt: skip
    inputs.append(os.path.dirname(videos["mp4_b"]))  # the tree: a.mp4, b.mp4, c_frames
    lines, summary = _run(tiny_workdir, inputs, batch_size=3, folder_fps=5.0)
    assert summary["videos"] == len(lines) == 11
    ok = [x for x in lines if "error" not in x]
    bad = {x["path"]: x["error"] for x in lines if "error" in x}
    assert summary["ok"] == len(ok) == 7 and summary["errors"] == len(bad) == 4
    assert "shorter than asked: 3 frames" in bad[videos["short"]]
    assert "undecodable video" in bad[videos["corrupt"]]
    assert "no videos" in bad[videos["empty_dir"]] and "not found" in bad[videos["missing"]]
    for x in ok:
        assert len(x["top"]) == 5 and x["top"][0]["class"] in CLASS_NAMES
        assert sum(t["prob"] for t in x["top"]) == pytest.approx(1.0, abs=1e-4)
        assert len(x["selected"]) == 2 and len(x["scores"]) == 6 and x["gmacs"] > 0
        assert x["selected"] == sorted(x["selected"])
    by_path = {}
    for x in ok:
        by_path.setdefault(x["path"], []).append(x)
    # the same video through a file path, a list file and a tree gives the same line
    a = by_path[videos["mp4"]]
    assert len(a) == 3 and a[0] == a[1] == a[2]
    assert all(s is not None for s in a[0]["selected_seconds"])
    assert by_path[videos["folder"]][0]["selected_seconds"][0] is not None


def test_predict_matches_the_jitted_model_on_the_frames_it_read(tiny_workdir, videos):
    trained = load_trained(tiny_workdir)
    lines, _ = _run(tiny_workdir, [videos["mp4"], videos["mp4_b"]], batch_size=2)
    vids = [open_video_file(videos[k], 6, 16, 32) for k in ("mp4", "mp4_b")]
    low = np.stack([v.low for v in vids])
    high = np.stack([np.stack([v.full([t])[0] for t in range(6)]) for v in vids])
    ref = jax.device_get(make_inference_fn(trained.model)(trained.variables, low, high))
    probs = jax.nn.softmax(ref["logits"])
    for i, line in enumerate(lines):
        assert line["selected"] == ref["indices"][i].tolist()
        np.testing.assert_allclose(line["scores"], ref["scores"][i], atol=1e-5)
        assert line["top"][0]["index"] == int(np.argmax(probs[i]))
        assert line["top"][0]["prob"] == pytest.approx(float(probs[i].max()), abs=1e-5)


def test_checkpoint_of_another_config_is_one_clear_error(tiny_workdir, tmp_path):
    other = str(tmp_path / "other")
    write_workdir(other, tiny_predict_config(model__recognizer__width=0.25))
    with pytest.raises(ValueError, match="does not fit the config"):
        load_trained(tiny_workdir, checkpoint=os.path.join(other, "sampler", "final"))


def test_cli_writes_lines_summary_and_contact_sheets(tiny_workdir, videos, tmp_path):
    out, sheets = str(tmp_path / "pred.jsonl"), str(tmp_path / "sheets")
    cmd = [sys.executable, "-m", "nsnet_jax.predict", f"--workdir={tiny_workdir}", f"--out={out}",
           f"--contact_sheets={sheets}", videos["mp4"], videos["missing"]]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in open(out)]
    assert len(lines) == 2 and "error" in lines[1]
    assert os.path.isfile(lines[0]["contact_sheet"])
    summary = json.loads(open(out + ".summary.json").read())
    assert summary["ok"] == 1 and summary["errors"] == 1
    bad = subprocess.run(cmd[:3] + [f"--workdir={tmp_path}", videos["mp4"]], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode != 0 and "not a training workdir" in bad.stderr.splitlines()[-1]


def test_cli_early_exit_flag(ee_workdir, videos, tmp_path):
    out = str(tmp_path / "pred.jsonl")
    cmd = [sys.executable, "-m", "nsnet_jax.predict", f"--workdir={ee_workdir}", f"--out={out}",
           "--engine=jax", "--early_exit_threshold=0", videos["mp4"]]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = [json.loads(x) for x in open(out)]
    assert line["early_exit"]["frames_used"] == 1 and len(line["selected"]) == 1
    summary = json.loads(open(out + ".summary.json").read())
    assert summary["early_exit"]["mean_frames_used"] == 1.0
    bad = subprocess.run([*cmd[:-2], "--early_exit_threshold=1.5", videos["mp4"]], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode != 0
    assert "--early_exit_threshold=1.5 must be in [0, 1]" in bad.stderr.splitlines()[-1]
    onnx = subprocess.run([*cmd[:-1], "--engine=onnx", videos["mp4"]], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    assert onnx.returncode == 2
    assert "--engine=onnx has no early exit" in onnx.stderr.splitlines()[-1]


@pytest.fixture(scope="module")
def split_run(tiny_fashion_dir, tmp_path_factory):
    """A tiny workdir on the built tiny split, evaluated, and the split exported to folders."""
    from nsnet_jax.evaluation import evaluate
    from nsnet_jax.inference.split_files import export_split_frames
    from nsnet_jax.sharding import data_mesh

    config = tiny_predict_config(
        data__name="salient_fashion/tiny_test", data__data_dir=tiny_fashion_dir,
        eval_batch_size=8, eval__num_select="2", eval__timing_repeats=1,
    )  # fmt: skip
    workdir = str(tmp_path_factory.mktemp("split_run"))
    write_workdir(workdir, config, seed=3)
    trained = load_trained(workdir)
    results = evaluate.evaluate(config, trained.model, trained.variables, data_mesh())
    os.makedirs(os.path.join(workdir, "eval"))
    with open(os.path.join(workdir, "eval", "results.json"), "w") as f:
        json.dump({k: v for k, v in results.items() if k != "per_video"}, f)
    folders = str(tmp_path_factory.mktemp("split_files"))
    rows = export_split_frames(config.data, config.data.eval_split, folders)
    return workdir, results, rows, folders


def test_evaluation_writes_per_video_lines_for_every_method_and_k(split_run, tmp_path):
    from nsnet_jax.evaluation.evaluate import write_per_video

    _, results, rows, _ = split_run
    lines = results["per_video"]
    keys = {(x["method"], x["k"]) for x in lines}
    assert keys == {(r["method"], r["k"]) for r in results["rows"]}
    assert len(lines) == len(keys) * results["num_videos"]
    for method, k in keys:
        mine = [x for x in lines if (x["method"], x["k"]) == (method, k)]
        top1 = np.mean([x["top5"][0][0] in x["labels"] for x in mine])
        row = next(r for r in results["rows"] if (r["method"], r["k"]) == (method, k))
        assert top1 == pytest.approx(row["top1"])
        assert all(len(x["selected"]) == k and len(x["sampler_scores"]) == 6 for x in mine)
    assert {x["video_id"] for x in lines} == {r["video_id"] for r in rows}
    path = write_per_video(str(tmp_path), lines)
    assert sum(1 for _ in open(path)) == len(lines)


def test_predict_on_exported_split_agrees_with_evaluation(split_run):
    """Pipeline views: identical to evaluation. Decode-aware: measured, printed, loosely bounded."""
    workdir, results, rows, folders = split_run
    ev = {x["video_id"]: x for x in results["per_video"] if x["method"] == "nsnet"}
    listing = os.path.join(folders, "test.txt")
    stats = {}
    for mode in (True, False):
        lines, summary = _run(workdir, [listing], batch_size=8, pipeline_views=mode)
        assert summary["ok"] == len(rows) and summary["errors"] == 0
        same_sel = same_top1 = 0
        correct = 0
        for row, line in zip(rows, lines, strict=True):
            ref = ev[row["video_id"]]
            same_sel += line["selected"] == ref["selected"]
            same_top1 += line["top"][0]["index"] == ref["top5"][0][0]
            correct += line["top"][0]["index"] in row["labels"]
            if mode:
                np.testing.assert_allclose(line["scores"], ref["sampler_scores"], atol=1e-5)
                assert line["top"][0]["prob"] == pytest.approx(ref["top5"][0][1], abs=1e-5)
        stats[mode] = (same_sel / len(rows), same_top1 / len(rows), correct / len(rows))
    nsnet = next(r for r in results["rows"] if r["method"] == "nsnet")
    assert stats[True] == (1.0, 1.0, pytest.approx(nsnet["top1"]))
    print(f"\ndecode-aware vs evaluation: selection agreement {stats[False][0]:.3f}, top-1 "
          f"agreement {stats[False][1]:.3f}, accuracy {stats[False][2]:.3f} vs "
          f"{nsnet['top1']:.3f}")  # fmt: skip
    assert stats[False][0] >= 0.5 and stats[False][1] >= 0.5


def test_worst_failures_are_confident_nsnet_errors_the_oracle_got_right(tmp_path):
    from nsnet_jax.demo import plot_worst_failures, worst_failures

    def line(vid, method, pred, prob, label=0):
        return {"video_id": vid, "method": method, "k": 2, "labels": [label],
                "top5": [[pred, prob]], "selected": [0, 1]}  # fmt: skip

    lines = [
        line("a", "nsnet", 1, 0.9), line("a", "oracle", 0, 0.8),  # fails, oracle right: in
        line("b", "nsnet", 1, 0.6), line("b", "oracle", 0, 0.8),  # in, less confident
        line("c", "nsnet", 1, 0.99), line("c", "oracle", 1, 0.8),  # oracle wrong too: out
        line("d", "nsnet", 0, 0.99), line("d", "oracle", 0, 0.8),  # nsnet right: out
    ]  # fmt: skip
    assert [x["video_id"] for x in worst_failures(lines, 2, 5)] == ["a", "b"]
    assert worst_failures(lines, 1, 5) == []
    (tmp_path / "eval").mkdir()
    for x in lines:
        x.update(sampler_scores=[0.1, 0.9, 0.3, 0.2], evidence=[2])
    (tmp_path / "eval" / "per_video.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    png = str(tmp_path / "worst.png")
    assert plot_worst_failures(str(tmp_path), png, 2, CLASS_NAMES) == 2 and os.path.getsize(png)


def test_cli_split_check_reports_top1_beside_evaluation(split_run, tmp_path):
    workdir, results, rows, _ = split_run
    frames, out = tmp_path / "frames", tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "nsnet_jax.predict", f"--workdir={workdir}", "--split=test",
           f"--split_dir={frames}", "--pipeline_views", "--engine=jax", f"--out={out}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    split = json.loads(proc.stderr.strip().splitlines()[-1])["summary"]["split"]
    nsnet = next(r for r in results["rows"] if r["method"] == "nsnet" and r["k"] == 2)
    assert split["predicted"] == split["videos"] == len(rows)
    assert split["top1"] == pytest.approx(nsnet["top1"]) == split["evaluation_nsnet_top1"]
