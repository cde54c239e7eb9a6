"""Read one record of a `tfds.data_source` so that a failure names the split, index and shard file.

A flipped byte in an array_record shard fails inside Riegeli with "Corrupted Riegeli/records file
... at byte N", which names neither the file nor the example; an index past the end fails with
"Record key should be in [0, num_records)". Both are re-raised here with what to do.
"""

from __future__ import annotations

from typing import Any


class CorruptRecordError(RuntimeError):
    """A shard of the dataset cannot be read at this example; the message names the file."""


def _split_name(source: Any) -> str:
    info = getattr(source, "dataset_info", None)
    name = getattr(info, "full_name", "?")
    return f"split {getattr(source, 'split', '?')!r} of {name}"


def locate(source: Any, index: int) -> tuple[str, int]:
    """(shard file, record number inside it) holding example `index` of a tfds data source."""
    info = source.dataset_info
    split = info.splits[str(source.split)]
    rest = index
    for fi in split.file_instructions:
        if rest < fi.take:
            return str(fi.filename), int(fi.skip) + rest
        rest -= fi.take
    raise IndexError(index)


def check_index(source: Any, index: int) -> None:
    """Raises IndexError saying how many examples there are when `index` is out of range."""
    n = len(source)
    if not 0 <= index < n:
        raise IndexError(
            f"Example index {index} is out of range: {_split_name(source)} has {n} examples "
            f"(valid indices 0..{n - 1})."
        )


def read_record(source: Any, index: int) -> dict[str, Any]:
    """source[index], with errors that name the example and the damaged shard file."""
    check_index(source, index)
    try:
        return source[index]
    except Exception as e:  # noqa: BLE001 - Riegeli raises a bare RuntimeError
        try:
            where = "record {1} of {0}".format(*locate(source, index))
        except Exception:  # noqa: BLE001 - naming the file is best effort
            where = "a shard whose file could not be determined"
        raise CorruptRecordError(
            f"Cannot read example {index} of {_split_name(source)}: it is {where}, which is "
            f"damaged ({type(e).__name__}: {e}). Fix: rebuild the dataset into a fresh "
            f"--data_dir (or restore that file from a copy); until then no run can read it."
        ) from e
