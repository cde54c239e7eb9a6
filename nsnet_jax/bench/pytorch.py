"""The same NSNet pipeline in PyTorch with JAX's weights: eager and torch.compile, same shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nsnet_jax.bench.common import Emit
from nsnet_jax.costs.timing import rounded, time_call


def bench_torch(
    config: Any,
    variables: Any,
    jax_results: dict[str, Any],
    batch: int,
    repeats: int,
    warmup: int,
    compile_: bool,
    emit: Emit,
) -> None:
    """The same pipeline in PyTorch with JAX's weights: eager, then torch.compile where it works."""
    try:
        import torch

        from nsnet_jax.bench import torch_reference as tr
    except ImportError as e:
        emit("torch_unavailable", None, "", framework="torch", error=f"{type(e).__name__}: {e}")
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fields = {
        "framework": "torch",
        "torch_version": torch.__version__,
        "torch_device": device,
        "torch_threads": torch.get_num_threads(),
    }
    if device == "cuda":
        fields["device"] = torch.cuda.get_device_name()
    try:
        model = tr.build_torch_nsnet(config)
        tr.load_jax_variables(model, variables, config)
    except (NotImplementedError, ValueError) as e:
        emit("torch_unsupported", None, "", error=f"{type(e).__name__}: {e}", **fields)
        return
    model = model.to(device)
    lo_np, hi_np = jax_results["frames"]
    lo, hi = torch.from_numpy(lo_np.copy()).to(device), torch.from_numpy(hi_np.copy()).to(device)
    t, k = config.data.num_frames, config.model.num_select
    from nsnet_jax.inference import uniform_indices

    uniform = torch.from_numpy(uniform_indices(batch, t, k)).long().to(device)
    autocast = config.model.dtype == "bfloat16"

    def sync(x: Any) -> Any:
        if device == "cuda":
            torch.cuda.synchronize()
        return x

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args):
            with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=autocast):
                return fn(*args)

        return run

    pipelines = {
        "nsnet": (lambda m: m, (lo, hi)),
        "all_t": (lambda m: m.recognizer, (hi,)),
        "uniform_k": (lambda m: lambda x, i: m.recognizer(tr.gather_frames(x, i)), (hi, uniform)),
    }
    with torch.inference_mode():
        logits, indices, _ = model(lo, hi)
    agree = float((indices.cpu().numpy() == jax_results["nsnet_indices"]).all(axis=1).mean())
    emit(
        "torch_jax_selection_agreement",
        agree,
        "fraction of videos",
        max_abs_logit_diff=float(
            np.abs(logits.float().cpu().numpy() - jax_results["nsnet_logits"]).max()
        ),
        note="same weights (JAX variables copied into torch)",
        **fields,
    )
    modes = ["eager"] + (["compile"] if compile_ else [])
    for mode in modes:
        medians = {}
        for name, (select, args) in pipelines.items():
            fn = select(model)
            if mode == "compile":
                fn = torch.compile(fn)
            run = wrap(fn)
            try:
                timing = time_call(lambda run=run, args=args: run(*args), repeats, warmup, sync)
            except Exception as e:  # noqa: BLE001 - report any backend failure, keep going
                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                emit(f"torch_{mode}_{name}_error", None, "", error=msg[:500], **fields)
                continue
            medians[name] = timing["median_s"]
            emit(
                f"torch_{mode}_{name}_videos_per_s",
                round(batch / timing["median_s"], 4),
                "videos/s",
                **rounded(timing),
                **fields,
            )
        if "nsnet" in medians and "all_t" in medians:
            emit(
                f"torch_{mode}_speedup_nsnet_over_all_t",
                round(medians["all_t"] / medians["nsnet"], 4),
                "x",
                **fields,
            )
