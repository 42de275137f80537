"""Hypothesis strategies shared by the property tests."""
from __future__ import annotations

from hypothesis import strategies as st

from workbench.nets import ACTIVATIONS, NetSpec


def _keeps_a_pixel(image_size: int, n_conv: int, k: int, s: int, p: int) -> bool:
    size = image_size
    for _ in range(n_conv):
        size = (size + 2 * p - k) // s + 1
        if size < 1:
            return False
    return True


@st.composite
def net_specs(draw, kinds=("mlp", "cnn"), min_depth: int = 1, max_depth: int = 3) -> NetSpec:
    """Random small MLPs/CNNs. ``depth`` = hidden layers (MLP) or conv layers (CNN); widths 1..6."""
    kind = draw(st.sampled_from(kinds))
    activation = draw(st.sampled_from(ACTIVATIONS))
    depth = draw(st.integers(max(min_depth, 1) if kind == "cnn" else min_depth, max_depth))
    widths = draw(st.lists(st.integers(1, 6), min_size=depth + 2, max_size=depth + 2))
    if kind == "mlp":
        return NetSpec.mlp(widths, activation)
    k = draw(st.sampled_from([1, 3, 5]))
    s = draw(st.sampled_from([1, 2]))
    p = draw(st.sampled_from([0, 1, 2]))
    smallest = next(n for n in range(1, 200) if _keeps_a_pixel(n, depth, k, s, p))
    image = draw(st.integers(smallest, smallest + 4))
    return NetSpec.cnn(widths[0], widths[1:-1], widths[-1], k, s, p, activation, image)
