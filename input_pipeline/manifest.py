"""What a dataset was built from, and a fingerprint of its content, so nothing uses a stale one.

A video_folder build writes `build_manifest.json` beside its shards: the manual_dir, each list
file's and classes.txt's lines and sha256, the builder config, and per video its path, size and
mtime. The build compares it with the manual_dir before reusing a finished dataset; training and
`inspect` warn when the lists changed since. `fingerprint` names a built dataset's content (any
TFDS dataset: the manifest, dataset_info.json with each split's bytes, features.json); what is
derived from a dataset (sampler caches, training stages) records it and refuses another one.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from etils import epath

MANIFEST = "build_manifest.json"
FORMAT_VERSION = 1
# builder config fields that change what is written (not how: beam, descriptions)
CONFIG_FIELDS = (
    "name",
    "splits",
    "num_frames",
    "fps",
    "frame_folder_fps",
    "short_side",
    "jpeg_quality",
    "multi_label",
    "keyframes_only",
)
_HASHED_FILES = (MANIFEST, "dataset_info.json", "features.json")
_warned: set[str] = set()


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


def _list_files(root: str, splits: Iterable[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in ("classes.txt", *(f"{s}.txt" for s in splits)):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                raw = f.read()
            lines = raw.decode("utf-8", errors="replace").splitlines()
            out[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "lines": lines}
    return out


def describe_inputs(root: str, config: Any, entries: Mapping[str, list]) -> dict[str, Any]:
    """The manifest of a build from manual_dir `root` with builder `config` and these entries."""
    root = os.path.abspath(root)
    cfg = {k: getattr(config, k) for k in CONFIG_FIELDS if hasattr(config, k)}
    cfg = json.loads(json.dumps(cfg))  # tuples -> lists, as they read back
    splits = list(cfg.get("splits", entries))
    videos = {
        split: [[e.video_id, os.path.abspath(e.path), _stat(e.path)] for e in entries[split]]
        for split in splits
    }
    return {
        "format_version": FORMAT_VERSION,
        "manual_dir": root,
        "config": cfg,
        "files": _list_files(root, splits),
        "videos": videos,
    }


def write(data_dir: str, manifest: Mapping[str, Any]) -> None:
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    epath.Path(data_dir, MANIFEST).write_text(text)


def read(data_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a built dataset; None for datasets built without one."""
    path = epath.Path(data_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def _line_change(name: str, old: list[str], new: list[str]) -> str:
    """The first changed line of list file `name`, as 'train.txt line 3 is ..., was ...'."""
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, _, j1, _ in matcher.get_opcodes():
        if tag == "replace":
            return f"{name} line {j1 + 1} is {new[j1]!r}, was {old[i1]!r}"
        if tag == "insert":
            return f"{name} line {j1 + 1} is new: {new[j1]!r}"
        if tag == "delete":
            return f"{name} line {i1 + 1} ({old[i1]!r}) was removed"
    return f"{name} changed (same lines; line endings or encoding)"


def differences(built: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between a dataset's manifest and its inputs now, one phrase per change."""
    out = []
    for key in sorted(set(built.get("config", {})) | set(now.get("config", {}))):
        a, b = built.get("config", {}).get(key), now.get("config", {}).get(key)
        if a != b:
            out.append(f"builder config {key} is {b!r}, was {a!r}")
    files_a, files_b = built.get("files", {}), now.get("files", {})
    for name in sorted(set(files_a) | set(files_b)):
        a, b = files_a.get(name), files_b.get(name)
        if a is None:
            out.append(f"{name} is new")
        elif b is None:
            out.append(f"{name} is gone")
        elif a["sha256"] != b["sha256"]:
            out.append(_line_change(name, a["lines"], b["lines"]))
    for split in sorted(set(built.get("videos", {})) | set(now.get("videos", {}))):
        a = {v[1]: v for v in built.get("videos", {}).get(split, [])}
        b = {v[1]: v for v in now.get("videos", {}).get(split, [])}
        for path in sorted(set(a) | set(b)):
            if path not in a:
                out.append(f"{split} video {b[path][0]} is new")
            elif path not in b:
                out.append(f"{split} video {a[path][0]} is gone")
            elif a[path][2] != b[path][2]:
                out.append(f"{split} video {b[path][0]} changed on disk (size, mtime)")
    return out


def summary(changes: list[str]) -> str:
    """The first change, and how many more."""
    n = len(changes) - 1
    more = f" (and {n} more change{'s' if n > 1 else ''})" if n else ""
    return changes[0] + more


def stale_lists(data_dir: str | os.PathLike) -> list[str]:
    """Changes of the list files (and classes.txt) a dataset was built from; [] if unknown."""
    built = read(data_dir)
    if not built or not os.path.isdir(built.get("manual_dir", "")):
        return []  # no manifest, or read on a machine without the manual_dir: nothing to compare
    now = _list_files(built["manual_dir"], built.get("config", {}).get("splits", []))
    changes = []
    for name, rec in built.get("files", {}).items():
        cur = now.get(name)
        if cur is not None and cur["sha256"] != rec["sha256"]:
            changes.append(_line_change(name, rec["lines"], cur["lines"]))
    return changes


def rebuild_command(data_dir: str | os.PathLike, manifest: Mapping[str, Any]) -> str:
    """The build command that rebuilds the dataset in `data_dir` (.../video_folder/NAME/VERSION)."""
    root = epath.Path(data_dir).parent.parent.parent
    return (
        "python -m nsnet_jax.input_pipeline.build video_folder "
        f"--config={manifest['config'].get('name')} "
        f"--manual_dir={manifest['manual_dir']} --data_dir={root} --rebuild"
    )


def warn_if_stale(name: str, data_dir: str | os.PathLike) -> None:
    """Logs once per process when the dataset in `data_dir` is older than its list files."""
    key = os.fspath(data_dir)
    if key in _warned:
        return
    _warned.add(key)
    changes = stale_lists(data_dir)
    if changes:
        logging.warning(
            "dataset %s in %s is older than its lists (since the build, %s); rebuild it: %s",
            name,
            key,
            summary(changes),
            rebuild_command(data_dir, read(data_dir) or {}),
        )


def fingerprint(data_dir: str | os.PathLike) -> str:
    """16 hex digits naming a built dataset's content: the same inputs give the same value.

    Hashes the manifest (inputs, labels, per video size and mtime), dataset_info.json (per split
    its bytes and shard lengths) and features.json (class names, shapes): three reads, so it is
    cheap on gs:// too, where a stat per shard is not."""
    digest = hashlib.sha256()
    for name in _HASHED_FILES:
        path = epath.Path(data_dir) / name
        if path.exists():
            digest.update(f"{name}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]
