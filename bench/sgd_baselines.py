"""SGD baselines and the other callers of the one forward pass, before and after it became the fast path.

"before" is a reference implementation kept in this script only: the workbench's forward pass as it was (grouped
convolutions for every CNN, one group per network; MLPs through einsum / batched matmuls) and its SGD loop as it
was (one masked update per weight and bias tensor). "after" is the package as it is: ``workbench.forward_pass.forward``
(the dense route for small feature maps, grouped convolutions otherwise) and ``workbench.baselines.sgd.sgd_finetune``
(flat parameters, one update for all tensors). Both sides train the same networks from the same weights on the same
minibatches, interleaved run by run, and the script checks that they end at the same weights.

Rows:

* **SGD fine-tuning** (notebook 06's baselines): seconds per epoch for all networks, CE and CE + L1;
* **objective**: forward + backward of the amortized objective for a metanet training step's zoo part (32
  networks x 128 shared images);
* **evaluate**: the metrics of every network on the whole test split (zoo generation and notebook 06 call it);
* with ``--routes``: forward + backward of each conv route of ``forward_pass.forward`` on several architectures, shared
  and per-network inputs -- the measurement behind ``nets.DENSE_ROUTE_MAX_RATIO``.

    python bench/sgd_baselines.py [--families cnn-tanh mlp-tanh] [--networks 128] [--epochs 2] [--repeats 3]
    python bench/sgd_baselines.py --routes
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from unittest import mock  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import workbench  # noqa: E402,F401  (one torch thread)
import workbench.objective as objective_module  # noqa: E402
from workbench.baselines.momentum import minibatch_order  # noqa: E402
from workbench.baselines.sgd import sgd_finetune  # noqa: E402
from workbench.data import load_digits_data  # noqa: E402
from workbench.forward_pass import _dense_cost_ratio, conv_route, forward  # noqa: E402
from workbench.nets import NetSpec, Params, init_params, n_networks, small_cnn_zoo_spec  # noqa: E402
from workbench.objective import cross_entropy_per_network, evaluate, l1_norm, objective  # noqa: E402
from workbench.zoo import default_spec  # noqa: E402


# -- the reference ("before") implementation ------------------------------------------------------------------
def grouped_forward(spec: NetSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Logits (B, N, classes) on shared inputs, the way the workbench computed them before: grouped convolutions."""
    act = torch.tanh if spec.activation == "tanh" else torch.relu
    n_nets = n_networks(params)
    if spec.kind == "mlp":
        w, b = params[0]
        h = torch.einsum("ni,boi->bno", x.reshape(x.shape[0], -1), w) + b[:, None, :]
        for w, b in params[1:]:
            h = torch.baddbmm(b[:, None, :], act(h), w.transpose(1, 2))
        return h
    h = x
    for layer in range(spec.n_conv):
        w, b = params[layer]
        h = act(F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=spec.stride, padding=spec.padding,
                         groups=1 if layer == 0 else n_nets))  # (N, B*out, H', W')
    pooled = h.mean(dim=(2, 3)).reshape(x.shape[0], n_nets, -1).transpose(0, 1)
    w, b = params[-1]
    return torch.baddbmm(b[:, None, :], pooled, w.transpose(1, 2))


def grouped_objective(spec, params, x, y, lam):
    ce = cross_entropy_per_network(grouped_forward(spec, params, x), y)
    return ce + lam * l1_norm(params) if lam else ce


def reference_sgd(spec, params, x, y, epochs, *, lam, lr, momentum=0.9, batch_size=64, seed=0):
    """The SGD loop as it was: one masked momentum update per weight/bias tensor, grouped-conv forward."""
    n_nets = n_networks(params)
    leaves = [t.detach().clone().requires_grad_(True) for pair in params for t in pair]
    buffers = [torch.zeros_like(t) for t in leaves]
    previous = [t.detach().clone() for t in leaves]
    active = torch.ones(n_nets, dtype=torch.bool)
    per_net = lambda mask, t: mask.reshape(-1, *([1] * (t.dim() - 1)))
    for batches in minibatch_order(x.shape[0], batch_size, seed, epochs):
        for idx in batches:
            pairs = [(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]
            losses = grouped_objective(spec, pairs, x[idx], y[idx], lam)
            grads = torch.autograd.grad(torch.where(active, losses, torch.zeros_like(losses)).sum(), leaves)
            with torch.no_grad():
                loss_ok = torch.isfinite(losses)
                for p, q in zip(leaves, previous):
                    p.copy_(torch.where(per_net(active & ~loss_ok, p), q, p))
                    q.copy_(p)
                ok = active & loss_ok
                for g in grads:
                    ok &= torch.isfinite(g.reshape(n_nets, -1)).all(1)
                new_values = []
                for p, g, buf in zip(leaves, grads, buffers):
                    upd = per_net(ok, p)
                    g = torch.where(upd, g, torch.zeros_like(g))
                    buf.copy_(torch.where(upd, momentum * buf + g, buf))
                    new_values.append(p - lr * buf)
                for v in new_values:
                    ok &= torch.isfinite(v.reshape(n_nets, -1)).all(1)
                for p, v in zip(leaves, new_values):
                    p.copy_(torch.where(per_net(ok, p), v, p))
                active &= ok
    return [(leaves[i].detach(), leaves[i + 1].detach()) for i in range(0, len(leaves), 2)]


# -- timing ---------------------------------------------------------------------------------------------------
def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each function, run in turn ``repeats`` times after one warm-up each (so load changes on
    a shared machine hit both sides alike)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def max_param_diff(a: Params, b: Params) -> float:
    return max(float((s - t).abs().max()) for pa, pb in zip(a, b) for s, t in zip(pa, pb))


def sgd_rows(families, n_networks_, epochs, repeats, lr=0.01):
    data = load_digits_data(seed=0)
    x, y = data.split("train")
    rows = []
    for family in families:
        spec = default_spec(family)
        params = init_params(spec, n_networks_, torch.Generator().manual_seed(0))
        for lam in (0.0, 0.01):
            out = {}

            def before():
                out["before"] = reference_sgd(spec, params, x, y, epochs, lam=lam, lr=lr)

            def after():
                out["after"] = sgd_finetune(spec, params, data, epochs=epochs, lam=lam, lr=lr, device="cpu",
                                            progress=False)[epochs].params

            t = interleaved({"before": before, "after": after}, repeats)
            rows.append((f"SGD {family} {'CE' if lam == 0 else 'CE+L1'}, {n_networks_} nets, per epoch",
                         t["before"] / epochs, t["after"] / epochs, max_param_diff(out["before"], out["after"])))
    return rows


def caller_rows(repeats):
    data = load_digits_data(seed=0)
    rows = []
    for family in ("cnn-tanh", "mlp-tanh"):
        spec = default_spec(family)
        params = [tuple(t.requires_grad_() for t in pair) for pair in init_params(spec, 32)]
        leaves = [t for pair in params for t in pair]
        x, y = data.x_train[:128], data.y_train[:128]
        out = {}

        def step(fn, key):
            def run():
                loss = fn(spec, params, x, y, 0.0)
                out[key] = loss.detach()
                torch.autograd.grad(loss.mean(), leaves)
            return run

        t = interleaved({"before": step(grouped_objective, "before"), "after": step(objective, "after")}, repeats * 5)
        rows.append((f"objective fwd+bwd {family}, 32 nets x 128 images", t["before"], t["after"],
                     float((out["before"] - out["after"]).abs().max())))
        many = init_params(spec, 256)

        def eval_before():
            with mock.patch.object(objective_module, "forward", lambda s, p, x: grouped_forward(s, p, x)):
                out["eb"] = evaluate(spec, many, data.x_test, data.y_test)["ce"]

        def eval_after():
            out["ea"] = evaluate(spec, many, data.x_test, data.y_test)["ce"]

        t = interleaved({"before": eval_before, "after": eval_after}, repeats)
        rows.append((f"evaluate {family}, 256 nets x {len(data.y_test)} test images", t["before"], t["after"],
                     float((out["eb"] - out["ea"]).abs().max())))
    return rows


def route_rows(repeats):
    """Yields (label, dense/conv cost ratio, grouped seconds, dense seconds, route chosen) per case."""
    cases = [
        ("digits CNN 8->4->2->1", default_spec("cnn-tanh")),
        ("digits CNN stride 1 8->6->4->2", NetSpec.cnn(1, (8, 8, 8), 10, 3, 1, 0, "tanh", 8)),
        ("Small CNN Zoo 32->15->7->3", small_cnn_zoo_spec("tanh")),
    ]
    for name, spec in cases:
        for per_network, n_nets, n in ((False, 128, 64), (True, 256, 32)):
            if spec.image_size == 32:
                n_nets //= 4
            params = [tuple(t.requires_grad_() for t in pair) for pair in init_params(spec, n_nets)]
            leaves = [t for pair in params for t in pair]
            shape = (n_nets, n) if per_network else (n,)
            x = torch.randn(*shape, 1, spec.image_size, spec.image_size)
            y = torch.randint(0, 10, (n_nets * n,))

            def run(route):
                def f():
                    logits = forward(spec, params, x, per_network=per_network, route=route)
                    torch.autograd.grad(F.cross_entropy(logits.reshape(-1, 10), y), leaves)
                return f

            t = interleaved({r: run(r) for r in ("grouped", "dense")}, repeats * 3)
            label = f"{name}, {n_nets} nets x {n} {'own' if per_network else 'shared'} images"
            yield label, _dense_cost_ratio(spec, spec.image_size), t["grouped"], t["dense"], conv_route(spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=["cnn-tanh", "mlp-tanh"])
    parser.add_argument("--networks", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--routes", action="store_true", help="time the conv routes of forward_pass.forward instead")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), load average {load:.2f}")
    if args.routes:
        print("| architecture, batch | dense/conv multiply-adds | grouped (ms) | dense (ms) | grouped/dense | "
              "route chosen |\n|---|---:|---:|---:|---:|---|")
        for label, ratio, grouped, dense, chosen in route_rows(args.repeats):
            print(f"| {label} | {ratio:.1f} | {grouped * 1e3:.1f} | {dense * 1e3:.1f} | {grouped / dense:.2f}x | "
                  f"{chosen} |", flush=True)
        return
    print("| caller | before (s) | after (s) | speed-up | max difference |\n|---|---:|---:|---:|---:|")
    for label, before, after, diff in sgd_rows(args.families, args.networks, args.epochs, args.repeats) + \
            caller_rows(args.repeats):
        print(f"| {label} | {before:.4f} | {after:.4f} | **{before / after:.2f}x** | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
