"""Export: the SavedModel, loaded by a process without JAX or this project, matches JAX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from nsnet_jax.inference import export
from nsnet_jax.inference.export import export_all
from nsnet_jax.inference.jitted import make_inference_fn
from nsnet_jax.inference.trained import load_trained
from nsnet_jax.models.nsnet import NSNet
from tests.helpers import break_stablehlo, serialized_stablehlo

# Runs in a fresh interpreter where importing jax, flax or this project raises ImportError
# (TensorFlow 2.21 imports jax by itself when it is installed, and copes when it cannot).
TF_ONLY = textwrap.dedent(
    """
    import importlib.abc, sys
    sys.path = [p for p in sys.path if p not in ("", ".", {root!r})]
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("jax", "jaxlib", "flax", "nsnet_jax", "input_pipeline"):
                raise ImportError("blocked in this test: " + name)
    sys.meta_path.insert(0, Block())
    import numpy as np, tensorflow as tf
    data = np.load({inputs!r})
    m = tf.saved_model.load({saved!r})
    full = m.signatures["serving_default"](
        sampler_frames=tf.constant(data["s"]), frames=tf.constant(data["f"]))
    part = m.signatures["sample"](sampler_frames=tf.constant(data["s"]))
    sel = np.take_along_axis(data["f"], part["indices"].numpy()[:, :, None, None, None], 1)
    rec = m.signatures["recognize"](selected_frames=tf.constant(sel))
    any_k = m.signatures["recognize_frames"]  # any number of frames: early exit's prefixes
    one = any_k(selected_frames=tf.constant(sel[:, :1]))["logits"].numpy()
    every = any_k(selected_frames=tf.constant(data["f"]))["logits"].numpy()
    assert not any(k.split(".")[0] in ("jax", "nsnet_jax") for k in sys.modules)
    np.savez({outputs!r}, logits=full["logits"].numpy(), indices=full["indices"].numpy(),
             scores=full["scores"].numpy(), sample_indices=part["indices"].numpy(),
             rec_logits=rec["logits"].numpy(), one=one, every=every)
    """
)


@pytest.fixture(scope="module")
def exported(tiny_workdir, tmp_path_factory):
    trained = load_trained(tiny_workdir)
    out = str(tmp_path_factory.mktemp("export"))
    info = export_all(trained, out)
    return trained, out, info


def _inputs(config, batch: int, seed: int = 0):
    d, t = config.data, config.data.num_frames
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 256, (batch, t, d.sampler_size, d.sampler_size, 3), dtype=np.uint8)
    f = rng.integers(0, 256, (batch, t, d.recognizer_size, d.recognizer_size, 3), dtype=np.uint8)
    return s, f


def test_saved_model_without_jax_matches_jax(exported, tmp_path):
    trained, out, info = exported
    s, f = _inputs(trained.config, batch=3)  # a batch size the export never saw
    ref = jax.device_get(make_inference_fn(trained.model)(trained.variables, s, f))
    inputs, outputs = str(tmp_path / "in.npz"), str(tmp_path / "out.npz")
    np.savez(inputs, s=s, f=f)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = TF_ONLY.format(root=root, inputs=inputs, saved=info["saved_model"], outputs=outputs)
    env = dict(os.environ, PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(outputs)
    np.testing.assert_array_equal(got["indices"], np.asarray(ref["indices"]))
    np.testing.assert_array_equal(got["sample_indices"], np.asarray(ref["indices"]))
    np.testing.assert_allclose(got["logits"], np.asarray(ref["logits"]), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["rec_logits"], np.asarray(ref["logits"]), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["scores"], np.asarray(ref["scores"]), atol=1e-4, rtol=0)
    assert np.abs(np.asarray(ref["logits"])).max() > 1e-3  # the comparison is not of zeros
    first = np.take_along_axis(f, np.asarray(ref["indices"])[:, :1, None, None, None], 1)
    for frames, name in ((first, "one"), (f, "every")):  # k = 1 and k = T through one signature
        want = trained.model.apply(trained.variables, frames, method=NSNet.recognize)["logits"]
        np.testing.assert_allclose(got[name], np.asarray(want), atol=1e-4, rtol=0)


def test_jax_export_module_matches_and_signature_is_written(exported):
    trained, out, info = exported
    s, f = _inputs(trained.config, batch=2, seed=1)
    ref = jax.device_get(make_inference_fn(trained.model)(trained.variables, s, f))
    with open(os.path.join(out, "nsnet.jax_export"), "rb") as fh:
        module = jax.export.deserialize(fh.read())
    logits, indices, scores = module.call(s, f)
    np.testing.assert_array_equal(np.asarray(indices), np.asarray(ref["indices"]))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref["logits"]), atol=1e-5, rtol=0)
    sig = json.loads(open(os.path.join(out, "signature.json")).read())
    assert sig["class_names"][1] == "trouser" and sig["num_select"] == 2
    assert sig["inputs"]["frames"] == [6, 32, 32, 3]
    assert set(sig["signatures"]) == {"serving_default", "sample", "recognize", "recognize_frames"}
    assert sig["early_exit"]["k_max"] == 2 and sig["early_exit"]["rule"] == "margin"


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def test_export_targets_the_stablehlo_this_tensorflow_reads(exported):
    trained, out, info = exported
    tf_version, jax_version = export.tf_stablehlo_version(), export.jax_stablehlo_version()
    assert info["stablehlo_version"] == min(tf_version, jax_version, key=_v)
    assert export.saved_model_stablehlo_version(info["saved_model"]) == info["stablehlo_version"]
    # The block restores JAX's own target: later jax.export calls are unaffected.
    with export.stablehlo_target("0.9.0") as written:
        assert written == "0.9.0"
    assert export.jax_stablehlo_version() == jax_version


def test_a_saved_model_this_tensorflow_cannot_run_is_one_line(exported, tmp_path):
    trained, out, info = exported
    path = export.export_saved_model(trained, str(tmp_path / "sm"))
    break_stablehlo(path)
    shape = export.input_specs(trained.config)["sampler_frames"]
    with pytest.raises(export.SavedModelUnreadable) as err:
        export.load_saved_model(path, shape)
    message = str(err.value)
    assert "\n" not in message and "python -m nsnet_jax.export" in message
    assert f"written as StableHLO {info['stablehlo_version']}" in message


def test_jax_own_stablehlo_runs_or_fails_as_one_line(exported, tmp_path):
    """JAX's default target (no cap, no record): TensorFlow runs it when it reads that version,
    and when it does not (JAX 0.12 writes 1.18.0, TF 2.21 reads 1.13.7) the failure inside TF's
    XLA comes back as one line naming StableHLO, which predict turns into its JAX fallback."""
    trained, out, info = exported
    path = export.export_saved_model(trained, str(tmp_path / "sm"), stablehlo_version=None)
    shape = export.input_specs(trained.config)["sampler_frames"]
    if b"custom_call_v2" not in serialized_stablehlo(path):  # JAX 0.10 (1.15.0): TF 2.21 reads it
        assert export.load_saved_model(path, shape) is not None
    else:  # JAX 0.12 (1.18.0)
        with pytest.raises(export.SavedModelUnreadable, match="vhlo.custom_call_v2") as err:
            export.load_saved_model(path, shape)
        assert "\n" not in str(err.value)


@pytest.mark.slow
def test_export_into_an_existing_export_needs_force(tiny_workdir, tmp_path):
    out = tmp_path / "export"
    (out / "saved_model").mkdir(parents=True)
    (out / "saved_model" / "stale.pb").write_text("an older model")
    (out / "signature.json").write_text('{"old": true}')
    (out / "nsnet.jax_export").write_text("old")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "nsnet_jax.export", f"--workdir={tiny_workdir}", f"--out={out}",
           "--jax_export=false"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=root)
    refused = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert (
        f"error: --out={out} already holds an export (saved_model, nsnet.jax_export, "
        "signature.json): pass --force to overwrite it, or choose another --out"
    ) in refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert json.loads((out / "signature.json").read_text()) == {"old": True}

    forced = subprocess.run([*cmd, "--force"], cwd=root, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert json.loads((out / "signature.json").read_text())["class_names"][1] == "trouser"
    assert not (out / "saved_model" / "stale.pb").exists()
    assert not (out / "nsnet.jax_export").exists()  # none of the old export outlives the new one
