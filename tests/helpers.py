"""Helpers the test files share, imported one way: `from tests.helpers import ...`.

The fixtures built from them (the tiny dataset, the tiny trained workdir) are in tests/conftest.py.
Heavy imports stay inside the functions, so that collecting a test file costs nothing extra.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# ---- the tiny salient_fashion dataset (fixture `tiny_fashion_dir`)

TINY = dict(num_train=24, num_test=13, num_frames=6, canvas_size=32)


def data_config(data_dir: str, **overrides: Any) -> Any:
    """A config.data-like ConfigDict for the tiny dataset (small sizes keep tests fast)."""
    from nsnet_jax.configs.default import get_config

    cfg = get_config().data
    cfg.name = "salient_fashion/tiny_test"
    cfg.data_dir = data_dir
    cfg.num_frames = TINY["num_frames"]
    cfg.sampler_size = 16
    cfg.recognizer_size = 32
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


# ---- a finished-looking tiny workdir (fixture `tiny_workdir`)

CLASS_NAMES = ["tshirt", "trouser", "pullover", "dress", "coat"]


def write_workdir(
    workdir: str, config: Any, seed: int = 1, class_names: Sequence[str] = CLASS_NAMES
) -> None:
    """config.json, run_info.json and sampler/final, as a finished run leaves them.

    Random-init variables stand in for trained ones: predict and export must reproduce the JAX
    model whatever its weights, and the BatchNorm statistics are perturbed so that they matter.
    """
    import jax

    from nsnet_jax.models.nsnet import build_model, init_variables
    from nsnet_jax.train import checkpointing

    model = build_model(config)
    variables = init_variables(model, config, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(
        lambda x: np.asarray(x) + rng.normal(0, 0.05, x.shape).astype(x.dtype), variables
    )
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    with open(os.path.join(workdir, "run_info.json"), "w") as f:
        json.dump({"class_names": list(class_names)}, f)
    checkpointing.save_variables(os.path.join(workdir, "sampler", "final"), variables)


def tiny_predict_config(**overrides: Any) -> Any:
    """T=6 frames, 16 px sampler view, 32 px recognizer view, K=2, 5 classes."""
    from tests.tiny import tiny_config

    return tiny_config(data__sampler_size=16, data__recognizer_size=32, **overrides)


# ---- videos and frame folders on disk (video_folder builds)


def brightness_ramp(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frame i is flat grey at 20 + 10*i: the order is readable after a lossy round trip."""
    return [np.full((h, w, 3), 20 + 10 * i, np.uint8) for i in range(n)]


def write_mp4(path: str, frames: list[np.ndarray], rate: int = 10, gop: int = 0) -> None:
    """An H.264 .mp4 of `frames` at `rate` fps (`gop`: keyframe interval, 0 = the encoder's)."""
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_frames(folder: str, frames: list[np.ndarray]) -> None:
    """image_1.jpg .. image_N.jpg in a new `folder`."""
    from PIL import Image

    os.makedirs(folder)
    for i, f in enumerate(frames, 1):  # image_1 .. image_12: natural, not lexical, order
        Image.fromarray(f).save(os.path.join(folder, f"image_{i}.jpg"), quality=95)


# ---- config files as the command line reads them


def parse_config(config_file: str, *overrides: str) -> Any:
    """configs/`config_file` with `--config.x=y` overrides, parsed as the commands parse it."""
    from absl import flags
    from ml_collections import config_flags

    argv = [sys.argv[0], f"--config={ROOT / 'configs' / config_file}", *overrides]
    fv = flags.FlagValues()
    # config_flags discovers `--config.*` override flags from the argv it is given
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
    fv(argv)
    return fv.config


def _call_modules(path: str):
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel.FromString(
        open(os.path.join(path, "saved_model.pb"), "rb").read()
    )
    nodes = [
        node
        for graph in model.meta_graphs
        for fn in graph.graph_def.library.function
        for node in fn.node_def
        if node.op == "XlaCallModule"
    ]
    return model, nodes


def serialized_stablehlo(path: str) -> bytes:
    """The StableHLO bytecode of every XlaCallModule op, concatenated (op names are readable)."""
    return b"".join(node.attr["module"].s for node in _call_modules(path)[1])


def break_stablehlo(path: str) -> None:
    """Replaces the StableHLO inside every XlaCallModule op of a SavedModel by bytes no StableHLO
    version reads: the failure a TensorFlow older than the exporting JAX meets, on any JAX."""
    model, nodes = _call_modules(path)
    assert nodes
    for node in nodes:
        node.attr["module"].s = b"ML\xefR" + b"\x00" * 64
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(model.SerializeToString())
