"""Why the perturbed top-k did not train: variance and bias of its gradient estimate, as JSON lines.

    python -m nsnet_jax.bench.relaxations [--repeats=200] [--reference_samples=N] [--loss_terms]
        [--swaps=WORKDIR,...]

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

`--swaps=WORKDIR[,WORKDIR]` measures, on trained runs, what the first-order estimator believes
about swapping a selected frame for another (its pixel-space linearisation of the recognizer's
loss) against the loss change measured by running the recognizer on the swapped selection, and
how often noise of each scale changes the top-k (`swap_linearisation`).

`--loss_terms` adds, per train_mode, the norm of the gradient on the sampler's parameters of the
sampler loss and of `recognizer_loss_weight` x the recognizer loss through the selection (mean over
keys; salient_fashion shapes, random weights and a synthetic batch), with the plain perturbed
estimator as `perturbed_plain`, the centred one as `perturbed_first_order`, and the loss
estimator (the default) as `perturbed`.
"""

from __future__ import annotations

import json
import sys
from functools import partial

import jax
import jax.numpy as jnp
from absl import flags

from nsnet_jax.flag_parsing import run_tool
from nsnet_jax.models import selection

T, K, B = 16, 2, 64


def upstream_gradient_ratio(seed: int = 0) -> dict[str, float]:
    """|frame-independent part| / frame-dependent spread of dL/dM for the salient_fashion model."""
    from nsnet_jax.configs import salient_fashion
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
    from nsnet_jax.bench.common import synthetic_train_batch
    from nsnet_jax.configs import salient_fashion
    from nsnet_jax.models.nsnet import build_model, init_variables
    from nsnet_jax.train import step as train_step

    rows = []
    for mode in ("perturbed_plain", "perturbed_first_order", "perturbed", "gumbel", "sinkhorn"):
        config = salient_fashion.get_config()
        with config.unlocked():
            config.selection.train_mode = mode.split("_")[0]
            config.selection.num_samples = num_samples
            if mode != "perturbed":
                config.selection.perturbed_estimator = "first_order"
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


def swap_linearisation(workdir: str, num_videos: int = 256, k: int = K) -> dict:
    """What the first-order perturbed gradient believes about frame swaps, against the truth.

    On a trained run (its recognizer; its sampler for the scores) and test videos: the loss
    change of replacing selected frame k by frame u, predicted from g = dL/dP (the first-order
    estimator's only view of the recognizer: <dL/dchosen_k, frame_u - frame_k>) against the
    change measured by running the recognizer on the swapped selection; and how often
    Gaussian noise of each scale changes the top-k of the sampler's fused scores.
    """
    from nsnet_jax.inference.trained import load_trained
    from nsnet_jax.input_pipeline import pipeline
    from nsnet_jax.models.nsnet import NSNet
    from nsnet_jax.train.losses import per_video_cross_entropy

    trained = load_trained(workdir)
    config, model, variables = trained.config, trained.model, trained.variables
    batches, _ = pipeline.create_dataset(
        config.data, config.data.eval_split, train=False, global_batch_size=32, seed=0
    )

    def video_losses(matrix, frames, labels):
        chosen = selection.apply_selection_matrix(matrix, frames)
        logits = model.apply(variables, chosen, method=NSNet.recognize)["logits"]
        return per_video_cross_entropy(logits, labels)

    @jax.jit
    def one_batch(sampler_frames, frames, labels, evidence):
        frames = frames.astype(jnp.float32)
        scores = model.apply(variables, sampler_frames, method=NSNet.sample)["scores"]
        t = scores.shape[-1]
        idx = selection.topk_indices(scores, k)
        hard = selection.indices_to_matrix(idx, t)
        base = video_losses(hard, frames, labels)
        g = jax.grad(lambda m: video_losses(m, frames, labels).sum())(hard)  # [B, K, T]
        predicted = g - jnp.take_along_axis(g, idx[..., None], axis=-1)  # [B, K, T]

        def swapped(slot, u):
            m = hard.at[:, slot].set(jax.nn.one_hot(jnp.full(idx.shape[:1], u), t))
            return video_losses(m, frames, labels) - base

        true = jax.vmap(lambda slot: jax.vmap(lambda u: swapped(slot, u))(jnp.arange(t)))(
            jnp.arange(k)
        )  # [K, T, B]
        true = jnp.transpose(true, (2, 0, 1))
        valid = 1.0 - hard.sum(1, keepdims=True).clip(0, 1)  # u not already selected
        valid = jnp.broadcast_to(valid, true.shape)
        std = scores.std(-1)
        flips = {}
        for sig in (0.05, 0.2, 1.0):
            idx_z, _ = selection.noisy_topk_indices(scores, k, 32, sig, jax.random.key(0))
            flips[sig] = (idx_z != idx[None]).any(-1).mean()
        ev = evidence[:, None, :] * valid
        return {
            "predicted": predicted, "true": true, "valid": valid, "evidence_pairs": ev,
            "score_std": std, "flips": flips, "score_range": scores.max(-1) - scores.min(-1),
        }  # fmt: skip

    outs, seen = [], 0
    for host in batches:
        keep = host["mask"] > 0
        out = jax.device_get(
            one_batch(host["sampler_frames"], host["frames"], host["labels"], host["evidence"])
        )
        outs.append((out, keep))
        seen += int(keep.sum())
        if seen >= num_videos:
            break
    import numpy as np

    def cat(name):
        return np.concatenate([o[name][m] for o, m in outs])

    pred, true, valid, evp = cat("predicted"), cat("true"), cat("valid"), cat("evidence_pairs")
    corrs = []
    for p_, t_, v_ in zip(pred, true, valid, strict=True):
        sel = v_ > 0
        if sel.sum() > 2 and p_[sel].std() > 0 and t_[sel].std() > 0:
            corrs.append(np.corrcoef(p_[sel], t_[sel])[0, 1])
    sel = valid > 0
    evs = evp > 0
    return {
        "workdir": workdir,
        "videos": int(pred.shape[0]),
        "k": k,
        "pearson_predicted_vs_true_per_video": float(np.mean(corrs)),
        "sign_agreement": float((np.sign(pred[sel]) == np.sign(true[sel])).mean()),
        "median_abs_predicted_over_true": float(
            np.median(np.abs(pred[sel])) / np.median(np.abs(true[sel]))
        ),
        "swap_to_evidence_lowers_loss_true": float((true[evs] < 0).mean()),
        "swap_to_evidence_lowers_loss_predicted": float((pred[evs] < 0).mean()),
        "swap_to_other_lowers_loss_true": float((true[sel & ~evs] < 0).mean()),
        "swap_to_other_lowers_loss_predicted": float((pred[sel & ~evs] < 0).mean()),
        "fused_score_std_median": float(np.median(cat("score_std"))),
        "fused_score_range_median": float(np.median(cat("score_range"))),
        "topk_changed_by_noise": {
            str(s): float(np.mean([o["flips"][s] for o, _ in outs])) for s in (0.05, 0.2, 1.0)
        },
    }


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_integer("repeats", 200, "estimates per grid cell", flag_values=fv)
    flags.DEFINE_integer("reference_samples", 100_000, "samples of the reference", flag_values=fv)
    flags.DEFINE_float("sigma", 0.05, "the perturbation's scale", flag_values=fv)
    flags.DEFINE_string("swaps", None, "WORKDIR[,WORKDIR]: swap linearisation", flag_values=fv)
    flags.DEFINE_bool("loss_terms", False, "gradient norms of the loss terms", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__)


def _main(args: flags.FlagValues, _: list[str]) -> None:
    if args.swaps:
        for workdir in args.swaps.split(","):
            print(json.dumps(swap_linearisation(workdir)), flush=True)
        return
    if args.loss_terms:
        loss_term_norms()
        return
    measured = upstream_gradient_ratio()
    print(json.dumps({"upstream_gradient": measured}), flush=True)
    grid(measured["ratio"], args.repeats, args.reference_samples, args.sigma)


if __name__ == "__main__":
    sys.exit(main())
