"""How fast could the metanet's training step and one shot be on this CPU? A roofline bound, measured.

Every fp32 implementation of the same model must do the same matrix products (the linear maps of the message-passing
layers, the heads, the zoo networks' forward and backward). This script

1. measures this CPU's fp32 matrix-product roof: the best rate of a few large square products on the threads
   torch uses (the workbench sets one);
2. counts the matrix-product FLOPs of one eager training step and one one-shot pass (torch.profiler's FLOP
   counter over ``mm``, ``addmm``, ``bmm``, ``baddbmm`` and convolutions), for the same models and sizes as
   ``bench/metanet.py``;
3. times the eager step and shot (median of ``--repeats``) on the PyG pass ("eager": what ran before the dense
   pass) and on the dense layered pass (the default now), and with ``--compile`` also the compiled pass
   (``workbench.metanet.Compiled``, what ``TrainConfig.compile`` trains with);
4. prints the floor ``FLOPs / roof`` -- the time the matrix products alone would take if they ran at the roof and
   everything else (element-wise chains, gathers, scatters, the optimizer, Python) cost nothing -- and the bound
   ``eager time / floor``: no fp32 implementation on this CPU can be faster than eager by more than that. The FLOPs
   are counted on the PyG pass; the dense pass does the same products (the edge maps are the same maps).

A bound below the 2x speed-up target means the target cannot be met in fp32 here, however well the element-wise work is
fused; it takes fewer FLOPs (another model) or faster matrix units (bf16/AMX, a GPU).

A second bound, for eager execution of the dense pass's operators (``bound, eager ops``): the part of a step no
metanet implementation changes (the zoo networks' forward and backward on the images, and AdamW: ``fixed``), plus the
dense pass's operator sequence run on one network per chunk (``dispatch``: the same operators, each on tiny tensors,
so what is left is their launch cost in Python and ATen). Eager time over ``fixed + dispatch`` bounds what any
implementation issuing those operators one by one can reach; fewer operators (fused kernels: ``torch.compile``) is
the way past it.

    python bench/roofline.py [--families cnn-tanh mlp-tanh] [--sizes run default large] [--compile] [--json F]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import workbench  # noqa: F401  (one CPU thread)
from metanet import SIZES, OnPath, _images, make_shot, make_step  # bench/metanet.py
from workbench.metanet import Compiled, ScaleGMN
from workbench.nets import init_params
from workbench.zoo import default_spec

#: the operators whose FLOPs the floor counts: every matrix product and convolution
PRODUCT_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::conv1d", "aten::conv2d",
               "aten::convolution")


def matmul_roof(sizes=(512, 1024, 2048), repeats=5) -> float:
    """This CPU's fp32 matrix-product rate in FLOP/s: the best of ``repeats`` square products per size."""
    best = 0.0
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        a @ b  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n ** 3 / (time.perf_counter() - start))
    return best


def product_flops(fn) -> float:
    """FLOPs of the matrix products and convolutions of one call of ``fn`` (the profiler's counter)."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        fn()
    return float(sum(e.flops for e in prof.key_averages() if e.key in PRODUCT_OPS))


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fixed_part(model, spec, zoo, x, y, repeats: int) -> float:
    """Seconds of a training step's part outside the metanet: the objective's forward and backward on the zoo
    networks (as leaves) and a fused AdamW step of the metanet's parameters."""
    from workbench.objective import objective

    leaves = [(w.clone().requires_grad_(), b.clone().requires_grad_()) for w, b in zoo]
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-9, fused=True)

    def step():
        objective(spec, leaves, x, y).mean().backward()
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
    return median_seconds(step, repeats)


def dispatch_floor(model, spec, zoo, x, y, repeats: int, training: bool) -> float:
    """Seconds of the dense pass's operators on one network per chunk the batch runs in (a training step of one
    network minus its fixed part, or a one shot of one network), times the number of chunks."""
    from workbench.metanet.dense import chunk_networks

    one = [(w[:1], b[:1]) for w, b in zoo]
    chunks = len(chunk_networks(zoo[0][0].shape[0], spec.n_edges, model.hidden))
    dense = OnPath(model, "dense")
    if training:
        single = median_seconds(make_step(model, dense, spec, one, x, y, fused=True), repeats)
        return chunks * max(0.0, single - fixed_part(model, spec, one, x, y, repeats))
    return chunks * median_seconds(make_shot(dense, spec, one), repeats)


def roofline_rows(families, sizes, repeats=5, use_compile=False, n_graphs=32, n_images=128, n_shot=64,
                  roof: float | None = None):
    """One record per family, size and measurement (training step, one shot) with FLOPs, floor and bound."""
    roof = roof or matmul_roof()
    rows = []
    for family in families:
        spec = default_spec(family)
        zoo = init_params(spec, n_graphs, torch.Generator().manual_seed(2))
        shot_params = init_params(spec, n_shot, torch.Generator().manual_seed(1))
        x = _images(spec, n_images)
        y = torch.randint(0, 10, (n_images,), generator=torch.Generator().manual_seed(4))
        for size in sizes:
            hidden, layers = SIZES[size]
            torch.manual_seed(0)  # the model of bench/metanet.py
            model = ScaleGMN.for_spec(spec, hidden=hidden, n_layers=layers, bidirectional=True)
            pyg, dense = OnPath(model, "pyg"), OnPath(model, "dense")
            fns = {f"training step, {n_graphs} graphs x {n_images} images":
                   (make_step(model, pyg, spec, zoo, x, y, fused=True), n_graphs, "graphs/s"),
                   f"one shot, batch {n_shot}": (make_shot(pyg, spec, shot_params), n_shot, "nets/s")}
            on_dense = {f"training step, {n_graphs} graphs x {n_images} images":
                        make_step(model, dense, spec, zoo, x, y, fused=True),
                        f"one shot, batch {n_shot}": make_shot(dense, spec, shot_params)}
            fast = {}
            if use_compile:  # what TrainConfig.compile trains with (a failure falls back to eager: not timed)
                twin = Compiled(copy.deepcopy(model))
                fast = {f"training step, {n_graphs} graphs x {n_images} images":
                        make_step(twin.model, twin, spec, zoo, x, y, fused=True),
                        f"one shot, batch {n_shot}": make_shot(twin, spec, shot_params)}
            for measurement, (fn, n, unit) in fns.items():
                flops = product_flops(fn)
                eager = median_seconds(fn, repeats)
                floor = flops / roof
                dense_s = median_seconds(on_dense[measurement], repeats)
                training = measurement.startswith("training")
                fixed = fixed_part(model, spec, zoo, x, y, repeats) if training else 0.0
                dispatch = dispatch_floor(model, spec, zoo if training else shot_params, x, y, repeats, training)
                row = {"family": family, "size": size, "hidden": hidden, "layers": layers,
                       "measurement": measurement, "unit": unit, "n": n, "product_gflop": flops / 1e9,
                       "roof_gflops": roof / 1e9, "eager_s": eager, "floor_s": floor, "bound": eager / floor,
                       "product_share_at_roof": floor / eager, "dense_s": dense_s, "dense_ratio": eager / dense_s,
                       "dense_bound": dense_s / floor, "fixed_s": fixed, "dispatch_s": dispatch,
                       "eager_ops_bound": eager / (fixed + dispatch)}
                if measurement in fast:
                    compiled = median_seconds(fast[measurement], repeats)
                    if twin.failure is None:
                        row["compiled_s"], row["compiled_ratio"] = compiled, eager / compiled
                    else:
                        print(f"# torch.compile failed, not timed: {twin.failure}")
                rows.append(row)
    return rows


def print_table(rows) -> None:
    compiled = any("compiled_s" in r for r in rows)
    head = ("| family | metanet | measurement | product GFLOP | eager (ms) | floor at roof (ms) | bound vs eager | "
            "dense (ms) | dense vs eager | fixed + dispatch (ms) | bound, eager ops |")
    rule = "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    if compiled:
        head += " torch.compile (ms) | compile vs eager |"
        rule += "---:|---:|"
    print(head + "\n" + rule)
    for r in rows:
        line = (f"| {r['family']} | hidden {r['hidden']}, {r['layers']} layers | {r['measurement']} | "
                f"{r['product_gflop']:.2f} | {r['eager_s'] * 1e3:.1f} | {r['floor_s'] * 1e3:.1f} | "
                f"**{r['bound']:.2f}x** | {r['dense_s'] * 1e3:.1f} | {r['dense_ratio']:.2f}x | "
                f"{r['fixed_s'] * 1e3:.1f} + {r['dispatch_s'] * 1e3:.1f} | **{r['eager_ops_bound']:.2f}x** |")
        if compiled:
            line += (f" {r['compiled_s'] * 1e3:.1f} | {r['compiled_ratio']:.2f}x |" if "compiled_s" in r else " | |")
        print(line, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["cnn-tanh", "mlp-tanh"])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd layers")
    parser.add_argument("--json", help="append one JSON line per measurement to this file")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    roof = matmul_roof()
    print(f"# torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), load average "
          f"{load:.2f}; fp32 matrix-product roof {roof / 1e9:.1f} GFLOP/s")
    rows = roofline_rows(args.families, args.sizes, args.repeats, args.compile, roof=roof)
    print_table(rows)
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps({"bench": "roofline", **r}) + "\n")


if __name__ == "__main__":
    main()
