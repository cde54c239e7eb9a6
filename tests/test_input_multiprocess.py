"""Two JAX processes on 127.0.0.1 read disjoint parts of a split that together cover it once."""

from __future__ import annotations

import textwrap

import pytest

from tests.processes import free_port, run_workers, worker_env

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from tests.helpers import data_config
    from nsnet_jax.input_pipeline import pipeline

    cfg = data_config(sys.argv[3])
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    out = {"process": jax.process_index(), "devices": jax.device_count(), "train": [], "eval": []}
    it, meta = pipeline.create_dataset(cfg, "train", train=True, global_batch_size=8, seed=0)
    for _ in range(3):
        batch = next(it)
        out["train"].append(batch["index"].tolist())
        arrays = pipeline.to_global(batch, sharding)
        out["global_shape"] = list(arrays["frames"].shape)
        out["local_rows"] = sum(s.data.shape[0] for s in arrays["frames"].addressable_shards)
    it, meta = pipeline.create_dataset(cfg, "test", train=False, global_batch_size=4, seed=0)
    mask_total = 0.0
    for batch in it:
        out["eval"] += batch["index"][batch["mask"] == 1].tolist()
        arrays = pipeline.to_global(batch, sharding)
        mask_total += float(jax.jit(jnp.sum)(arrays["mask"]))
    out["global_mask_total"] = mask_total
    print("RESULT " + json.dumps(out), flush=True)
    """
)


@pytest.mark.slow
def test_two_processes_read_disjoint_covering_parts(tiny_fashion_dir):
    address = f"127.0.0.1:{free_port()}"
    args = [[address, str(i), tiny_fashion_dir] for i in range(2)]
    results = run_workers(WORKER, args, worker_env(), timeout=240)
    r0, r1 = sorted(results, key=lambda r: r["process"])
    assert r0["devices"] == 4 and r0["global_shape"] == [8, 6, 32, 32, 3]
    assert r0["local_rows"] == 4 and r1["local_rows"] == 4
    for a, b in zip(r0["train"], r1["train"], strict=True):
        assert len(a) == len(b) == 4 and not set(a) & set(b)
    # The first 3 global steps of 8 are one epoch of the 24 train videos: covered exactly once.
    assert sorted(sum(r0["train"] + r1["train"], [])) == list(range(24))
    assert not set(r0["eval"]) & set(r1["eval"])
    assert sorted(r0["eval"] + r1["eval"]) == list(range(13))
    assert r0["global_mask_total"] == r1["global_mask_total"] == 13.0
