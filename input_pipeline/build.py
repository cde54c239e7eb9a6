"""Build a dataset without Apache Beam: one process per core, progress with ETA, resumable.

python -m nsnet_jax.input_pipeline.build video_folder --config=NAME --manual_dir=DIR --data_dir=OUT
    [--workers=N] [--keep_cache] [--rebuild]
python -m nsnet_jax.input_pipeline.build salient_fashion --config=small --data_dir=OUT

Writes the same dataset as `tfds build` (same examples, same bytes). Stop it at any time (Ctrl-C,
a killed job): the rerun with the same arguments skips the videos already decoded, which wait in
OUT/video_folder/NAME/build_cache-VERSION-HASH/ until the build finishes (their labels come from
the list as it is then). A finished dataset records what it was built from (build_manifest.json);
when the lists, classes.txt, a video file or the builder config changed since, the command stops
naming the first change, and --rebuild replaces the dataset (never silently: others may read it).

A mistake in the inputs (a split with no usable video, inputs changed since a finished build) and a
full disk are one line, `error: ...`, naming the path and the fix (exit code 2 and 1); --verbose or
NSNET_VERBOSE=1 shows the traceback. One build per dataset config and OUT at a time
(OUT/DATASET/NAME/build.lock names the running one; a second stops at once); a build killed with
-9 leaves TFDS's incomplete.* folder, which the next build removes.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import signal
import sys

import tensorflow_datasets as tfds
from absl import app, flags

from nsnet_jax import locking
from nsnet_jax.errors import is_disk_full
from nsnet_jax.flag_parsing import run_tool
from nsnet_jax.input_pipeline import manifest
from nsnet_jax.input_pipeline.build_pool import CACHE_SUFFIX

log = logging.getLogger(__name__)
LOCK_NAME = "build.lock"


class InputsChangedError(RuntimeError):
    """A finished dataset's lists, videos or config changed since it was built."""


def _changes_since_build(vf, probe, manual_dir: str) -> list[str]:
    """What differs between a finished dataset's manifest and `manual_dir` now."""
    built = manifest.read(probe.data_dir)
    if built is None:
        logging.warning(
            "%s in %s has no %s (built before manifests were recorded): cannot tell whether its "
            "lists changed; --rebuild rebuilds it and records one",
            probe.info.full_name,
            probe.data_dir,
            manifest.MANIFEST,
        )
        return []
    cfg = probe.builder_config
    try:
        _, entries, _ = vf.read_manual_dir(manual_dir, cfg.splits, cfg.multi_label)
    except FileNotFoundError as e:  # a finished dataset needs no manual_dir: keep it
        first = str(e).splitlines()[0]
        logging.warning("%s: cannot compare with its inputs (%s); kept", probe.data_dir, first)
        return []
    return manifest.differences(built, manifest.describe_inputs(manual_dir, cfg, entries))


def build_lock(builder: tfds.core.DatasetBuilder, data_dir: str) -> locking.WriterLock:
    """One build per dataset config and data_dir at a time: DATA_DIR/NAME/CONFIG/build.lock.

    Two builds into one directory overwrite each other's cache and shards.
    """
    directory = os.path.dirname(os.fspath(builder.data_dir))
    name = f"{builder.name}/{builder.builder_config.name}"
    what = f"the build of {name} in {data_dir}"
    return locking.WriterLock(os.path.join(directory, LOCK_NAME), what, flag="--data_dir")


def remove_stale_incomplete(builder: tfds.core.DatasetBuilder) -> list[str]:
    """Removes the `incomplete.*` folders a killed build left beside the dataset's versions.

    TFDS writes a build into DATA_DIR/NAME/CONFIG/incomplete.XXXX and renames it when done; a
    build killed with -9 leaves it behind. Only while holding the build lock: a running build's
    folder looks the same.
    """
    directory = os.path.dirname(os.fspath(builder.data_dir))
    removed = []
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), "incomplete.*"))):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            log.warning("removed %s, left behind by an interrupted build", path)
            removed.append(path)
    return removed


def build_video_folder(
    config: str | tfds.core.BuilderConfig,
    manual_dir: str,
    data_dir: str,
    workers: int = 0,
    keep_cache: bool = False,
    rebuild: bool = False,
) -> tfds.core.DatasetBuilder:
    """`_build_video_folder` under the dataset's build lock, after removing a killed build's
    leftovers; LockHeldError (one line) when another build of it runs."""
    from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf

    probe = vf.Builder(config=config, data_dir=data_dir)
    with build_lock(probe, data_dir):
        remove_stale_incomplete(probe)
        return _build_video_folder(config, manual_dir, data_dir, workers, keep_cache, rebuild)


def _build_video_folder(
    config: str | tfds.core.BuilderConfig,
    manual_dir: str,
    data_dir: str,
    workers: int = 0,
    keep_cache: bool = False,
    rebuild: bool = False,
) -> tfds.core.DatasetBuilder:
    """Builds video_folder/`config` with `workers` processes (0: one per core).

    A finished dataset is kept when its inputs are unchanged; InputsChangedError names the first
    change otherwise. `rebuild` replaces it in either case.
    """
    from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf

    workers = workers or os.cpu_count() or 1
    probe = vf.Builder(config=config, data_dir=data_dir)
    mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    if probe.is_prepared():
        changes = _changes_since_build(vf, probe, manual_dir)
        if changes and not rebuild:
            raise InputsChangedError(
                f"{probe.info.full_name} in {probe.data_dir} was built from other inputs: "
                f"{manifest.summary(changes)}. Rerun with --rebuild to replace it (sampler "
                "caches and training stages made from it then refuse the new one until redone)."
            )
        if rebuild:
            mode = tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS  # deletes, then builds
            why = manifest.summary(changes) if changes else "--rebuild"
            logging.warning("rebuilding %s in %s: %s", probe.info.full_name, probe.data_dir, why)
    # The cache is only valid for these exact settings (T, size, fps, ...): name it by them.
    digest = hashlib.sha1(repr(probe.builder_config).encode()).hexdigest()[:10]
    cache = os.path.join(os.path.dirname(probe.data_dir), f"build_cache-{probe.version}-{digest}")
    builder = vf.Builder(config=config, data_dir=data_dir, workers=workers, cache_dir=cache)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, download_mode=mode)
    )
    if not keep_cache and os.path.isdir(cache):
        shutil.rmtree(cache)
    return builder


def build_salient_fashion(config: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds salient_fashion/`config` in this process (about 2 minutes for the default)."""
    from nsnet_jax.input_pipeline.datasets.salient_fashion import (
        salient_fashion_dataset_builder as sf,
    )

    builder = sf.Builder(config=config, data_dir=data_dir)
    with build_lock(builder, data_dir):
        remove_stale_incomplete(builder)
        builder.download_and_prepare()
    return builder


def _disk_full(dataset: str, config: str, data_dir: str) -> str:
    """Where the disk filled, how much is free, and what the rerun keeps."""
    path = os.path.abspath(data_dir)
    probe = path
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free / 2**20
    caches = glob.glob(os.path.join(path, dataset, config, "build_cache-*"))
    kept = [
        f
        for c in caches
        for f in glob.glob(os.path.join(c, "**", "*"), recursive=True)
        if os.path.isfile(f) and f.endswith(CACHE_SUFFIX)
    ]
    if kept:
        keep = f"{len(kept)} decoded video(s) are kept in {caches[0]}, not decoded again"
    else:
        keep = "nothing is kept: the rerun builds from the start"
    return (
        f"disk full while building {dataset}/{config} in {path} ({free:.1f} MiB free "
        f"on that filesystem): free space there, then rerun the same command; {keep}"
    )


DATASETS = ("video_folder", "salient_fashion")


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_string("config", None, "the builder config, e.g. small or fcvid", flag_values=fv)
    flags.mark_flag_as_required("config", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "where the dataset is written", flag_values=fv)
    flags.mark_flag_as_required("data_dir", flag_values=fv)
    flags.DEFINE_string("manual_dir", None, "video_folder: the manual_dir", flag_values=fv)
    flags.DEFINE_integer("workers", 0, "processes (0: one per core)", flag_values=fv)
    flags.DEFINE_bool("keep_cache", False, "keep decoded videos after the build", flag_values=fv)
    flags.DEFINE_bool(
        "rebuild", False, "replace a finished dataset (e.g. lists changed)", flag_values=fv
    )
    flags.DEFINE_bool("verbose", False, "tracebacks for one-line errors", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__, positional=True)


def _main(args: flags.FlagValues, positional: list[str]) -> int:
    if len(positional) != 1 or positional[0] not in DATASETS:
        raise app.UsageError(f"name one dataset to build, one of {list(DATASETS)}: {positional}")
    dataset = positional[0]
    if dataset == "video_folder" and not args.manual_dir:
        raise app.UsageError("video_folder needs --manual_dir (see docs/data.md)")
    # A killed job (SIGTERM, e.g. a scheduler's preemption) unwinds like Ctrl-C: the pool's
    # workers are stopped and the finished videos stay in the cache for the rerun.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    verbose = args.verbose or os.environ.get("NSNET_VERBOSE", "0") not in ("", "0")
    try:
        if dataset == "video_folder":
            builder = build_video_folder(
                args.config,
                args.manual_dir,
                args.data_dir,
                args.workers,
                args.keep_cache,
                args.rebuild,
            )
        else:
            builder = build_salient_fashion(args.config, args.data_dir)
    except InputsChangedError as e:
        if verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if verbose or not (getattr(e, "one_line", False) or is_disk_full(e)):
            raise
        one_line = getattr(e, "one_line", False)
        message = e if one_line else _disk_full(dataset, args.config, args.data_dir)
        print(f"error: {message}", file=sys.stderr)
        return getattr(e, "exit_code", 1) if one_line else 1
    print(f"built {builder.info.full_name} in {builder.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
