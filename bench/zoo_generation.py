"""Zoo generation throughput: all networks at once (workbench.zoo.train_networks) against one network at a time.

Both sides train the same networks (same initial weights and hyperparameters: optimizer, learning rate, L2,
dropout, train fraction) for the same number of steps with the same batch size; the loop is the plain PyTorch way,
an ``nn.Sequential`` and a ``torch.optim`` optimizer per network. Only training is timed (no evaluation). The loop
runs on the first ``--loop-networks`` networks. Both sides are timed with 1 and with all torch threads; the speedup
compares the faster setting of each side.

Usage::

    python bench/zoo_generation.py                      # digits CNN and MLP, CPU (and CUDA when available)
    python bench/zoo_generation.py --networks 512 --families cnn-tanh

OMP_WAIT_POLICY defaults to PASSIVE here (set before torch is imported): on a shared 2-core machine, OpenMP
threads that spin-wait slow small kernels down several-fold when another process holds a core.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from workbench.data import load_digits_data  # noqa: E402
from workbench.interop import to_module  # noqa: E402
from workbench.nets import flatten_params, init_params, unflatten_params  # noqa: E402
from workbench.zoo import ADAM_BETAS, SGD_MOMENTUM, default_spec, sample_hparams, train_networks  # noqa: E402


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_vectorised(spec, data, theta0, hp, epochs, batch_size, device) -> float:
    _sync(device)
    start = time.perf_counter()
    train_networks(spec, data, theta0, hp, epochs=epochs, checkpoints=(), batch_size=batch_size, progress=False)
    _sync(device)
    return time.perf_counter() - start


def _module_with_dropout(spec, params, index, rate):
    """Network ``index`` as nn.Sequential with nn.Dropout(rate) after every hidden activation."""
    layers = []
    for layer in to_module(spec, params, index):
        layers.append(layer)
        if isinstance(layer, (nn.Tanh, nn.ReLU)) and rate > 0:
            layers.append(nn.Dropout(rate))
    return nn.Sequential(*layers)


def time_loop(spec, data, theta0, hp, epochs, batch_size, device, n_loop, seed=0) -> float:
    """Train networks 0..n_loop-1 one after the other with torch.optim; the same step count per network as the
    vectorised trainer (ceil(subset / batch_size) steps per epoch)."""
    x_train, y_train = data.split("train")
    n_train = len(y_train)
    params = unflatten_params(spec, theta0)
    rng = torch.Generator().manual_seed(seed)
    total = 0.0
    for b in range(n_loop):
        row = hp.iloc[b]
        model = _module_with_dropout(spec, params, b, float(row["dropout"])).to(device).train()
        if row["optimizer"] == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=float(row["lr"]), momentum=SGD_MOMENTUM,
                                  weight_decay=float(row["l2"]))
        else:
            opt = torch.optim.Adam(model.parameters(), lr=float(row["lr"]), betas=ADAM_BETAS,
                                   weight_decay=float(row["l2"]))
        subset_size = max(1, round(float(row["train_fraction"]) * n_train))
        subset = torch.randperm(n_train, generator=rng)[:subset_size]
        steps = math.ceil(subset_size / batch_size)
        _sync(device)
        start = time.perf_counter()
        for _ in range(epochs):
            order = subset[torch.randperm(subset_size, generator=rng)]
            order = order.repeat(math.ceil(steps * batch_size / subset_size))
            for step in range(steps):
                idx = order[step * batch_size:(step + 1) * batch_size].to(device)
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
                loss.backward()
                opt.step()
        _sync(device)
        total += time.perf_counter() - start
    return total


def run(families, n_networks, n_loop, epochs, batch_size, devices, thread_counts, seed=0):
    data_cpu = load_digits_data(seed=seed)
    rows = []
    for device in devices:
        data = data_cpu.to(device)
        for family in families:
            spec = default_spec(family, "digits")
            hp = sample_hparams(n_networks, seed)
            scale = torch.tensor(hp["init_scale"].to_numpy(dtype=np.float64), dtype=torch.float32)
            init = init_params(spec, n_networks, torch.Generator().manual_seed(seed), init_scale=scale)
            theta0 = flatten_params(init).to(device)
            warm_hp = hp.iloc[:8].reset_index(drop=True)
            time_vectorised(spec, data, theta0[:8], warm_hp, 1, batch_size, device)  # warm-up
            best = {}
            for threads in (thread_counts if device == "cpu" else [torch.get_num_threads()]):
                torch.set_num_threads(threads)
                vec = time_vectorised(spec, data, theta0, hp, epochs, batch_size, device)
                loop = time_loop(spec, data, theta0, hp, epochs, batch_size, device, n_loop, seed)
                for method, n, sec in (("vectorised", n_networks, vec), ("loop, torch.optim", n_loop, loop)):
                    rows.append({"device": device, "family": family, "method": method, "threads": threads,
                                 "networks": n, "seconds": sec, "per_s": n / sec})
                    best[method] = max(best.get(method, 0.0), n / sec)
            rows.append({"device": device, "family": family, "method": "**speedup (best vs best)**", "threads": "",
                         "networks": "", "seconds": None, "per_s": None,
                         "speedup": best["vectorised"] / best["loop, torch.optim"]})
    return rows


def format_table(rows) -> str:
    lines = ["| device | family | method | threads | networks | seconds | networks/s | speedup |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "speedup" in r:
            lines.append(f"| {r['device']} | {r['family']} | {r['method']} | | | | | **{r['speedup']:.1f}x** |")
        else:
            lines.append(f"| {r['device']} | {r['family']} | {r['method']} | {r['threads']} | {r['networks']} | "
                         f"{r['seconds']:.2f} | {r['per_s']:.1f} | |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=["cnn-tanh", "mlp-tanh"])
    parser.add_argument("--networks", type=int, default=256, help="networks trained at once")
    parser.add_argument("--loop-networks", type=int, default=16, help="networks trained one at a time")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                        help="torch thread counts to time both sides with (default: 1 and all CPUs)")
    parser.add_argument("--json", help="append the rows as JSON lines to this file")
    args = parser.parse_args(argv)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"# zoo generation: digits, {args.epochs} epochs, batch {args.batch_size}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
          + (f", load average before: {load[0]:.2f}" if load else ""))
    if "cuda" in devices:
        print(f"# CUDA: {torch.cuda.get_device_name()}")
    rows = run(args.families, args.networks, args.loop_networks, args.epochs, args.batch_size, devices, args.threads)
    print(format_table(rows))
    if args.json:
        name = torch.cuda.get_device_name() if "cuda" in devices else platform.processor() or "cpu"
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps({"bench": "zoo_generation", "device_name": name, **r}) + "\n")
    if load:
        print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
