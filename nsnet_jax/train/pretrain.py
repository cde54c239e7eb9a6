"""Stage 0 (optional): pretrain the backbones as image classifiers on labelled stills.

The paper starts both networks from ImageNet: MobileNetV2 knows objects before the sampler learns
which frames matter. For the CPU benchmark the same start comes from `input_pipeline.stills`:
Fashion-MNIST items, all 10 classes, composited like the videos' frames. The stage trains each
part named in `pretrain.parts` (its backbone, width and input size as configured, plus a linear
classifier that is then dropped) and leaves `pretrain/<part>` (Orbax, headless), which
`create_variables` loads before the video stages. Any registered backbone works; for real data a
converted ImageNet checkpoint (`model.*.init_from`) is the same thing, already done.
It keeps no mid-stage checkpoints: minutes long on the CPU, an interrupted stage simply reruns.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nsnet_jax.config_fields import NETWORKS
from nsnet_jax.input_pipeline import pipeline
from nsnet_jax.models.registry import create_backbone, normalize_images
from nsnet_jax.sharding import batch_sharding, host_local, replicated

log = logging.getLogger(__name__)

PARTS = NETWORKS  # the parts `pretrain.parts` may name (config_fields parses the field)


def variables_dir(workdir: str, part: str) -> str:
    return os.path.join(workdir, "pretrain", part)


def input_size(config: Any, part: str) -> int:
    return config.data.sampler_size if part == "sampler" else config.data.recognizer_size


def _network(config: Any, part: str, num_classes: int | None):
    spec = config.model[part]
    return create_backbone(
        spec.backbone,
        num_classes=num_classes,
        width=spec.width,
        dtype=jnp.dtype(config.model.dtype),
        depthwise_impl=config.model.depthwise_impl,
        spatial_pool=spec.spatial_pool,
    )


def headless_shapes(config: Any, part: str) -> dict[str, Any]:
    """{collection: {top-level module: shapes}} of `part`'s backbone without a classifier."""
    size = input_size(config, part)
    x = jnp.zeros((1, size, size, 3), jnp.dtype(config.model.dtype))
    net = _network(config, part, None)
    return dict(jax.eval_shape(lambda: net.init(jax.random.key(0), x, train=False)))


def _prepare(images: jax.Array, size: int, backbone: str, dtype: Any) -> jax.Array:
    x = images.astype(jnp.float32)
    if x.shape[1] != size:
        x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "bilinear")
    return normalize_images(x, backbone, dtype)


def pretrain_part(
    config: Any,
    part: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    mesh,
    num_epochs: float,
) -> tuple[dict[str, Any], dict[str, float]]:
    """(headless variables, metrics): `part`'s backbone trained to classify the stills for
    `num_epochs` (the part's entry of `Settings.pretrain_epochs`)."""
    pc = config.pretrain
    backbone, size = config.model[part].backbone, input_size(config, part)
    dtype = jnp.dtype(config.model.dtype)
    net = _network(config, part, num_classes)
    images, labels = train
    n, batch = len(images), pc.batch_size
    steps_per_epoch = n // batch
    total = max(1, int(round(num_epochs * steps_per_epoch)))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, pc.learning_rate, min(pc.warmup_steps, total // 2), total
    )
    tx = optax.adamw(schedule, weight_decay=pc.weight_decay)
    rep, data = replicated(mesh), batch_sharding(mesh)
    seed = config.seed + 5 + PARTS.index(part)
    x0 = jnp.zeros((1, size, size, 3), dtype)
    variables = jax.jit(lambda k: net.init(k, x0, train=False), out_shardings=rep)(
        jax.random.key(seed)
    )
    params, stats = variables["params"], variables.get("batch_stats", {})
    opt_state = jax.jit(tx.init, out_shardings=rep)(params)

    def loss_fn(params, stats, x, y, key):
        out, upd = net.apply(
            {"params": params, "batch_stats": stats},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        logits = out.astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (upd.get("batch_stats", stats), (logits.argmax(-1) == y).mean())

    @jax.jit
    def step(params, stats, opt_state, images, y, key):
        flip_key, drop_key = jax.random.split(key)
        x = _prepare(images, size, backbone, dtype)
        flip = jax.random.bernoulli(flip_key, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1], x)
        (loss, (stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, stats, x, y, drop_key
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss, acc

    @jax.jit
    def predict(params, stats, images):
        x = _prepare(images, size, backbone, dtype)
        return net.apply({"params": params, "batch_stats": stats}, x, train=False).argmax(-1)

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed + 1000)
    pc_count = jax.process_count()
    local = batch // pc_count
    mine = np.arange(jax.process_index() * local, (jax.process_index() + 1) * local)

    def to_global(images: np.ndarray, labels: np.ndarray) -> dict[str, jax.Array]:
        """This process's rows of a global batch, assembled as pipeline batches are."""
        return pipeline.to_global({"images": images[mine], "labels": labels[mine]}, data)

    start, order = time.time(), np.empty(0, np.int64)
    window: list[tuple[jax.Array, jax.Array]] = []  # (loss, acc) since the last log
    for s in range(total):
        if s % steps_per_epoch == 0:
            order = rng.permutation(n)  # the same on every process: each takes its rows
        idx = np.sort(order[(s % steps_per_epoch) * batch :][:batch])
        b = to_global(images[idx], labels[idx])
        params, stats, opt_state, loss, acc = step(
            params, stats, opt_state, b["images"], b["labels"], jax.random.fold_in(key, s)
        )
        window.append((loss, acc))
        done = s + 1
        if done % config.log_every_steps == 0 or done == total:
            loss_avg, acc_avg = (float(v) for v in np.mean(jax.device_get(window), axis=0))
            window.clear()
            elapsed = time.time() - start
            log.info(
                "pretrain %s: step %d/%d loss %.3f acc %.3f (%.0f s, ETA %.0f s)",
                part, done, total, loss_avg, acc_avg, elapsed, elapsed / done * (total - done),
            )  # fmt: skip
    test_images, test_labels = test
    correct = np.zeros(num_classes, np.int64)
    counted = np.zeros(num_classes, np.int64)
    for i in range(0, len(test_images), batch):  # each process scores its rows of each batch
        chunk, truth = test_images[i : i + batch], test_labels[i : i + batch]
        pad = batch - len(chunk)  # the last batch, padded to the global size
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        truth = np.concatenate([truth, np.zeros((pad,), truth.dtype)])
        b = to_global(chunk, truth)
        preds = host_local(predict(params, stats, b["images"]), mesh)
        valid = mine < batch - pad
        np.add.at(correct, truth[mine][valid], preds[valid] == truth[mine][valid])
        np.add.at(counted, truth[mine][valid], 1)
    if pc_count > 1:  # every process scored its own rows
        from jax.experimental import multihost_utils

        correct, counted = (
            np.asarray(multihost_utils.process_allgather(a)).sum(0) for a in (correct, counted)
        )
    metrics = {
        "steps": total,
        "train_loss": loss_avg,
        "test_accuracy": correct.sum() / max(counted.sum(), 1),
        # per class: the look-alike (Fashion-MNIST's Shirt, 6) is the one the sampler must reject
        "test_accuracy_per_class": (correct / np.maximum(counted, 1)).round(3).tolist(),
        "seconds": time.time() - start,
    }
    # only what the headless backbone has: the classifier (whatever its name) stays behind
    keep = headless_shapes(config, part)
    headless = {
        c: {k: v for k, v in tree.items() if k in keep[c]}
        for c, tree in (("params", params), ("batch_stats", stats))
        if c in keep
    }
    return headless, metrics
