"""The one prepared GPU suite: every device check as its own subprocess, each under its own timeout.

    python launch/gpu_suite.py --out=OUT           # ActivityNet shapes on one GPU, <= 840 s
    python launch/gpu_suite.py --out=OUT --tiny    # tiny shapes on the CPU (CI), 2-3 min on 2 cores
    python launch/gpu_suite.py --out=OUT --steps=env,bench_bf16 --timeout_bench_bf16=300

Steps, in order (each a subprocess of this Python, run from the repo root):
- env: nvidia-smi (if present), versions (jax, flax, torch, ...), JAX's devices, a config loads.
- gpu_check: launch/gpu_check.py (decode-only input rates, compute, e2e and e2e_overlapped rows).
- stage_times: python -m nsnet_jax.bench.stage_times in bfloat16 (per-stage times of inference and
  of both train steps).
- bench_bf16: python -m nsnet_jax.bench in bfloat16 with both train steps; bench_f32: float32
  inference.
- sweep_b<N>: the bench's inference rows (NSNet vs all-T speed-up next to the FLOP ratio) at other
  batch sizes (`--sweep_batches`), bfloat16.
- depthwise_<impl>: the bench's inference rows with `model.depthwise_impl=<impl>` (`--depthwise`;
  default the implementation `auto` does not pick on the platform: shifted on a GPU, grouped on a
  CPU), to compare with bench_bf16 (auto) and see what the depthwise layout costs the sampler.
- sampler_backbone_<name>: the bench's inference rows with `model.sampler.backbone=<name>`
  (`--sampler_backbones`; default fused_mbconv, MobileNetV2's layout without depthwise
  convolutions), to compare with bench_bf16's MobileNetV2 sampler at the same shapes.
- tests: the fast tests under the machine's JAX (on its CPU, as the JAX version is what matters).

Shapes: ActivityNet (configs/activitynet.py: T=16, K=6, MobileNetV2 @128, ResNet-50 @224), random
weights, batch 32 (gpu_check: 64). `--tiny`: every step at tiny shapes (T=4, 32 px, patch_cnn
backbones; MobileNetV2 at width 0.25 for the depthwise step), batch 2 (sweep: 4), float32, one
repeat, on the CPU (JAX_PLATFORMS=cpu), and one test file.

Writes OUT/suite.jsonl (appended, so a suite split over several calls with --steps fills one file):
a {"record": "suite"} line with the arguments; for each step its own JSON rows, re-emitted with
"step" added, then its record {"record": "step", "step", "rc", "seconds", "timed_out", "log", ...};
a step that fails or times out is recorded and the suite goes on; a step whose timeout no longer
fits in --budget_s is recorded as skipped (rc null, "skipped": reason); a closing
{"record": "suite_end"} line lists the failed, timed-out and skipped steps. Each step's stdout and
stderr are in OUT/<step>.out and OUT/<step>.log; progress lines (elapsed seconds) go to stderr and
OUT/suite.log. Exit code 0 when every step that ran exited 0, else 1.

The device machine has JAX/CUDA and torch but no TensorFlow, TFDS or ml_collections. This script
needs only the standard library; its steps import ml_collections (the configs) from
REPO/.device_site (pure Python, copied there, e.g. `pip install --target .device_site
ml_collections --no-deps`) and PyYAML from REPO/.device_yaml when the machine lacks it: both are
put on the steps' PYTHONPATH after the repo root, when they exist (both are in .gitignore).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=configs/activitynet.py"

# Per-step timeouts in seconds (full shapes sum to the default budget; tiny ones are generous
# ceilings for a busy 2-core CPU). sweep and depthwise apply to each of their steps.
TIMEOUTS = {
    "env": 30,
    "gpu_check": 150,  # has its own budget 50 s below this: skips what no longer fits
    "stage_times": 125,
    "bench_bf16": 150,
    "bench_f32": 70,
    "sweep": 60,
    "depthwise": 60,
    "sampler_backbone": 60,
    "tests": 75,
}
TINY_TIMEOUTS = {
    "env": 60,
    "gpu_check": 120,
    "stage_times": 120,
    "bench_bf16": 150,
    "bench_f32": 90,
    "sweep": 90,
    "depthwise": 90,
    "sampler_backbone": 90,
    "tests": 120,
}
KINDS = tuple(TIMEOUTS)

# The bench's config at tiny shapes (stage_times.TINY with patch_cnn, the fastest to compile).
TINY_OVERRIDES = {
    "data.num_frames": 4,
    "data.sampler_size": 32,
    "data.recognizer_size": 32,
    "model.num_select": 2,
    "model.sampler.backbone": "patch_cnn",
    "model.sampler.width": 0.25,
    "model.recognizer.backbone": "patch_cnn",
    "model.recognizer.width": 0.25,
    "model.recognizer.mlp_dim": 16,
    "recognizer_training.frames_per_video": 2,
}
# The depthwise step needs a backbone with depthwise convolutions.
TINY_DEPTHWISE = {"model.sampler.backbone": "mobilenet_v2"}
TESTS = [
    "tests/test_selection.py",
    "tests/test_losses.py",
    "tests/test_models.py",
    "tests/test_backbones.py",
    "tests/test_configs.py",
]
TINY_TESTS = ["tests/test_losses.py"]

# Run by the env step in the steps' environment: one JSON row.
ENV_SCRIPT = r"""
import importlib.metadata, importlib.util, json, os, platform, shutil, subprocess, sys
row = {"check": "env", "python": platform.python_version(), "pythonpath": os.environ.get(
    "PYTHONPATH", ""), "jax_platforms": os.environ.get("JAX_PLATFORMS", "")}
smi = shutil.which("nvidia-smi")
if smi:
    query = [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    res = subprocess.run(query, capture_output=True, text=True, timeout=30)
    row["nvidia_smi"] = res.stdout.strip().splitlines() or res.stderr.strip()
else:
    row["nvidia_smi"] = None
dists = importlib.metadata.packages_distributions()
for module in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "torchvision", "ml_collections",
               "yaml", "tensorflow", "tensorflow_datasets", "xdist"):
    spec = importlib.util.find_spec(module)
    if spec is None:
        row[module] = None  # not importable
        continue
    try:
        row[module] = importlib.metadata.version(dists[module][0])
    except (KeyError, IndexError, importlib.metadata.PackageNotFoundError):  # e.g. .device_site
        row[module] = "from " + os.path.dirname(os.path.dirname(spec.origin or "?"))
import jax
row.update(backend=jax.default_backend(), devices=[d.device_kind for d in jax.devices()],
           device_count=jax.device_count(), host_cores=os.cpu_count())
try:
    from nsnet_jax.configs import activitynet
    row["config_loads"] = activitynet.get_config().data.num_frames == 16
except Exception as e:
    row["config_loads"] = f"{type(e).__name__}: {e}"[:300]
print(json.dumps(row), flush=True)
"""


class Step(NamedTuple):
    name: str
    kind: str
    argv: list[str]
    timeout: float
    env: dict[str, str] = {}  # added to the steps' environment


def overrides(values: dict[str, Any]) -> list[str]:
    return [f"--config.{key}={value}" for key, value in values.items()]


def build_steps(args: argparse.Namespace) -> list[Step]:
    """The suite's steps for these arguments, in order, before --steps selects."""
    py, tiny, out = args.python, args.tiny, args.out
    timeouts = dict(TINY_TIMEOUTS if tiny else TIMEOUTS)
    for kind in KINDS:
        given = getattr(args, f"timeout_{kind}")
        if given is not None:
            timeouts[kind] = given
    batch = args.batch or (2 if tiny else 32)
    shapes = [CONFIG, *overrides(TINY_OVERRIDES)] if tiny else [CONFIG]
    timing = ["--repeats=1", "--peak_dim=256"] if tiny else ["--repeats=5"]
    bench = [py, "-m", "nsnet_jax.bench", *shapes, *timing]
    # tiny: float32 throughout (XLA:CPU compiles bfloat16 about twice as slowly, and the tiny run
    # checks that every step runs and reports, not its numbers); the rows carry their dtype
    bf16 = "--config.model.dtype=" + ("float32" if tiny else "bfloat16")
    gpu_check = [py, "launch/gpu_check.py", f"--out={os.path.join(out, 'gpu_check')}"]
    # its own budget, so it skips what is left (with a row saying so) before the timeout kills it
    gpu_check.append(f"--budget_s={max(timeouts['gpu_check'] - 50, 10)}")
    if tiny:
        gpu_check += ["--tiny", "--dtypes=float32", "--sampler=patch_cnn", "--recognizer=patch_cnn"]
    stage_times = [py, "-m", "nsnet_jax.bench.stage_times", CONFIG, bf16]
    if tiny:
        stage_times += ["--tiny", "--paths=inference", "--batch=2"]
    else:
        stage_times += [f"--batch={batch}", "--repeats=5"]
    tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(args.tests.split(","))]
    if not tiny and importlib.util.find_spec("xdist") is not None:
        tests[4:4] = ["-n", "8"]

    steps = [
        Step("env", "env", [py, "-c", ENV_SCRIPT], timeouts["env"]),
        Step("gpu_check", "gpu_check", gpu_check, timeouts["gpu_check"]),
        Step("stage_times", "stage_times", stage_times, timeouts["stage_times"]),
        Step(
            "bench_bf16",
            "bench_bf16",
            [*bench, f"--batch={batch}", bf16, "--train_step=both"],
            timeouts["bench_bf16"],
        ),
        Step(
            "bench_f32",
            "bench_f32",
            [*bench, f"--batch={batch}", "--train_step=none"],
            timeouts["bench_f32"],
        ),  # fmt: skip
    ]
    for b in [int(x) for x in args.sweep_batches.split(",") if x]:
        argv = [*bench, f"--batch={b}", bf16, "--train_step=none"]
        steps.append(Step(f"sweep_b{b}", "sweep", argv, timeouts["sweep"]))
    for impl in [x for x in args.depthwise.split(",") if x]:
        extra = overrides(TINY_DEPTHWISE) if tiny else []
        argv = [*bench, *extra, f"--batch={batch}", bf16, "--train_step=none"]
        argv.append(f"--config.model.depthwise_impl={impl}")
        steps.append(Step(f"depthwise_{impl}", "depthwise", argv, timeouts["depthwise"]))
    for name in [x for x in args.sampler_backbones.split(",") if x]:
        argv = [*bench, f"--batch={batch}", bf16, "--train_step=none"]
        argv.append(f"--config.model.sampler.backbone={name}")
        kind = "sampler_backbone"
        steps.append(Step(f"{kind}_{name}", kind, argv, timeouts[kind]))
    # the tests run on the host CPU (8 virtual devices, as tests/conftest.py sets by itself)
    steps.append(Step("tests", "tests", tests, timeouts["tests"], {"JAX_PLATFORMS": "cpu"}))
    return steps


def step_env(tiny: bool) -> dict[str, str]:
    """This environment with the repo root first on PYTHONPATH, then .device_site (ml_collections)
    and .device_yaml (PyYAML, only when this Python lacks it), when they exist."""
    env = dict(os.environ)
    paths = [ROOT]
    if os.path.isdir(os.path.join(ROOT, ".device_site")):
        paths.append(os.path.join(ROOT, ".device_site"))
    yaml_dir = os.path.join(ROOT, ".device_yaml")
    if importlib.util.find_spec("yaml") is None and os.path.isdir(yaml_dir):
        paths.append(yaml_dir)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if tiny:
        env["JAX_PLATFORMS"] = "cpu"
    return env


def json_rows(path: str) -> list[dict[str, Any]]:
    """The JSON objects among a step's stdout lines (anything else is skipped)."""
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def pytest_row(path: str) -> list[dict[str, Any]]:
    """pytest prints no JSON: its summary line as one row."""
    with open(path, errors="replace") as f:
        lines = [x.strip() for x in f if x.strip()]
    for line in reversed(lines):
        counts = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", line)
        if counts:
            row: dict[str, Any] = {"check": "pytest", "summary": line.strip("= ")}
            for n, what in counts:
                row["errors" if what == "error" else what] = int(n)
            return [row]
    return []


def run_step(step: Step, out: str, env: dict[str, str]) -> dict[str, Any]:
    """Runs one step in its own process group; on timeout the group gets SIGTERM, then SIGKILL."""
    stdout_path = os.path.join(out, f"{step.name}.out")
    log_path = os.path.join(out, f"{step.name}.log")
    start = time.perf_counter()
    timed_out = False
    with open(stdout_path, "w") as stdout, open(log_path, "w") as stderr:
        proc = subprocess.Popen(
            step.argv,
            cwd=ROOT,
            env={**env, **step.env},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=step.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            rc = proc.returncode
    seconds = round(time.perf_counter() - start, 1)
    rows = pytest_row(stdout_path) if step.kind == "tests" else json_rows(stdout_path)
    return {
        "rc": rc,
        "seconds": seconds,
        "timed_out": timed_out,
        "log": log_path,
        "stdout": stdout_path,
        "timeout_s": step.timeout,
        "rows": rows,
        "cmd": " ".join(step.argv if step.kind != "env" else step.argv[:2] + ["ENV_SCRIPT"]),
    }


class Suite:
    def __init__(self, out: str):
        self.start = time.perf_counter()
        self.jsonl = open(os.path.join(out, "suite.jsonl"), "a")  # noqa: SIM115 - whole run
        self.log = open(os.path.join(out, "suite.log"), "a")  # noqa: SIM115

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def write(self, record: dict[str, Any]) -> None:
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def progress(self, message: str) -> None:
        line = f"[{self.elapsed():6.1f} s] {message}"
        for stream in (sys.stderr, self.log):
            stream.write(line + "\n")
            stream.flush()

    def close(self) -> None:
        self.jsonl.close()
        self.log.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for suite.jsonl and the steps' logs")
    p.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU, for CI")
    p.add_argument(
        "--budget_s", type=float, default=840.0, help="total s; a step that no longer fits: skipped"
    )
    p.add_argument("--steps", default=",".join(KINDS), help=f"which of {list(KINDS)} to run")
    p.add_argument("--batch", type=int, default=0, help="the bench's batch (default 32; tiny 2)")
    p.add_argument("--sweep_batches", default=None, help="sweep steps' batches (8,128; tiny 4)")
    p.add_argument("--depthwise", default=None, help="its steps' impls (shifted; tiny grouped)")
    p.add_argument(
        "--sampler_backbones",
        default="fused_mbconv",
        help="sampler backbones timed beside bench_bf16's, one step each",
    )
    p.add_argument("--tests", default=None, help="comma-separated test files for the tests step")
    p.add_argument("--python", default=sys.executable, help="the Python that runs the steps")
    for kind in KINDS:
        default = f"default {TIMEOUTS[kind]}; tiny {TINY_TIMEOUTS[kind]}"
        p.add_argument(f"--timeout_{kind}", type=float, default=None, help=f"seconds ({default})")
    args = p.parse_args(argv)
    if args.sweep_batches is None:
        args.sweep_batches = "4" if args.tiny else "8,128"
    if args.depthwise is None:
        args.depthwise = "grouped" if args.tiny else "shifted"
    if args.tests is None:
        args.tests = ",".join(TINY_TESTS if args.tiny else TESTS)
    unknown = {s for s in args.steps.split(",") if s} - set(KINDS)
    if unknown:
        p.error(f"--steps: {sorted(unknown)} not in {list(KINDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    wanted = {s for s in args.steps.split(",") if s}
    steps = [s for s in build_steps(args) if s.kind in wanted]
    env = step_env(args.tiny)
    suite = Suite(args.out)
    suite.write(
        {
            "record": "suite",
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:] if argv is None else argv,
            "tiny": args.tiny,
            "budget_s": args.budget_s,
            "steps": [s.name for s in steps],
            "timeouts_s": {s.name: s.timeout for s in steps},
            "pythonpath": env["PYTHONPATH"],
        }
    )
    failed, timed_out, skipped = [], [], []
    for step in steps:
        left = args.budget_s - suite.elapsed()
        if step.timeout > left:
            reason = f"its timeout {step.timeout:g} s > {left:.0f} s left of --budget_s"
            suite.write(
                {"record": "step", "step": step.name, "rc": None, "seconds": 0.0,
                 "timed_out": False, "log": None, "skipped": reason}
            )  # fmt: skip
            suite.progress(f"{step.name}: skipped ({reason})")
            skipped.append(step.name)
            continue
        suite.progress(f"{step.name}: start (timeout {step.timeout:g} s)")
        result = run_step(step, args.out, env)
        rows = result.pop("rows")
        for row in rows:
            suite.write({"step": step.name, **row})
        suite.write({"record": "step", "step": step.name, **result, "json_rows": len(rows)})
        state = "timed out" if result["timed_out"] else f"rc={result['rc']}"
        suite.progress(
            f"{step.name}: {state} after {result['seconds']} s, {len(rows)} JSON rows"
            + ("" if result["rc"] == 0 else f" (see {result['log']})")
        )
        if result["timed_out"]:
            timed_out.append(step.name)
        elif result["rc"] != 0:
            failed.append(step.name)
    seconds = round(suite.elapsed(), 1)
    suite.write(
        {"record": "suite_end", "seconds": seconds, "failed": failed, "timed_out": timed_out,
         "skipped": skipped}
    )  # fmt: skip
    suite.progress(
        f"done in {seconds} s: {len(steps) - len(failed) - len(timed_out) - len(skipped)} ok, "
        f"failed {failed}, timed out {timed_out}, skipped {skipped}; {args.out}/suite.jsonl"
    )
    suite.close()
    return 1 if failed or timed_out else 0


if __name__ == "__main__":
    sys.exit(main())
