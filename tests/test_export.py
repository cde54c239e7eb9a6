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

from nsnet_jax.inference.export import export_all
from nsnet_jax.inference.jitted import make_inference_fn
from nsnet_jax.inference.trained import load_trained

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
    assert not any(k.split(".")[0] in ("jax", "nsnet_jax") for k in sys.modules)
    np.savez({outputs!r}, logits=full["logits"].numpy(), indices=full["indices"].numpy(),
             scores=full["scores"].numpy(), sample_indices=part["indices"].numpy(),
             rec_logits=rec["logits"].numpy())
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
