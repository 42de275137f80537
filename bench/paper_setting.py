"""The paper's setting (params/cifar10gs.yaml): measured peak memory of its steps, and the estimate at its real sizes.

Two parts, each printed (and written as JSON lines with ``--out``):

* ``peaks``: the peak resident memory (VmHWM, in a fresh process with every large tensor its own mapping; see
  workbench/run/calibration.py) of one evaluation of Small CNN Zoo networks on grayscale CIFAR-10 images -- bounded by a
  memory budget, and the whole batch at once for comparison -- and of one metanetwork training step at the file's
  metanetwork size (hidden 128, 4 layers, bidirectional, 128 images) for the Small CNN Zoo CNN and for the MLP
  family on CIFAR-10 (1024-32-32-10).
* ``estimate``: ``python -m workbench validate`` on a params file that extends params/cifar10gs.yaml with
  ``device: cpu`` and paths to full-size, format-exact stand-ins written to a scratch folder: a Small CNN Zoo of 30,000
  networks x 9 checkpoints (270,000 rows; ``weights.npy`` is a sparse file -- the estimate reads only the metrics,
  as the real file's size) and CIFAR-10 python batches of 50,000 + 10,000 random images (pickle protocol 4).

    python bench/paper_setting.py [--parts peaks estimate] [--scratch /tmp/paper-setting] [--out FILE.jsonl]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the stand-in writers' layout helpers

_PEAK = textwrap.dedent("""
    import json, sys, torch
    from workbench.run.calibration import peak_bytes
    from workbench.memory import GIB
    from workbench.nets import init_params
    from workbench.objective import evaluate, objective
    from workbench.training.train_config import MetanetConfig, build_model
    from workbench.zoo import default_spec
    kind, family, nets, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    spec = default_spec(family, "cifar10-gs")
    params = init_params(spec, nets, torch.Generator().manual_seed(0))
    shape = (1, 32, 32) if spec.kind == "cnn" else (1024,)
    x, y = torch.randn(n, *shape), torch.randint(0, 10, (n,))
    dev = torch.device("cpu")
    if kind == "eval-budget":
        fn = lambda: evaluate(spec, params, x, y, memory_budget=GIB)
    elif kind == "eval-whole":
        fn = lambda: evaluate(spec, params, x, y, batch_size=n, net_chunk=nets)
    else:
        model = build_model(spec, MetanetConfig(hidden=128, n_layers=4, bidirectional=True)).fit_normalization(params)
        def fn():
            model.zero_grad(set_to_none=True)
            objective(spec, model(params), x, y).mean().backward()
    seconds, peak = peak_bytes(fn, dev)
    print(json.dumps({"kind": kind, "family": family, "networks": nets, "images": n, "peak_gib": peak / GIB,
                      "seconds": seconds}))
""")

PEAKS = [("eval-budget", "cnn-tanh", 64, 4096), ("eval-whole", "cnn-tanh", 16, 4096),
         ("train-step", "cnn-tanh", 8, 128), ("train-step", "cnn-tanh", 16, 128), ("train-step", "mlp-tanh", 1, 128)]


def peaks() -> list[dict]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", WORKBENCH_THREADS="1", PYTHONPATH=str(ROOT))
    rows = []
    for kind, family, nets, n in PEAKS:
        done = subprocess.run([sys.executable, "-c", _PEAK, kind, family, str(nets), str(n)], env=env,
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def write_full_size(scratch: Path) -> tuple[Path, Path]:
    """Format-exact stand-ins at the published sizes: the metrics of 30,000 networks x 9 steps and a sparse
    weights.npy of their shape; CIFAR-10 batches of random images."""
    from standins import _layout
    from workbench.nets import small_cnn_zoo_spec

    zoo, cifar = scratch / "small-cnn-zoo" / "cifar10", scratch / "cifar-10-batches-py"
    zoo.mkdir(parents=True, exist_ok=True)
    cifar.mkdir(parents=True, exist_ok=True)
    steps, n_nets = (0, 1, 2, 3, 20, 40, 60, 80, 86), 30_000
    rng = np.random.default_rng(0)
    weights = np.lib.format.open_memmap(zoo / "weights.npy", mode="w+", dtype=np.float32,
                                        shape=(n_nets * len(steps), small_cnn_zoo_spec().n_params))
    del weights  # never written: a sparse file of the published size
    net = np.repeat(np.arange(n_nets), len(steps))
    metrics = {"config.activation": np.where(net % 2 == 0, "tanh", "relu"), "config.learning_rate": 1e-3,
               "config.l2reg": 1e-4, "config.dropout": 0.1, "config.train_fraction": 0.5, "config.init_std": 0.1,
               "modeldir": [f"run_{i:05d}" for i in net], "step": np.tile(steps, n_nets),
               "test_accuracy": rng.uniform(0.1, 0.5, len(net))}
    import pandas as pd

    with gzip.open(zoo / "metrics.csv.gz", "wt") as fh:
        pd.DataFrame(metrics).to_csv(fh, index=False)
    _layout(zoo, small_cnn_zoo_spec())
    for name, n in [*((f"data_batch_{i}", 10_000) for i in range(1, 6)), ("test_batch", 10_000)]:
        batch = {b"labels": rng.integers(0, 10, n).tolist(), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        with open(cifar / name, "wb") as fh:  # protocol 4: Python 3's protocol 2 would store the pixels as UTF-8
            pickle.dump(batch, fh, protocol=4)  # text, 1.5x the published 31 MB (which Python 2 wrote as raw bytes)
    return zoo, cifar


def estimate(scratch: Path) -> list[dict]:
    zoo, cifar = write_full_size(scratch)
    params = scratch / "cifar10gs-full-size.yaml"
    params.write_text(f"extends: {ROOT / 'params' / 'cifar10gs.yaml'}\nname: cifar10gs-full-size\ndevice: cpu\n"
                      f"data_path: {cifar}\nzoo_path: {zoo}\n")
    done = subprocess.run([sys.executable, "-m", "workbench", "validate", str(params)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    print(done.stdout + done.stderr, flush=True)
    return [{"kind": "estimate", "exit_code": done.returncode, "output": done.stdout + done.stderr}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["peaks", "estimate"], choices=["peaks", "estimate"])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/paper-setting"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = (peaks() if "peaks" in args.parts else []) + (estimate(args.scratch) if "estimate" in args.parts else [])
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
