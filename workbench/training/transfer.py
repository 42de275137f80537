"""Which networks a trained metanetwork takes besides its training architecture -- decided by measurement.

A ScaleGMN's parameters do not depend on the hidden widths (hidden neurons of one layer share a node type), so the
same weights run on networks of other widths; they do depend on the depth (per-layer normalisation, edge and output
scales, one node type per hidden layer), so another depth needs a mapping of them (:func:`for_architecture`: the
first and last layer's parameters onto the first and last layer, every inner layer's from the nearest inner trained
layer). Whether either helps is an empirical question, so :mod:`workbench.run.ship` measures four :data:`VARIANTS` of
the training architecture for every optimizer it ships -- half and double hidden widths, one hidden layer fewer and one
more -- on fresh zoos, and records each one's held-out gain with its interval.

The rule (:func:`check_transfer`): the kind (MLP or CNN), the activation, the input size, the class count and the
conv settings are always the training networks' (a :class:`OneShotError` otherwise). Another architecture is taken
only when measured variants cover it -- hidden widths between 0.5x and 2x of the training widths at the same depth
(covered by "half widths" below 1x and "double widths" above), or exactly the measured architecture one layer
shallower or deeper -- and every covering variant *worked* (:func:`worked`: for cross-entropy, a gain interval above
0; for L1, an L1-norm reduction interval above 0 with no accuracy drop beyond the run's target of
:data:`~workbench.measure.verdicts.TARGETS`). It then runs with a :class:`TransferWarning` that quotes the measurement;
anything unmeasured, or measured not to work, is refused quoting what was measured.
"""
from __future__ import annotations

from dataclasses import replace

from torch import nn

from ..errors import WorkbenchError
from ..nets import NetSpec
from .train_config import build_model
from ..measure.verdicts import TARGETS

__all__ = ["OneShotError", "TransferWarning", "VARIANTS", "WIDTH_RANGE", "variants", "worked", "check_transfer",
           "for_architecture", "transfer_table"]

VARIANTS = ("half widths", "double widths", "one layer fewer", "one layer more")
#: hidden-width ratios (network / training network) the width variants measure, and so the range that may be taken
WIDTH_RANGE = (0.5, 2.0)
# ScaleGMN tensors with one entry per weight layer, and with one row per node type (inputs, hidden layers, outputs)
_PER_LAYER = ("w_norm", "b_norm", "edge_mul", "out_scale_w", "out_scale_b", "gate_scale_w", "gate_scale_b")
_PER_TYPE = ("type_mul", "type_add", "type_add_g", "scale_embed", "scale_embed_g")


class OneShotError(WorkbenchError, ValueError):
    """A network the one-shot optimizer cannot read, or one it does not take (another kind or activation, or an
    architecture whose transfer was not measured or was measured not to work)."""


class TransferWarning(UserWarning):
    """The network is not of the optimizer's training architecture but of one whose transfer was measured to work;
    the warning quotes the measurement."""


def variants(spec: NetSpec) -> dict[str, NetSpec]:
    """The measured :data:`VARIANTS` of ``spec`` ("one layer fewer" only when it has two hidden layers or more)."""
    first, hidden, last = spec.widths[0], spec.hidden_widths, spec.widths[-1]
    out = {name: replace(spec, widths=(first, *(max(1, round(w * f)) for w in hidden), last))
           for name, f in (("half widths", WIDTH_RANGE[0]), ("double widths", WIDTH_RANGE[1]))}
    if len(hidden) > 1:
        out["one layer fewer"] = replace(spec, widths=(first, *hidden[:-1], last))
    out["one layer more"] = replace(spec, widths=(first, *hidden, hidden[-1], last))
    return out


def worked(measured: dict, objective: str) -> bool:
    """Whether a measured transfer helped: CE, the accuracy gain's interval above 0; L1, the L1-norm reduction's
    interval above 0 and the accuracy change's lower end no worse than minus the run's allowed drop."""
    if objective == "l1":
        return measured["l1_reduction"]["lo"] > 0 and measured["gain"]["lo"] >= -TARGETS["l1_max_acc_drop"]
    return measured["gain"]["lo"] > 0


def _covering(trained: NetSpec, spec: NetSpec) -> list[str] | str:
    """The variants that cover ``spec``, or why none does."""
    if spec.n_layers == trained.n_layers:
        ratios = [a / b for a, b in zip(spec.hidden_widths, trained.hidden_widths)]
        if not all(WIDTH_RANGE[0] <= r <= WIDTH_RANGE[1] for r in ratios):
            return (f"hidden widths {spec.hidden_widths} lie beyond {WIDTH_RANGE[0]:g}x to {WIDTH_RANGE[1]:g}x of the "
                    f"training widths {trained.hidden_widths}, the range measured")
        return [name for name, used in (("half widths", min(ratios) < 1), ("double widths", max(ratios) > 1)) if used]
    known = {name: v for name, v in variants(trained).items() if v.n_layers != trained.n_layers}
    match = [name for name, v in known.items() if v.widths == spec.widths]
    if match:
        return match
    measured = " or ".join("-".join(map(str, v.widths)) for v in known.values())
    return f"of the other depths only {measured} (one hidden layer fewer or more) were measured"


def _text(m: dict) -> str:
    g = m["gain"]
    text = f"accuracy {g['estimate']:+.1f} [{g['lo']:+.1f}, {g['hi']:+.1f}] points"
    if "l1_reduction" in m:
        r = m["l1_reduction"]
        text += f", L1-norm reduction {r['estimate']:.1f} [{r['lo']:.1f}, {r['hi']:.1f}] %"
    return f"{'-'.join(map(str, m['widths']))}: {text} over {m['networks']} networks"


def check_transfer(trained: NetSpec, spec: NetSpec, *, model: str = "scalegmn", objective: str = "ce",
                   measured: dict[str, dict] | None = None, reference: dict | None = None) -> str | None:
    """None for the training architecture (the image size aside); the warning text for an architecture the measured
    variants cover and that worked; a :class:`OneShotError` saying why otherwise. ``measured``: variant name ->
    its measurement (:func:`workbench.run.ship.measure`); ``reference``: the training architecture's on a fresh zoo."""
    same = replace(spec, image_size=trained.image_size) == trained
    if same:
        return None
    what = f"this optimizer was trained on {trained.describe()}; the network is {spec.describe()}"
    if (spec.kind, spec.activation) != (trained.kind, trained.activation):
        raise OneShotError(f"{what}. A metanetwork is trained for one kind (MLP or CNN) and one activation (its "
                           f"symmetry group depends on it); use the optimizer for {spec.family}")
    fixed = lambda s: (s.widths[0], s.widths[-1], s.kernel_size, s.stride, s.padding)  # noqa: E731
    if fixed(spec) != fixed(trained):
        raise OneShotError(f"{what}. The input size, the class count and the conv settings must be the training "
                           "networks' (the metanetwork has parameters per input and output neuron)")
    if model != "scalegmn":
        raise OneShotError(f"{what}. Only ScaleGMN optimizers take other architectures (no {model} transfer was "
                           "measured)")
    covering = _covering(trained, spec)
    if isinstance(covering, str):
        raise OneShotError(f"{what}: {covering}. Use a network of the training architecture")
    missing = [name for name in covering if name not in (measured or {})]
    if missing:
        raise OneShotError(f"{what}: its transfer ({', '.join(missing)}) was not measured for this optimizer "
                           "(`python -m workbench ship` measures it for the optimizers it ships; docs/oneshot.md)")
    runs = "; ".join(f"{name}, {_text(measured[name])}" for name in covering)
    failed = [name for name in covering if not worked(measured[name], objective)]
    if failed:
        raise OneShotError(f"{what}. Refused: its transfer was measured not to work ({runs}; fresh zoos never seen "
                           "in training, 95 % intervals over networks)")
    base = f"; the training architecture on a fresh zoo: {_text(reference)}" if reference else ""
    return (f"{what}. Measured when the optimizer was shipped, on fresh zoos never seen in training (trained "
            f"checkpoints, 95 % intervals over networks): {runs}{base}")


def for_architecture(model: nn.Module, spec: NetSpec) -> nn.Module:
    """``model``'s weights on a metanetwork built for networks of ``spec`` (other hidden widths take them as they
    are; another depth by the mapping in the module docstring)."""
    old = model.spec
    built = build_model(spec, model.config)
    if spec.n_layers == old.n_layers:
        built.load_state_dict(model.state_dict())
        return built.eval()
    last_old, last_new = old.n_layers - 1, spec.n_layers - 1
    layer = [0 if l == 0 else last_old if l == last_new else min(l, last_old - 1) for l in range(spec.n_layers)]
    hidden_old = old.n_layers - 1
    n_in = old.widths[0]
    rows = (list(range(n_in)) + [n_in + min(h, hidden_old) - 1 for h in range(1, spec.n_layers)]
            + list(range(n_in + hidden_old, n_in + hidden_old + old.widths[-1])))  # inputs, hidden levels, outputs
    state = {}
    for key, value in model.state_dict().items():
        if key in _PER_LAYER:
            value = value[layer]
        elif key in _PER_TYPE:
            value = value[rows]
        state[key] = value
    built.load_state_dict(state)
    return built.eval()


def transfer_table(records: list[dict]) -> str:
    """Markdown: for every shipped cross-entropy optimizer, the one shot of a fresh zoo of its training architecture
    and of each measured variant (accuracy before -> after on trained checkpoints, the gain with its interval, and
    whether it is taken)."""
    lines = ["| optimizer | zoo | widths | networks | before (%) | after (%) | gain (points) | taken |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for r in records:
        rows = [("training architecture", r["fresh_zoo"], "yes")]
        rows += [(t["variant"], t, "with a warning" if worked(t, r["objective"]) else "refused")
                 for t in r["transfers"]]
        for name, m, taken in rows:
            g = m["gain"]
            lines.append(f"| {r['name']} | {name} | {'-'.join(map(str, m['widths']))} | {m['networks']} | "
                         f"{m['acc_before']:.1f} | {m['acc_after']:.1f} | {g['estimate']:+.1f} [{g['lo']:+.1f}, "
                         f"{g['hi']:+.1f}] | {taken} |")
    return "\n".join(lines) + "\n"
