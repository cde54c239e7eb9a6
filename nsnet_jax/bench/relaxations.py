"""Why the perturbed top-k did not train: variance and bias of its gradient estimate, as JSON lines.

    python -m nsnet_jax.bench.relaxations [--repeats=200] [--reference_samples=N] [--loss_terms]

The perturbed selection's backward pass estimates g^T J with J = d E[P(s + sigma Z)] / d s from
S samples. For each spread of the scores across the T frames (std over frames; the fused scores
s_f + beta a lie in [0, 1 + beta]), each S and each estimator it prints, against a reference from
`reference_samples` samples of the unbiased centred estimator:
  rel_bias  ||mean over repeats - reference|| / ||reference||  (includes noise / sqrt(repeats))
  rel_rmse  sqrt(mean ||estimate - reference||^2) / ||reference||
  cosine    mean cosine between one estimate and the reference
  active    fraction of videos whose reference gradient is not ~0 (a sample can leave the top-k)
Estimators: `plain` (the original E[P Z] / sigma) and `centred` (E[(P - P(s)) Z] / sigma, now in
selection.perturbed_topk). The upstream gradient g = dL/dP has a large part that does not depend
on the frame: <dL/dchosen_k, frame_t> with raw 0..255 pixels. The first line measures that ratio
on the salient_fashion recognizer (random init, random frames) and the grid uses it.

`--loss_terms` adds, per train_mode, the norm of the gradient on the sampler's parameters of the
sampler loss and of `recognizer_loss_weight` x the recognizer loss through the selection (mean over
keys; salient_fashion shapes, random weights and a synthetic batch), with the plain perturbed
estimator as `perturbed_plain`.
"""

from __future__ import annotations

import json
import sys
from functools import partial

import jax
import jax.numpy as jnp

from nsnet_jax.models import selection

T, K, B = 16, 2, 64


def upstream_gradient_ratio(seed: int = 0) -> dict[str, float]:
    """|frame-independent part| / frame-dependent spread of dL/dM for the salient_fashion model."""
    from configs import salient_fashion
    from nsnet_jax.models.nsnet import NSNet, build_model, init_variables

    config = salient_fashion.get_config()
    model = build_model(config)
    variables = init_variables(model, config, jax.random.key(seed))
    size = config.data.recognizer_size
    frames = jax.random.uniform(jax.random.key(seed + 1), (8, T, size, size, 3)) * 255.0
    labels = jax.nn.one_hot(jnp.arange(8) % config.data.num_classes, config.data.num_classes)
    hard = selection.indices_to_matrix(jnp.tile(jnp.array([[3, 9]]), (8, 1)), T)

    def loss(matrix):
        chosen = selection.apply_selection_matrix(matrix, frames)
        out = model.apply(variables, chosen, method=NSNet.recognize)
        return -(jax.nn.log_softmax(out["logits"]) * labels).sum(-1).mean()

    g = jax.grad(loss)(hard)  # [B, K, T]
    offset = jnp.abs(g.mean(-1)).mean()
    spread = g.std(-1).mean()
    return {"offset": float(offset), "spread": float(spread), "ratio": float(offset / spread)}


def estimate(scores, g, sigma, samples, key, centred, chunk=10_000):
    total = jnp.zeros(scores.shape)
    baseline = (
        selection.indices_to_matrix(selection.topk_indices(scores, K), T) if centred else None
    )
    done = 0
    while done < samples:
        n = min(chunk, samples - done)
        m, z = selection.perturbed_samples(scores, K, n, sigma, jax.random.fold_in(key, done))
        total = total + selection.perturbed_vjp_estimate(m, z, g, sigma, baseline) * n
        done += n
    return total / samples


def grid(ratio: float, repeats: int, reference_samples: int, sigma: float) -> list[dict]:
    rows = []
    keys = jax.random.split(jax.random.key(0), 3)
    base = jax.random.normal(keys[0], (B, T))
    g = jax.random.normal(keys[1], (B, K, T)) + ratio * jax.random.normal(keys[2], (B, K, 1))
    est = jax.jit(estimate, static_argnums=(2, 3, 5))
    for spread in (0.01, 0.03, 0.1, 0.3, 1.0):
        scores = 1.0 + spread * base
        ref = est(scores, g, sigma, reference_samples, jax.random.key(99), True)
        ref_norm = float(jnp.linalg.norm(ref))
        active = float((jnp.abs(ref).sum(-1) > 1e-3 * jnp.abs(ref).sum(-1).max()).mean())
        for samples in (20, 100):
            for centred in (False, True):
                vals = jnp.stack(
                    [
                        est(scores, g, sigma, samples, jax.random.key(r), centred)
                        for r in range(repeats)
                    ]
                )
                err = vals - ref[None]
                cos = (vals * ref).sum((1, 2)) / (
                    jnp.linalg.norm(vals.reshape(repeats, -1), axis=1) * ref_norm + 1e-12
                )
                rows.append(
                    {
                        "spread": spread,
                        "sigma": sigma,
                        "sigma_over_spread": sigma / spread,
                        "samples": samples,
                        "estimator": "centred" if centred else "plain",
                        "rel_bias": float(jnp.linalg.norm(vals.mean(0) - ref) / ref_norm),
                        "rel_rmse": float(jnp.sqrt((err**2).sum((1, 2)).mean()) / ref_norm),
                        "cosine": float(cos.mean()),
                        "active": active,
                        "upstream_offset_ratio": ratio,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _plain_perturbed_topk():
    """perturbed_topk with the original backward pass (no control variate), for comparison."""

    @partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
    def topk(scores, k, num_samples, sigma, key):
        return selection.perturbed_samples(scores, k, num_samples, sigma, key)[0].mean(0)

    def fwd(scores, k, num_samples, sigma, key):
        m, z = selection.perturbed_samples(scores, k, num_samples, sigma, key)
        return m.mean(0), (m, z, key)

    def bwd(k, num_samples, sigma, res, g):
        m, z, key = res
        grad = selection.perturbed_vjp_estimate(m, z, g, sigma, None)
        return grad, jnp.zeros(key.shape, jax.dtypes.float0)

    topk.defvjp(fwd, bwd)
    return topk


def loss_term_norms(num_keys: int = 8, num_samples: int = 20) -> list[dict]:
    """|grad| on the sampler of the sampler loss and of the recognizer term, per train_mode."""
    from configs import salient_fashion
    from nsnet_jax.bench.common import synthetic_train_batch
    from nsnet_jax.models.nsnet import build_model, init_variables
    from nsnet_jax.train import step as train_step

    rows = []
    for mode in ("perturbed_plain", "perturbed", "gumbel", "sinkhorn"):
        config = salient_fashion.get_config()
        with config.unlocked():
            config.selection.train_mode = mode.replace("_plain", "")
            config.selection.num_samples = num_samples
        model = build_model(config)
        variables = init_variables(model, config, jax.random.key(0))
        batch = synthetic_train_batch(config, "sampler", config.batch_size, seed=0)
        original = selection.perturbed_topk
        if mode == "perturbed_plain":
            selection.perturbed_topk = _plain_perturbed_topk()
        try:
            loss_fn = train_step.sampler_loss_fn(config, model)

            def parts(params, rng, loss_fn=loss_fn, stats=variables["batch_stats"], batch=batch):
                _, (_, p) = loss_fn(params, stats, batch, rng)
                return p

            def sampler_grad(params, rng, term, parts=parts):
                return jax.grad(lambda q: parts(q, rng)[term])(params)["sampler"]

            grad_fn = jax.jit(sampler_grad, static_argnums=2)
            norms = {"recognizer": [], "frame": []}
            for i in range(num_keys):
                for term in norms:
                    g = grad_fn(variables["params"], jax.random.key(i), term)
                    norms[term].append(
                        float(jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(g))))
                    )
        finally:
            selection.perturbed_topk = original
        weight = config.selection.recognizer_loss_weight
        rows.append(
            {
                "train_mode": mode,
                "num_samples": num_samples,
                "sampler_grad_norm_frame_loss": sum(norms["frame"]) / num_keys,
                "sampler_grad_norm_recognizer_term": weight * sum(norms["recognizer"]) / num_keys,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str]) -> None:
    args = dict(a.lstrip("-").split("=", 1) for a in argv[1:] if "=" in a)
    repeats = int(args.get("repeats", 200))
    reference = int(args.get("reference_samples", 100_000))
    sigma = float(args.get("sigma", 0.05))
    if "--loss_terms" in argv:
        loss_term_norms()
        return
    measured = upstream_gradient_ratio()
    print(json.dumps({"upstream_gradient": measured}), flush=True)
    grid(measured["ratio"], repeats, reference, sigma)


if __name__ == "__main__":
    main(sys.argv)
