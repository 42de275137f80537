"""Property-based fuzzing of the two readers of user files: the Small CNN Zoo reader either returns a zoo that
passes ``check_params`` with finite weights and one meta row per network, or raises ZooError; the params validator
either returns a RunParams whose every value fits the notebooks' declared defaults, or raises ParamsError. Never
any other exception, never a hang."""
from __future__ import annotations

import ast
import math
import signal
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import ParamsError
from workbench.nets import check_params, small_cnn_zoo_spec
from workbench.run.params import INJECTED, RunParams, declared_parameters, list_notebooks, load_params, notebook_key
from workbench.zoo import ZooError, load_small_cnn_zoo

from strategies import write_small_cnn_zoo  # noqa: E402  (shared with test_zoo)

SECONDS = 10.0  # one call must never take longer (the files are at most a few hundred KiB)


@contextmanager
def time_limit(seconds: float = SECONDS):
    """Fail a call that runs longer than ``seconds`` (SIGALRM interrupts Python code, so a loop or a slow parse
    becomes a TimeoutError -- not a ZooError/ParamsError -- and the property fails)."""

    def stop(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the Small CNN Zoo reader ------------------------------------------------------------------------------------
def _metrics_file(folder: Path) -> Path:
    return folder / ("metrics.csv.gz" if (folder / "metrics.csv.gz").exists() else "metrics.csv")


def _csv_file(folder: Path, draw) -> Path:
    return draw(st.sampled_from([folder / "layout.csv", _metrics_file(folder)]))


def _any_file(folder: Path, draw) -> Path:
    return draw(st.sampled_from([folder / "weights.npy", folder / "layout.csv", _metrics_file(folder)]))


def _read_frame(file: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(file)
    except Exception:  # an earlier mutation already broke it: nothing to edit
        return None


def _read_weights(folder: Path) -> np.ndarray | None:
    try:
        return np.load(folder / "weights.npy", allow_pickle=False)
    except Exception:
        return None


def truncate(folder: Path, draw) -> None:
    file = _any_file(folder, draw)
    raw = file.read_bytes()
    file.write_bytes(raw[: draw(st.integers(0, max(0, len(raw) - 1)))])


def flip_bytes(folder: Path, draw) -> None:
    file = _any_file(folder, draw)
    raw = bytearray(file.read_bytes())
    if raw:
        for _ in range(draw(st.integers(1, 8))):
            raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
    file.write_bytes(bytes(raw))


def drop_column(folder: Path, draw) -> None:
    file = _csv_file(folder, draw)
    frame = _read_frame(file)
    if frame is not None and len(frame.columns):
        frame.drop(columns=[draw(st.sampled_from(list(frame.columns)))]).to_csv(file, index=False)


def rename_column(folder: Path, draw) -> None:
    file = _csv_file(folder, draw)
    frame = _read_frame(file)
    if frame is not None and len(frame.columns):
        old = draw(st.sampled_from(list(frame.columns)))
        frame.rename(columns={old: draw(st.text(min_size=1, max_size=12))}).to_csv(file, index=False)


def change_shape(folder: Path, draw) -> None:
    frame = _read_frame(folder / "layout.csv")
    if frame is not None and "shape" in frame.columns and len(frame):
        dims = st.lists(st.integers(-2, 40), max_size=5).map(lambda d: str(tuple(d)))
        frame = frame.astype({"shape": object})
        frame.loc[draw(st.integers(0, len(frame) - 1)), "shape"] = draw(st.one_of(dims, st.text(max_size=20)))
        frame.to_csv(folder / "layout.csv", index=False)


def set_cell(folder: Path, draw) -> None:
    file = _csv_file(folder, draw)
    frame = _read_frame(file)
    if frame is not None and len(frame) and len(frame.columns):
        col = draw(st.sampled_from(list(frame.columns)))
        value = draw(st.one_of(st.text(max_size=10), st.floats(), st.integers(-2**70, 2**70), st.none()))
        frame = frame.astype({col: object})
        frame.loc[draw(st.integers(0, len(frame) - 1)), col] = value
        frame.to_csv(file, index=False)


def insert_nonfinite(folder: Path, draw) -> None:
    weights = _read_weights(folder)
    if weights is not None and weights.size and weights.dtype.kind == "f":
        weights.reshape(-1)[draw(st.integers(0, weights.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        np.save(folder / "weights.npy", weights)


def change_dtype(folder: Path, draw) -> None:
    weights = _read_weights(folder)
    if weights is not None:
        dtype = draw(st.sampled_from([np.int32, np.int8, np.float64, np.float16, np.complex64, np.bool_, ">f4"]))
        with warnings.catch_warnings():  # NaN -> int and complex -> real casts warn; the file is what matters
            warnings.simplefilter("ignore")
            np.save(folder / "weights.npy", weights.astype(dtype))


def change_rows(folder: Path, draw) -> None:
    if draw(st.booleans()):
        weights = _read_weights(folder)
        if weights is not None and weights.ndim:
            keep = draw(st.lists(st.integers(0, max(0, len(weights) - 1)), max_size=6)) if len(weights) else []
            np.save(folder / "weights.npy", weights[keep])
    else:
        file = _metrics_file(folder)
        frame = _read_frame(file)
        if frame is not None:
            keep = draw(st.lists(st.integers(0, max(0, len(frame) - 1)), max_size=6)) if len(frame) else []
            frame.iloc[keep].to_csv(file, index=False)


def garbage_layout(folder: Path, draw) -> None:
    (folder / "layout.csv").write_text(draw(st.text(max_size=200)))


MUTATIONS = [truncate, flip_bytes, drop_column, rename_column, change_shape, set_cell, insert_nonfinite,
             change_dtype, change_rows, garbage_layout]


@settings(max_examples=60)
@given(data=st.data(), n_networks=st.integers(1, 4), steps=st.sampled_from([(86,), (0, 86)]),
       compress=st.booleans(), mmap=st.booleans(), drop_nonfinite=st.booleans(),
       mutations=st.lists(st.sampled_from(MUTATIONS), max_size=3))
def test_small_cnn_zoo_reader_loads_valid_zoos_or_raises_zoo_error(data, n_networks, steps, compress, mmap,
                                                                    drop_nonfinite, mutations):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "zoo"
        write_small_cnn_zoo(folder, n_networks=n_networks, steps=steps, seed=n_networks, compress=compress)
        for mutate in mutations:
            mutate(folder, data.draw)
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        try:
            with time_limit():
                zoo = load_small_cnn_zoo(folder, activation="tanh", mmap=mmap, drop_nonfinite=drop_nonfinite)
        except ZooError as err:
            assert str(folder) in str(err) or "activation" in str(err) or "step" in str(err), str(err)
            zoo = None
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # read-only
        if zoo is None:
            return
        n = check_params(zoo.spec, zoo.params, finite=True)
        assert zoo.spec == small_cnn_zoo_spec("tanh")
        assert n == len(zoo.meta) == len(zoo.meta["net_id"].unique())
        assert set(zoo.meta["split"]) <= {"train", "val", "test"}
        if not mutations:  # an untouched zoo keeps all its tanh networks (even ids) at the last step
            assert n == (n_networks + 1) // 2 and (zoo.meta["epoch"] == 86).all()


# -- the params validator ----------------------------------------------------------------------------------------
REAL_KEYS = ["seed", "lam", "families", "n_networks", "device", "meta_hidden", "meta_bidirectional", "data_path",
             "sgd_epochs", "zoo_epochs", "objective", "mlp_widths", "name", "output_dir"]
SECTIONS = ["01", "02", "03", "04", "05", "06", "99"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**80, 2**80), st.floats(), st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=12)
keys = st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=12), st.integers(), st.booleans(), st.none())
sections = st.dictionaries(st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=8), st.integers()), values,
                           max_size=3)
documents = st.dictionaries(keys, values, max_size=5).flatmap(
    lambda d: st.dictionaries(st.sampled_from(SECTIONS), st.one_of(sections, values), max_size=2).map(
        lambda s: {**d, **s}))
fragments = st.sampled_from([
    ".nan", ".inf", "-.inf", "~", "null", "yes", "off", "0x1F", "0o17", "1.0e+400", "99999999999999999999999",
    "!!binary aGVsbG8=", "!!set {a, b}", "[1, [2, [3]]]", "{a: {b: c}}", "2001-12-14t21:59:43.10-05:00", "'quoted'",
    "&a [1]", "*a", "!!python/name:os.system", "!!float '1'", "!!int '3'", "!!str 3", "[", "{", "- x", ": :",
    "\t", '"\\ud800"', "!!python/object/apply:os.system ['true']",
])
lines = st.lists(st.tuples(st.sampled_from(REAL_KEYS + SECTIONS + ["  seed", "- lam"]),
                           st.one_of(fragments, st.text(max_size=20))).map(lambda kv: f"{kv[0]}: {kv[1]}"),
                 max_size=6).map("\n".join)


@st.composite
def params_texts(draw) -> str:
    """YAML documents: dumped random mappings (possibly truncated), lines of hostile fragments, or any text."""
    kind = draw(st.sampled_from(["dump", "truncated dump", "lines", "text", "deep", "aliases"]))
    if kind == "aliases":  # nested anchors: width**depth elements once unrolled (up to 10**8)
        width, depth = draw(st.integers(1, 10)), draw(st.integers(1, 8))
        lines_ = [f"{draw(st.sampled_from(REAL_KEYS + SECTIONS))}:", "  - &a0 [" + ", ".join(["x"] * width) + "]"]
        lines_ += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth)]
        return "\n".join(lines_) + "\n"
    if kind == "lines":
        return draw(lines)
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(1, 5000))
        return draw(st.sampled_from(REAL_KEYS)) + ": " + "[" * depth + "]" * depth + "\n"
    text = yaml.safe_dump(draw(documents), allow_unicode=draw(st.booleans()), sort_keys=False)
    return text[: draw(st.integers(0, len(text)))] if kind == "truncated dump" else text


_DECLARED = {}


def _declared() -> dict:
    """{notebook: {key: default value}} of the real notebooks (computed once)."""
    if not _DECLARED:
        for nb in list_notebooks():
            _DECLARED[nb] = {k: _literal(v["default"]) for k, v in declared_parameters(nb).items()}
    return _DECLARED


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _fits(value, default) -> bool:
    """The type rule of the params files, written out independently: None on either side fits; an int fits a
    float default; bools are not ints; otherwise the same kind of value."""
    if value is None or default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, list)
    return type(value) is type(default)


def _finite_and_bounded(value) -> bool:
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 2**63:
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
    return seen <= 10_000


@settings(max_examples=150)
@given(text=params_texts(), binary=st.one_of(st.none(), st.binary(max_size=40)))
def test_params_validator_returns_typed_params_or_raises_params_error(text, binary):
    declared = _declared()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass") + (binary or b""))
        try:
            with time_limit():
                params = load_params(path)
        except ParamsError as err:
            assert str(path) in str(err), str(err)
            return
    assert isinstance(params, RunParams)
    assert isinstance(params.name, str) and params.name and "/" not in params.name
    by_key = {notebook_key(nb): nb for nb in declared}
    for key, value in params.shared.items():
        owners = [d for d in declared.values() if key in d]
        assert owners and key not in INJECTED, key
        assert all(_fits(value, d[key]) for d in owners), (key, value)
        assert _finite_and_bounded(value), (key, value)
    for section, entries in params.sections.items():
        defaults = declared[by_key[section]]
        for key, value in entries.items():
            assert key in defaults and key not in INJECTED, (section, key)
            assert _fits(value, defaults[key]) and _finite_and_bounded(value), (section, key, value)
