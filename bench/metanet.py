"""Single-shot optimization speed and training throughput of the ScaleGMN meta-optimizer.

Everything is end to end: batched params in, new params out; a training step is metanet forward + zoo-network
forward on 128 images + backward + gradient clipping + AdamW.

**CPU (default)**: "eager fp32" -- what training ran before the dense pass: the PyG pass (``ScaleGMN.path = "pyg"``,
``to_graph`` and message passing on edge lists), per-tensor AdamW, fp32 -- side by side with the candidates, each
timed interleaved with it in one run, with the ratio (``--variants``; an unknown name is an error):

* ``fused AdamW``: the PyG pass with the single-kernel AdamW;
* ``bf16 autocast``: the PyG pass in ``torch.autocast("cpu", torch.bfloat16)`` (pays only on CPUs with native bf16
  units);
* ``dense``: the dense layered pass (``workbench/metanet/dense.py``, the default path) with fused AdamW: what
  training runs now on a CPU without native bf16 units;
* ``dense bf16``: the same in bf16 autocast: what training runs now where ``TrainConfig.cpu_amp`` ("auto") finds
  native bf16 units;
* ``nfn``: the NFN peer at ScaleGMN's parameter count (``matched_hidden``), fused AdamW: one-shot rows also show
  each variant's cost over NFN's ("x NFN");
* ``compile`` (``--compile``; compile time counted and printed separately): ``torch.compile`` of the whole pass on
  the model's default path (``workbench.metanet.Compiled``, what ``TrainConfig.compile`` trains with), and
  ``torch.compile`` of each message-passing layer alone ("torch.compile (layers)"; the GPU rows use this one).
  A variant whose compiling fails is reported and left out.

Sizes (32 graphs x 128 images, one shot on 64 networks or ``--shot-batch``; default ``MetanetConfig`` otherwise,
gate included): ``run`` = the metanet of params/default.yaml (ScaleGMN-B hidden 16, 2 layers), ``default`` = the
notebooks' default (hidden 32, 3 layers) and ``large`` = hidden 128 / 4 layers. ``--clock cpu``: the process's CPU
time (steadier on a shared machine: waiting for a core is not counted); ``--clock user``: its user time alone (page
faults not counted). To time a CPU without AVX-512 on one that has it: ``ATEN_CPU_CAPABILITY=avx2`` (torch's AVX2
kernels; the header prints the capability); bf16 then still runs on the bf16 units: no stand-in for a CPU without.

**CUDA** (``--gpu``, what ``bench/gpu.sh`` runs): the Small CNN Zoo architecture, hidden 128, 4 layers: one-shot
latency at batch 1, one-shot throughput at batch 1,024 in fp32 / TF32 / bf16, training throughput at batch 256
(fp32 and bf16 autocast). ``--tiny`` shrinks every size so the same code runs on a CPU in seconds (the dry run).

``--families mlp-tanh cnn-tanh`` times other zoo families' graphs (an MLP graph has 1,440 edges, a CNN graph 216).
    python bench/metanet.py [--sizes run default] [--families mlp-tanh cnn-tanh] [--variants dense nfn] [--clock cpu]
    python bench/metanet.py --gpu [--json results.jsonl] [--tiny --device cpu]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import resource
import statistics
import time

import torch

import workbench  # noqa: F401  (one CPU thread)
from workbench.metanet import NFN, Compiled, GraphedOneShot, ScaleGMN, count_parameters, matched_hidden
from workbench.metanet.compiled import RECOMPILE_LIMIT
from workbench.metanet.model import optimize_in_chunks
from workbench.nets import init_params, n_networks, small_cnn_zoo_spec
from workbench.objective import objective
from workbench.training.train_config import cpu_has_native_bf16
from workbench.zoo import default_spec

SIZES = {"run": (16, 2), "default": (32, 3), "large": (128, 4)}  # hidden, layers ("run": params/default.yaml)
#: what --variants may name (beside "eager fp32", always timed: the PyG pass, per-tensor AdamW, fp32)
VARIANTS = ("fused AdamW", "bf16 autocast", "dense", "dense bf16", "nfn")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time,
          "user": lambda: resource.getrusage(resource.RUSAGE_SELF).ru_utime}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, device, repeats: int, clock=time.perf_counter) -> dict:
    """Median seconds per call of each function, taken in turn (so load changes hit all alike), after a warm-up;
    ``clock``: ``time.perf_counter`` (wall) or ``time.process_time`` (this process's CPU time)."""
    for fn in fns.values():
        fn()
    _sync(device)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = clock()
            fn()
            _sync(device)
            times[k].append(clock() - start)
    return {k: statistics.median(v) for k, v in times.items()}


class OnPath(torch.nn.Module):
    """A ScaleGMN run on one path of its pass (``"dense"`` or ``"pyg"``), sharing its parameters."""

    def __init__(self, model: ScaleGMN, path: str):
        super().__init__()
        self.model, self.path, self.spec = model, path, model.spec

    def forward(self, params):
        return self.model(params, path=self.path)

    def optimize(self, spec, params, batch_size=None):
        return optimize_in_chunks(self, spec, params, batch_size)


def make_step(model, net, spec, zoo, x, y, *, amp_dtype=None, fused=False):
    """One training step of ``model`` (called through ``net``, e.g. a compiled wrapper) with AdamW (``fused``: the
    single-kernel AdamW that ``workbench.training.optimize.train`` uses; eager fp32 is the per-tensor loop)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused or None)
    device = x.device

    def step():
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            loss = objective(spec, net(zoo), x, y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    return step


def make_shot(model, spec, params, *, amp_dtype=None):
    device = params[0][0].device

    def shot():
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            model.optimize(spec, params)
    return shot


def compiled_copy(model):
    """A copy of ``model`` whose message-passing layers run through torch.compile; (copy, error or None)."""
    twin = copy.deepcopy(model)
    # one compiled graph per input shape and precision (dynamic=False): the GPU bench needs five
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    try:
        for layer in twin.layers:
            layer.forward = torch.compile(layer.forward, dynamic=False)
        return twin, None
    except Exception as err:  # noqa: BLE001  (any failure means: run eager)
        return model, f"{type(err).__name__}: {err}"


def _images(spec, n_images):
    """Random inputs of the zoo networks of ``spec``: ``(n, d_in)`` for an MLP, ``(n, c, 8, 8)`` for a CNN."""
    shape = (n_images, spec.widths[0]) + ((8, 8) if spec.kind == "cnn" else ())
    return torch.randn(*shape, generator=torch.Generator().manual_seed(3))


def cpu_compare(sizes, repeats, use_compile, n_graphs=32, n_images=128, n_shot=64, families=("cnn-tanh",),
                variants=("fused AdamW", "bf16 autocast"), clock="wall"):
    """Eager fp32 side by side with ``variants`` (names of :data:`VARIANTS`; and torch.compile with
    ``use_compile``), per family and size."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; bench/metanet.py knows {list(VARIANTS)}")
    rows = []
    for family in families:
        rows += _cpu_compare_family(family, sizes, repeats, use_compile, n_graphs, n_images, n_shot, variants,
                                    CLOCKS[clock])
    return rows


def _variants(model, spec, layers, wanted):
    """``{name: (model whose parameters AdamW steps, module called, autocast dtype, fused AdamW)}``."""
    pyg, dense = OnPath(model, "pyg"), OnPath(model, "dense")
    variants = {"eager fp32": (model, pyg, None, False), "fused AdamW": (model, pyg, None, True),
                "bf16 autocast": (model, pyg, torch.bfloat16, False), "dense": (model, dense, None, True),
                "dense bf16": (model, dense, torch.bfloat16, True)}
    variants = {k: v for k, v in variants.items() if k == "eager fp32" or k in wanted}
    if "nfn" in wanted:
        torch.manual_seed(0)
        hidden = matched_hidden(spec, count_parameters(model), layers, gate=model.gate)
        nfn = NFN.for_spec(spec, hidden=hidden, n_layers=layers, gate=model.gate)
        variants["nfn"] = (nfn, nfn, None, True)
    return variants


def _compiled_variants(model, spec, zoo, x, y, shot_params, size, family, rows):
    """The torch.compile candidates that compile here, timed once for their compile time (a row each)."""
    twin, layers_error = compiled_copy(model)
    whole = Compiled(copy.deepcopy(model))  # what TrainConfig.compile trains with
    candidates = {"torch.compile (layers)": (twin, twin, lambda: layers_error),
                  "torch.compile": (whole.model, whole, lambda: whole.failure)}  # failure: after the 1st call
    out = {}
    for name, (m, net, failure) in candidates.items():
        start = time.perf_counter()
        try:
            make_step(m, net, spec, zoo, x, y)()
            make_shot(net, spec, shot_params)()
            error = failure()
        except Exception as err:  # noqa: BLE001
            error = f"{type(err).__name__}: {err}"
        if error:
            print(f"# {name} failed, not timed: {error[:300]}")
            continue
        out[name] = (m, net, None, False)
        rows.append({"size": size, "measurement": f"{family}: {name}: compile time (first step + first shot)",
                     "seconds": time.perf_counter() - start})
    return out


def _cpu_compare_family(family, sizes, repeats, use_compile, n_graphs, n_images, n_shot, wanted, clock):
    device = torch.device("cpu")
    spec = default_spec(family)
    zoo = init_params(spec, n_graphs, torch.Generator().manual_seed(2))
    shot_params = init_params(spec, n_shot, torch.Generator().manual_seed(1))
    x = _images(spec, n_images)
    y = torch.randint(0, 10, (n_images,), generator=torch.Generator().manual_seed(4))
    rows = []
    for size in sizes:
        hidden, layers = SIZES[size]
        torch.manual_seed(0)
        model = ScaleGMN.for_spec(spec, hidden=hidden, n_layers=layers, bidirectional=True)
        variants = _variants(model, spec, layers, wanted)
        if use_compile:
            variants.update(_compiled_variants(model, spec, zoo, x, y, shot_params, size, family, rows))
        label = f"{family}, hidden {hidden}, {layers} layers"
        steps = {k: make_step(m, net, spec, zoo, x, y, amp_dtype=amp, fused=fused)
                 for k, (m, net, amp, fused) in variants.items()}
        t = interleaved(steps, device, repeats, clock)
        for k, sec in t.items():
            rows.append({"size": size, "label": label, "measurement": f"training step, {n_graphs} graphs x "
                         f"{n_images} images", "variant": k, "seconds": sec, "rate": n_graphs / sec,
                         "unit": "graphs/s", "ratio": t["eager fp32"] / sec})
        shots = {k: make_shot(net, spec, shot_params, amp_dtype=amp) for k, (_, net, amp, _) in variants.items()
                 if k != "fused AdamW"}  # no optimizer in a shot
        t = interleaved(shots, device, repeats, clock)
        for k, sec in t.items():
            rows.append({"size": size, "label": label, "measurement": f"one shot, batch {n_shot}", "variant": k,
                         "seconds": sec, "rate": n_shot / sec, "unit": "nets/s", "ratio": t["eager fp32"] / sec,
                         **({"per_nfn": sec / t["nfn"]} if "nfn" in t else {})})
    return rows


@contextlib.contextmanager
def tf32(enabled: bool):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _max_diff(a, b) -> float:
    return max(float((x.float() - y.float()).abs().max()) for pa, pb in zip(a, b) for x, y in zip(pa, pb))


def _attempt(build):
    """``(build(), seconds, None)``, or ``(None, seconds, error text)`` when it raises (a path that fails on this
    device is recorded as an error row; the others still run)."""
    start = time.perf_counter()
    try:
        return build(), time.perf_counter() - start, None
    except Exception as err:  # noqa: BLE001
        return None, time.perf_counter() - start, f"{type(err).__name__}: {str(err)[:300]}"


def gpu_rows(device, *, tiny=False, repeats=5, fast=None):
    """The GPU targets of the metanet as JSON-ready records: eager, and the faster paths side by
    side (``fast``; default on CUDA): one-shot replayed from a CUDA graph (:class:`workbench.metanet.GraphedOneShot`),
    ``torch.compile`` of the message-passing layers, and both. Each fast one-shot row also records the largest
    difference of its new parameters from the eager pass at the same precision."""
    fast = device.type == "cuda" if fast is None else fast
    spec = small_cnn_zoo_spec("tanh")
    hidden, layers, big, train_batch, n_images = (128, 4, 1024, 256, 128) if not tiny else (8, 1, 4, 2, 8)
    repeats = 1 if tiny else repeats
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    torch.manual_seed(0)  # gate=False: the model's own default when the GPU targets were set
    model = ScaleGMN.for_spec(spec, hidden=hidden, n_layers=layers, bidirectional=True, gate=False).to(device)
    rows = []

    def record(measurement, precision, seconds, n, unit, path="eager", **extra):
        rows.append({"bench": "metanet", "device": name, "measurement": measurement, "precision": precision,
                     "path": path, "batch": n, "seconds": seconds, "rate": n / seconds, "unit": unit,
                     "hidden": hidden, "layers": layers, **extra})

    def error(measurement, precision, path, text):
        rows.append({"bench": "metanet", "device": name, "measurement": measurement, "precision": precision,
                     "path": path, "error": text})
        print(f"# {measurement}, {precision}, {path}: failed: {text}")

    def graphed_rows(net, label, params, measurement, precision, amp):
        n = n_networks(params)
        shot, setup, err = _attempt(lambda: GraphedOneShot(net, spec, n, amp_dtype=amp))
        if err:
            return error(measurement, precision, label, err)
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            reference = model.optimize(spec, params)
        record(measurement, precision, interleaved({"s": lambda: shot(params)}, device, repeats)["s"], n, "nets/s",
               label, setup_s=setup, max_abs_diff=_max_diff(shot(params), reference))

    one = init_params(spec, 1, torch.Generator().manual_seed(0), device=device)
    many = init_params(spec, big, torch.Generator().manual_seed(1), device=device)
    twin = None
    if fast:
        twin, error_text = compiled_copy(model)
        if error_text:
            error("torch.compile", "", "torch.compile", error_text)
            twin = None
    with tf32(False):
        record("one-shot latency", "fp32", interleaved({"s": make_shot(model, spec, one)}, device, repeats)["s"],
               1, "nets/s")
        if fast and device.type == "cuda":
            graphed_rows(model, "CUDA graph", one, "one-shot latency", "fp32", None)
    with tf32(True):
        if fast and device.type == "cuda" and twin is not None:
            graphed_rows(twin, "torch.compile + CUDA graph", one, "one-shot latency", "tf32", None)
    for precision, allow_tf32, amp in (("fp32", False, None), ("tf32", True, None), ("bf16", True, torch.bfloat16)):
        with tf32(allow_tf32):
            sec = interleaved({"s": make_shot(model, spec, many, amp_dtype=amp)}, device, repeats)["s"]
            record("one-shot throughput", precision, sec, big, "nets/s")
            if twin is not None and precision != "fp32":
                shot = make_shot(twin, spec, many, amp_dtype=amp)
                _, first, err = _attempt(shot)
                if err:
                    error("one-shot throughput", precision, "torch.compile", err)
                    continue
                with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                    diff = _max_diff(twin.optimize(spec, many), model.optimize(spec, many))
                record("one-shot throughput", precision, interleaved({"s": shot}, device, repeats)["s"], big,
                       "nets/s", "torch.compile", compile_s=first, max_abs_diff=diff)
            if fast and device.type == "cuda" and precision == "tf32":
                graphed_rows(model, "CUDA graph", many, "one-shot throughput", precision, amp)
    zoo = init_params(spec, train_batch, torch.Generator().manual_seed(2), device=device)
    x = torch.randn(n_images, 1, 32, 32, device=device)
    y = torch.randint(0, 10, (n_images,), device=device)
    for precision, amp in (("tf32", None), ("bf16", torch.bfloat16)):
        nets = [("eager", model)] + ([("torch.compile", twin)] if twin is not None else [])
        for path, net in nets:
            net.train()
            step = make_step(net, net, spec, zoo, x, y, amp_dtype=amp, fused=True)
            with tf32(True):
                _, first, err = _attempt(step)
                if err:
                    error(f"training step ({n_images} images)", precision, path, err)
                    continue
                sec = interleaved({"s": step}, device, max(1, repeats // 2))["s"]
            extra = {"compile_s": first} if path != "eager" else {}
            record(f"training step ({n_images} images)", precision, sec, train_batch, "graphs/s", path, **extra)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--families", nargs="+", default=["cnn-tanh"], help="zoo families (CPU comparison)")
    parser.add_argument("--variants", nargs="+", default=None, choices=VARIANTS, metavar="VARIANT",
                        help=f"what to time beside eager fp32, of {list(VARIANTS)} (CPU comparison; default: "
                        "dense, nfn, and dense bf16 where the CPU has native bf16 units)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="wall clock or this process's CPU time")
    parser.add_argument("--shot-batch", type=int, default=64, help="networks per one shot (one_shot uses 256)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd layers (slow to compile)")
    parser.add_argument("--gpu", action="store_true", help="the CUDA measurements of bench/gpu.sh")
    parser.add_argument("--device", default="cuda", help="device of --gpu (cpu only with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a dry run of --gpu in seconds")
    parser.add_argument("--json", help="append one JSON line per measurement to this file")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16 "
          f"{cpu_has_native_bf16()}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU "
          f"thread(s), {os.cpu_count()} CPUs, load average {load:.2f}, clock {args.clock}")
    if args.gpu:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("error: --gpu needs a CUDA device and torch.cuda.is_available() is False")
        rows = gpu_rows(device, tiny=args.tiny, repeats=args.repeats, fast=True if args.compile else None)
        print("| device | measurement | precision | path | batch | time (ms) | rate | max abs diff vs eager |\n"
              "|---|---|---|---|---:|---:|---:|---:|")
        for r in rows:
            if "error" in r:
                print(f"| {r['device']} | {r['measurement']} | {r['precision']} | {r['path']} | | | "
                      f"failed: {r['error'][:80]} | |")
                continue
            diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else ""
            print(f"| {r['device']} | {r['measurement']} | {r['precision']} | {r['path']} | {r['batch']} | "
                  f"{r['seconds'] * 1e3:.2f} | {r['rate']:,.0f} {r['unit']} | {diff} |")
    else:
        variants = args.variants or ["dense", "nfn"] + (["dense bf16"] if cpu_has_native_bf16() else [])
        rows = cpu_compare(args.sizes, args.repeats, args.compile, families=args.families, variants=variants,
                           clock=args.clock, n_shot=args.shot_batch)
        print("| metanet | measurement | variant | time (ms) | rate | vs eager fp32 | x NFN |\n"
              "|---|---|---|---:|---:|---:|---:|")
        for r in rows:
            if "variant" not in r:
                print(f"| {r['size']} | {r['measurement']} | | {r['seconds'] * 1e3:.0f} | | | |")
                continue
            per_nfn = f"{r['per_nfn']:.2f}" if "per_nfn" in r else ""
            print(f"| {r['label']} | {r['measurement']} | {r['variant']} | {r['seconds'] * 1e3:.1f} | "
                  f"{r['rate']:,.0f} {r['unit']} | **{r['ratio']:.2f}x** | {per_nfn} |", flush=True)
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps({"bench": "metanet", **r}) + "\n")


if __name__ == "__main__":
    main()
