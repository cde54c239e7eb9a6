"""A finished-looking tiny workdir (config.json, run_info.json, sampler/final) for predict/export.

Random-init variables stand in for trained ones: predict and export must reproduce the JAX model
whatever its weights, and the BatchNorm statistics are perturbed so that they matter.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from nsnet_jax.models.nsnet import build_model, init_variables
from nsnet_jax.train import checkpointing
from tests.tiny import tiny_config

CLASS_NAMES = ["tshirt", "trouser", "pullover", "dress", "coat"]


def write_workdir(workdir: str, config, seed: int = 1, class_names=CLASS_NAMES) -> None:
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


def tiny_predict_config(**overrides):
    """T=6 frames, 16 px sampler view, 32 px recognizer view, K=2, 5 classes."""
    return tiny_config(data__sampler_size=16, data__recognizer_size=32, **overrides)


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory) -> str:
    workdir = str(tmp_path_factory.mktemp("trained"))
    write_workdir(workdir, tiny_predict_config())
    return workdir


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
