"""Per-unit costs measured on the device at hand: the time and peak memory of one evaluation, one SGD step of the
zoo networks, one metanetwork training step and one one-shot pass, per network (and per image where it scales so).

:func:`calibrate` runs :func:`measure` in a fresh Python process, so that what it measures is the work and not what
this process allocated before; on a CPU that process runs with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at 64 KiB, so
every large tensor is its own mapping, returned when freed, and the peak resident memory (``VmHWM``, reset through
``/proc/self/clear_refs``) is the work's peak. On CUDA the peak is ``torch.cuda.max_memory_allocated``. Each cost is
per network: peaks as the increase per network from one network to up to eight (fixed costs such as the model and
the images left out), times as those networks' time over their number; where two would not fit in the memory
budget, one network's cost stands in (an upper bound).

    python -m workbench.run.calibration '{"device": "cpu", "families": ["cnn-tanh"], ...}'   # prints the costs as JSON
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from ..errors import WorkbenchError
from ..system.paths import REPO_ROOT

__all__ = ["UnitCosts", "CalibrationError", "peak_bytes", "measure", "calibrate", "MAX_NETWORKS", "SGD_BATCH"]

MAX_NETWORKS = 8  # networks in the larger measurement (fewer when they would not fit in the budget)
SGD_BATCH = 64  # images per SGD step of the zoo networks, as the baselines train (workbench.baselines.sgd)
_MMAP_THRESHOLD = "65536"


class CalibrationError(WorkbenchError, RuntimeError):
    """Measuring the per-unit costs failed (the calibration process ended with an error)."""


@dataclass(frozen=True)
class UnitCosts:
    """Measured costs of one zoo family's networks on one device (seconds and bytes; per network and image where
    the work scales with images).

    Attributes:
        eval_s, eval_bytes: a no-grad forward pass, per network and image.
        sgd_s, sgd_bytes: an SGD step of the zoo networks (forward, backward, update), per network and image.
        step_s, step_bytes: one metanetwork training step (at the calibrated ``batch_images``), per network.
        shot_s, shot_bytes: one one-shot pass of the metanetwork (no grad), per network.
    """

    family: str
    device: str
    eval_s: float
    eval_bytes: float
    sgd_s: float
    sgd_bytes: float
    step_s: float
    step_bytes: float
    shot_s: float
    shot_bytes: float


def _vm(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise CalibrationError(f"/proc/self/status has no {key}: peak memory cannot be measured on this system")


def peak_bytes(fn, device: torch.device, warm_up: bool = True) -> tuple[float, float]:
    """``(seconds, peak bytes above the start)`` of one call of ``fn`` (after a warm-up call unless ``warm_up`` is
    False)."""
    if warm_up:
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
    else:
        with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current resident size
            fh.write("5")
        start = _vm("VmRSS")
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter() - t0, float(torch.cuda.max_memory_allocated(device) - start)
    seconds = time.perf_counter() - t0
    return seconds, float(_vm("VmHWM") - start)


def _per_unit(measure_at, budget: float) -> tuple[float, float]:
    """Per-network ``(seconds, bytes)``: the time of up to :data:`MAX_NETWORKS` networks over their number (the
    fixed costs spread over several networks, and steadier than a difference on a shared machine) and the increase
    of the peak per network from 1 network to that many (>= 0); as many as fit in half the ``budget`` by the first
    measurement, and 1 network's cost when 2 would not fit."""
    t1, m1 = measure_at(1, True)
    n = int(min(MAX_NETWORKS, budget // (2 * m1))) if m1 > 0 else MAX_NETWORKS
    if n < 2:
        return t1, m1
    t2, m2 = measure_at(n, True)
    return t2 / n, max(0.0, (m2 - m1) / (n - 1))


def measure(family: str, dataset: str, device: str, meta: dict, batch_images: int, budget: float,
            n_images: int = 256) -> UnitCosts:
    """The :class:`UnitCosts` of ``family`` on ``dataset``'s image shape, for a metanetwork of ``meta`` (fields of
    :class:`~workbench.metanet.MetanetConfig`) trained on ``batch_images`` images a step; no measurement is allowed
    to exceed ``budget`` bytes by more than one network's share. Runs in this process."""
    from ..forward_pass import forward
    from ..nets import init_params
    from ..objective import objective
    from ..metanet.config import MetanetConfig
    from ..training.train_config import build_model
    from ..zoo import default_spec

    dev = torch.device(device)
    spec = default_spec(family, dataset)
    shape = (spec.widths[0], spec.image_size, spec.image_size) if spec.kind == "cnn" else (spec.widths[0],)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_images, *shape, generator=gen).to(dev)
    y = torch.randint(0, spec.n_classes, (n_images,), generator=gen).to(dev)
    pool = [(w.to(dev), b.to(dev)) for w, b in init_params(spec, MAX_NETWORKS, gen)]
    nets = {n: [(w[:n], b[:n]) for w, b in pool] for n in range(1, MAX_NETWORKS + 1)}
    torch.manual_seed(0)
    model = build_model(spec, MetanetConfig(**meta)).fit_normalization(pool).to(dev)
    xb, yb, xs, ys = x[:batch_images], y[:batch_images], x[:SGD_BATCH], y[:SGD_BATCH]

    def evaluate_at(n, warm):
        with torch.no_grad():
            return peak_bytes(lambda: forward(spec, nets[n], x), dev, warm)

    def sgd_at(n, warm):
        flat = [t.clone().requires_grad_() for p in nets[n] for t in p]

        def step():
            loss = objective(spec, list(zip(flat[::2], flat[1::2])), xs, ys).sum()
            with torch.no_grad():
                for t, g in zip(flat, torch.autograd.grad(loss, flat)):
                    t.sub_(0.01 * g)
        return peak_bytes(step, dev, warm)

    def train_at(n, warm):
        def step():
            model.zero_grad(set_to_none=True)
            objective(spec, model(nets[n]), xb, yb).mean().backward()
        return peak_bytes(step, dev, warm)

    def shot_at(n, warm):
        with torch.no_grad():
            return peak_bytes(lambda: model.optimize(spec, nets[n]), dev, warm)

    eval_s, eval_b = _per_unit(evaluate_at, budget)
    sgd_s, sgd_b = _per_unit(sgd_at, budget)
    step_s, step_b = _per_unit(train_at, budget)
    shot_s, shot_b = _per_unit(shot_at, budget)
    return UnitCosts(family, str(dev), eval_s / n_images, eval_b / n_images, sgd_s / SGD_BATCH, sgd_b / SGD_BATCH,
                     step_s, step_b, shot_s, shot_b)


def calibrate(families, dataset: str, device: str, meta: dict, batch_images: int, budget: float,
              timeout: float = 600.0) -> dict[str, UnitCosts]:
    """:func:`measure` for every family of ``families``. On a CPU the peaks come from a fresh Python process (see
    the module docstring) and the times from this one (the fixed allocation threshold that makes the peaks exact
    slows allocation-heavy work); on CUDA both from this process."""
    request = {"families": list(families), "dataset": dataset, "device": device, "meta": meta,
               "batch_images": batch_images, "budget": budget}
    timed = {f: measure(f, dataset, device, meta, batch_images, budget) for f in families}
    if torch.device(device).type == "cuda":
        return timed
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=_MMAP_THRESHOLD)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        done = subprocess.run([sys.executable, "-m", "workbench.run.calibration", json.dumps(request)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CalibrationError(f"measuring the peak memory on {device} took over {timeout:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CalibrationError(f"measuring the peak memory on {device} failed: {last[:300]}")
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    return {f: UnitCosts(**{**asdict(timed[f]), **{k: v for k, v in peaks[f].items() if k.endswith("_bytes")}})
            for f in families}


def _main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    costs = {f: asdict(measure(f, request["dataset"], request["device"], request["meta"], request["batch_images"],
                               request["budget"])) for f in request["families"]}
    print(json.dumps(costs))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
