"""Single-shot optimization speed and training throughput of the ScaleGMN meta-optimizer.

Measures, for the Small CNN Zoo architecture (1x32x32, 3 x conv 16 3x3 s2, GAP, dense 10) and a metanet of hidden
size 128, 4 layers, bidirectional, end to end (batched params in, new params out, graph building included):

* batch-1 latency (ms),
* large-batch throughput (networks/s),
* training throughput (graphs/s: metanet forward + zoo-network forward on 128 images + backward + AdamW step).

Runs on the CPU always and on CUDA when present (bf16 autocast for training there). CPU rows use smaller batches
(printed) so the script finishes in a couple of minutes on 2 cores.

    python bench/metanet.py [--hidden 128] [--layers 4] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from workbench.metanet import ScaleGMN
from workbench.nets import init_params, small_cnn_zoo_spec
from workbench.objective import objective


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_device(device, hidden, layers, repeats, big_batch, train_batch):
    spec = small_cnn_zoo_spec("tanh")
    torch.manual_seed(0)
    model = ScaleGMN.for_spec(spec, hidden=hidden, n_layers=layers, bidirectional=True).to(device)
    rows = []
    one = init_params(spec, 1, torch.Generator().manual_seed(0), device=device)
    t = timed(lambda: model.optimize(spec, one), device, repeats)
    rows.append(("one-shot latency, batch 1", 1, f"{t * 1e3:.2f} ms", f"{1 / t:,.0f} nets/s"))
    many = init_params(spec, big_batch, torch.Generator().manual_seed(1), device=device)
    t = timed(lambda: model.optimize(spec, many), device, repeats)
    rows.append((f"one-shot throughput, batch {big_batch}", big_batch, f"{t * 1e3:.1f} ms",
                 f"{big_batch / t:,.0f} nets/s"))
    if device.type == "cuda":
        def amp_shot():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                model.optimize(spec, many)
        t = timed(amp_shot, device, repeats)
        rows.append((f"one-shot throughput bf16, batch {big_batch}", big_batch, f"{t * 1e3:.1f} ms",
                     f"{big_batch / t:,.0f} nets/s"))
    zoo = init_params(spec, train_batch, torch.Generator().manual_seed(2), device=device)
    x = torch.randn(128, 1, 32, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = objective(spec, model(zoo), x, y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    t = timed(step, device, max(2, repeats // 2))
    rows.append((f"training step, batch {train_batch} graphs x 128 images", train_batch, f"{t * 1e3:.1f} ms",
                 f"{train_batch / t:,.0f} graphs/s"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"ScaleGMN-B, Small CNN Zoo architecture, hidden {args.hidden}, {args.layers} layers; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    print(f"| device | measurement | time | rate |\n|---|---|---|---|")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        big, train_b = (1024, 256) if device.type == "cuda" else (64, 16)
        for label, _, t, rate in bench_device(device, args.hidden, args.layers, args.repeats, big, train_b):
            print(f"| {name} | {label} | {t} | {rate} |", flush=True)
    if len(devices) == 1:
        print("(no CUDA device here: GPU rows not measured)")


if __name__ == "__main__":
    main()
