"""A full disk while checkpointing: one line naming the directory, the free space and the step a
rerun resumes from, instead of Orbax's tracebacks; the rerun resumes."""

from __future__ import annotations

import errno
import logging
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from nsnet_jax.train import checkpointing

ROOT = Path(__file__).resolve().parents[1]
# What TensorStore raises inside Orbax when a write hits ENOSPC (seen on a full tmpfs).
TENSORSTORE_ENOSPC = (
    'RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local file "x": Failed to '
    "write 445150 bytes to file 4: No space left on device [os_error_code='28']"
)


def _state(n: int = 8):
    return {"w": jnp.arange(n, dtype=jnp.float32)}


def test_a_failed_save_names_directory_free_space_and_resume_step(tmp_path, monkeypatch):
    directory = tmp_path / "ckpts"
    mngr = checkpointing.manager(str(directory))
    checkpointing.save(mngr, 1, _state(), {"data_position": 1})
    checkpointing.wait(mngr)

    def full(*args, **kwargs):
        raise RuntimeError("background save failed") from ValueError(TENSORSTORE_ENOSPC)

    monkeypatch.setattr(mngr, "save", full)
    with pytest.raises(checkpointing.DiskFullError) as info:
        checkpointing.save(mngr, 2, _state(), {"data_position": 2})
    message = str(info.value)
    assert message.startswith(f"disk full while saving the checkpoint of step 2 to {directory} (")
    assert "MiB free on that filesystem): free space or move --workdir, then rerun the same " \
        "command to resume from step 1" in message  # fmt: skip
    assert info.value.errno == errno.ENOSPC and "\n" not in message


def test_a_background_failure_names_the_step_whose_save_failed(tmp_path, monkeypatch):
    directory = tmp_path / "ckpts"
    mngr = checkpointing.manager(str(directory))
    checkpointing.save(mngr, 1, _state(), {"data_position": 1})
    checkpointing.wait(mngr)
    checkpointing.save(mngr, 2, _state(), {"data_position": 2})  # fails in the background

    def full():
        raise RuntimeError("background save failed") from ValueError(TENSORSTORE_ENOSPC)

    monkeypatch.setattr(mngr, "wait_until_finished", full)  # where Orbax reports it: next save
    with pytest.raises(checkpointing.DiskFullError) as info:
        checkpointing.save(mngr, 3, _state(), {"data_position": 3})
    assert str(info.value).startswith(
        f"disk full while saving the checkpoint of step 2 to {directory}"
    )
    with pytest.raises(checkpointing.DiskFullError, match="checkpoint of step 2 to"):
        checkpointing.wait(mngr)


def test_a_failed_wait_and_a_failed_final_save_are_reported_too(tmp_path, monkeypatch):
    mngr = checkpointing.manager(str(tmp_path / "ckpts"))

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mngr, "wait_until_finished", full)
    with pytest.raises(checkpointing.DiskFullError, match="to start the stage again"):
        checkpointing.wait(mngr)

    def full_save(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full_save)
    with pytest.raises(checkpointing.DiskFullError) as info:
        checkpointing.save_variables(str(tmp_path / "final"), _state(), resume_dir=str(tmp_path))
    assert f"the final variables to {tmp_path / 'final'}" in str(info.value)


def test_other_save_errors_pass_through_unchanged(tmp_path, monkeypatch):
    mngr = checkpointing.manager(str(tmp_path / "ckpts"))

    def broken(*args, **kwargs):
        raise ValueError("RESOURCE_EXHAUSTED: quota of the bucket")

    monkeypatch.setattr(mngr, "save", broken)
    with pytest.raises(ValueError, match="quota of the bucket"):
        checkpointing.save(mngr, 1, _state(), {"data_position": 1})
    assert not checkpointing.is_disk_full(ValueError("other"))


def test_the_command_line_prints_the_one_line_without_a_traceback():
    program = (
        "from nsnet_jax import cli\n"
        "from nsnet_jax.train.checkpointing import DiskFullError\n"
        "def main(config, workdir, argv):\n"
        "    raise DiskFullError('disk full while saving the checkpoint of step 4 to /w')\n"
        "cli.run(main, default_config='tests/tiny_train_config.py')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "disk full while saving the checkpoint of step 4 to /w" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 2 MiB tmpfs (needs root); unmounted afterwards."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root only): {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_tmpfs_gives_one_line_and_the_rerun_resumes(tiny_tmpfs, caplog):
    directory = tiny_tmpfs / "ckpts"
    big = _state(300_000)  # 1.2 MB: the third checkpoint cannot fit into 2 MiB
    mngr = checkpointing.manager(str(directory), max_to_keep=5)
    with caplog.at_level(logging.ERROR), pytest.raises(checkpointing.DiskFullError) as info:
        for step in range(1, 6):
            checkpointing.save(mngr, step, big, {"data_position": step})
        checkpointing.wait(mngr)
    message = str(info.value)
    assert f"to {directory} (" in message and "MiB free on that filesystem)" in message
    resume = int(message.rsplit("resume from step ", 1)[1])
    assert resume >= 1 and (directory / str(resume)).is_dir()
    assert not any("No space left" in r.getMessage() for r in caplog.records)

    # Space freed (here: the tmpfs grown): a new manager resumes from the last complete step.
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_tmpfs)], check=True)
    mngr = checkpointing.manager(str(directory), max_to_keep=5)
    assert mngr.latest_step() == resume
    state, meta = checkpointing.restore(mngr, big)
    assert meta["data_position"] == resume and float(state["w"][-1]) == 299_999.0
    checkpointing.save(mngr, resume + 1, big, {"data_position": resume + 1})
    checkpointing.finish(mngr)
    assert (directory / str(resume + 1)).is_dir()


# Saves of 40 arrays of random (incompressible) values, 1.25 MiB a checkpoint: step 1 fits into
# 2 MiB, step 2 fails in the background and Orbax reports it at the save of step 3.
MANY_ARRAYS = """
import sys
import numpy as np
from nsnet_jax import cli
from nsnet_jax.train import checkpointing
def main(config, workdir, argv):
    rng = np.random.default_rng(0)
    state = {f"w{i}": rng.standard_normal(8192, dtype=np.float32) for i in range(40)}
    mngr = checkpointing.manager(sys.argv[1], max_to_keep=5)
    for step in range(1, 6):
        checkpointing.save(mngr, step, state, {"data_position": step})
    checkpointing.finish(mngr)
cli.run(main, default_config="tests/tiny_train_config.py", argv=sys.argv[:1])
"""


def test_a_full_tmpfs_names_the_failed_step_without_event_loop_tracebacks(tiny_tmpfs):
    directory = tiny_tmpfs / "ckpts"
    result = subprocess.run(
        [sys.executable, "-c", MANY_ARRAYS, str(directory)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"disk full while saving the checkpoint of step 2 to {directory} (" in result.stderr
    assert "resume from step 1" in result.stderr, result.stderr[-3000:]
    assert "Event loop is closed" not in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
