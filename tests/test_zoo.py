"""Model zoos: vectorised generation, storage round trips, atomic saves, the Small CNN Zoo import, figures."""
import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
import torch.nn as nn
from numpy.lib.stride_tricks import sliding_window_view

import workbench.zoo.generation as zoo_mod  # load_or_generate looks generate up here
from workbench.data import Dataset, load_digits_data
from workbench.forward_pass import forward
from workbench.interop import to_module
from workbench.nets import flatten_params, init_params, small_cnn_zoo_spec
from workbench.nets import unflatten_params
from workbench.viz.zoo import accuracy_distribution_figure, accuracy_table, hparam_accuracy_figure
from workbench.zoo import (
    FAMILIES,
    META_COLUMNS,
    HParamSpace,
    Zoo,
    ZooError,
    default_spec,
    generate,
    load_or_generate,
    load_small_cnn_zoo,
    sample_hparams,
    split_networks,
    train_networks,
)

from strategies import tf_shapes as _tf_shapes  # noqa: E402  (the Small CNN Zoo writer, shared with test_fuzz)
from strategies import write_small_cnn_zoo  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_digits_data(seed=0)


@pytest.fixture(scope="module")
def small_zoo(digits):
    return generate(default_spec("mlp-tanh"), digits, 12, epochs=2, checkpoints=(0, 1), seed=3, progress=False)


@pytest.fixture(scope="module")
def cnn_zoo(digits):
    return generate(default_spec("cnn-relu"), digits, 6, epochs=1, seed=1, progress=False)


# -- architectures and hyperparameters -------------------------------------------------------------------------
def test_default_specs():
    for family in FAMILIES:
        spec = default_spec(family, "digits")
        assert spec.family == family
        assert spec.n_params <= 5000
        if spec.kind == "cnn":
            assert spec.image_size == 8 and spec.kernel_size == 3 and min(spec.spatial_sizes()) >= 1
        else:
            assert spec.widths[0] == 64
    assert default_spec("cnn-tanh", "cifar10-gs") == small_cnn_zoo_spec("tanh")
    assert default_spec("mlp-relu", "cifar10-gs").widths[0] == 1024
    with pytest.raises(ZooError, match="unknown network family 'cnn-gelu'.*mlp-tanh"):
        default_spec("cnn-gelu")
    with pytest.raises(ZooError, match="no default architecture for data set 'mnist'"):
        default_spec("cnn-tanh", "mnist")


def test_sampled_hparams_are_seeded_and_in_range():
    space = HParamSpace()
    hp = sample_hparams(400, seed=5)
    pd.testing.assert_frame_equal(hp, sample_hparams(400, seed=5))
    assert not hp.equals(sample_hparams(400, seed=6))
    assert set(hp["optimizer"]) == {"sgd", "adam"}
    for opt, (lo, hi) in (("sgd", space.lr_sgd), ("adam", space.lr_adam)):
        lr = hp.loc[hp["optimizer"] == opt, "lr"]
        assert lr.between(lo, hi).all()
    assert hp["init_scale"].between(*space.init_scale).all() and hp["l2"].between(*space.l2).all()
    assert hp["dropout"].between(*space.dropout).all() and hp["train_fraction"].between(*space.train_fraction).all()
    # log-uniform: the median of log lr sits mid-range
    adam = np.log(hp.loc[hp["optimizer"] == "adam", "lr"])
    assert abs(adam.median() - np.log(space.lr_adam).mean()) < 0.5
    with pytest.raises(ZooError, match="unknown optimizers"):
        HParamSpace(optimizers=("rmsprop",))


# -- generation --------------------------------------------------------------------------------------------------
def test_generated_zoo_layout(small_zoo):
    assert len(small_zoo) == 12 * 3
    assert set(META_COLUMNS) <= set(small_zoo.meta.columns)
    assert sorted(small_zoo.meta["epoch"].unique()) == [0, 1, 2]
    assert (small_zoo.meta.groupby("net_id").size() == 3).all()
    # entries are network-major and the parameters of one network differ between its checkpoints
    assert small_zoo.meta["net_id"].tolist() == sorted(small_zoo.meta["net_id"])
    flat = flatten_params(small_zoo.params)
    assert not torch.equal(flat[0], flat[1]) and torch.isfinite(flat).all()
    # hyperparameters are per network, identical across its checkpoints
    assert (small_zoo.meta.groupby("net_id")[["lr", "optimizer", "dropout"]].nunique() == 1).all().all()
    assert small_zoo.info["generation"]["n_networks"] == 12


def test_split_by_net_id(small_zoo):
    per_net = small_zoo.meta.groupby("net_id")["split"].nunique()
    assert (per_net == 1).all()
    splits = split_networks(1000, seed=0)
    counts = pd.Series(splits).value_counts()
    assert counts["test"] == 500 and counts["train"] == 400 and counts["val"] == 100
    assert (split_networks(1000, seed=0) == splits).all() and not (split_networks(1000, seed=1) == splits).all()
    bad = small_zoo.meta.copy()
    bad.loc[0, "split"] = "test" if bad.loc[0, "split"] != "test" else "train"
    with pytest.raises(ZooError, match="checkpoints in several splits"):
        Zoo(small_zoo.spec, small_zoo.params, bad, "digits")


def test_generation_is_deterministic(digits, small_zoo):
    again = generate(default_spec("mlp-tanh"), digits, 12, epochs=2, checkpoints=(0, 1), seed=3, progress=False)
    for (w1, b1), (w2, b2) in zip(small_zoo.params, again.params):
        assert torch.equal(w1, w2) and torch.equal(b1, b2)
    pd.testing.assert_frame_equal(small_zoo.meta, again.meta)
    other = generate(default_spec("mlp-tanh"), digits, 12, epochs=2, checkpoints=(0, 1), seed=4, progress=False)
    assert not torch.equal(other.params[0][0], small_zoo.params[0][0])


def test_cnn_zoo_generation(cnn_zoo, digits):
    assert cnn_zoo.spec.kind == "cnn" and len(cnn_zoo) == 6 * 2
    final = cnn_zoo.subset(epoch="final")
    # recorded metrics are the function computed by forward_pass.forward
    logits = forward(final.spec, final.params, digits.x_test)
    acc = (logits.argmax(-1) == digits.y_test).float().mean(1).double().numpy()
    np.testing.assert_allclose(final.meta["test_acc"].to_numpy(), acc, atol=1e-6)


def test_generate_on_cifar_shaped_data():
    """The cifar10-gs architectures train too (the grouped-convolution route for the Small CNN Zoo CNN)."""
    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.randn(n, 1, 32, 32, generator=g)
    y = lambda n: torch.arange(n) % 10
    data = Dataset("cifar10-gs", x(40), y(40), x(20), y(20), x(20), y(20))
    for family in ("cnn-tanh", "mlp-relu"):
        zoo = generate(default_spec(family, "cifar10-gs"), data, 3, epochs=1, progress=False)
        assert zoo.dataset == "cifar10-gs" and len(zoo) == 6
        assert torch.isfinite(flatten_params(zoo.params)).all()


def test_zoo_spans_weak_to_strong(digits):
    zoo = generate(default_spec("mlp-tanh"), digits, 32, epochs=4, checkpoints=(0,), seed=0, progress=False)
    start = zoo.subset(epoch=0).meta["test_acc"]
    final = zoo.subset(epoch="final").meta["test_acc"]
    assert abs(start.mean() - 0.1) < 0.05
    assert final.mean() > 0.6 and final.max() > 0.9
    assert final.max() - final.min() > 0.2  # varied hyperparameters give varied networks
    assert (final.to_numpy() > start.to_numpy()).mean() > 0.8


def test_checkpoint_epochs_validated(digits):
    with pytest.raises(ZooError, match="within 0..epochs=2"):
        generate(default_spec("mlp-relu"), digits, 2, epochs=2, checkpoints=(3,), progress=False)
    with pytest.raises(ZooError, match="expects images of shape"):
        generate(default_spec("mlp-relu", "cifar10-gs"), digits, 2, epochs=1, progress=False)


def _explicit_hparams(n, **overrides):
    base = {"lr": 0.01, "init_scale": 1.0, "l2": 1e-4, "dropout": 0.0, "train_fraction": 1.0, "optimizer": "adam"}
    frame = pd.DataFrame({k: [v] * n for k, v in base.items()})
    for col, values in overrides.items():
        frame[col] = values
    return frame


@pytest.mark.parametrize("family", ["mlp-relu", "cnn-tanh"])
def test_per_network_updates_match_torch_optim(digits, family):
    """Full-batch training (order-free): every network follows torch.optim with its own optimizer, lr and L2."""
    spec = default_spec(family)
    n_train = 96
    data = Dataset("digits", digits.x_train[:n_train], digits.y_train[:n_train], digits.x_val, digits.y_val,
                   digits.x_test, digits.y_test)
    hp = _explicit_hparams(3, lr=[0.05, 0.003, 0.02], l2=[1e-3, 1e-2, 0.0], optimizer=["sgd", "adam", "adam"])
    theta0 = flatten_params(init_params(spec, 3, torch.Generator().manual_seed(0)))
    saved, diverged, steps = train_networks(spec, data, theta0, hp, epochs=3, batch_size=n_train, progress=False)
    assert not diverged.any() and steps.tolist() == [1, 1, 1]
    for b in range(3):
        module = to_module(spec, unflatten_params(spec, theta0), index=b)
        opt_cls = torch.optim.SGD if hp.optimizer[b] == "sgd" else torch.optim.Adam
        kw = {"momentum": 0.9} if hp.optimizer[b] == "sgd" else {}
        opt = opt_cls(module.parameters(), lr=hp.lr[b], weight_decay=hp.l2[b], **kw)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(module(data.x_train), data.y_train).backward()
            opt.step()
        expected = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
        torch.testing.assert_close(saved[3][b], expected, atol=2e-5, rtol=1e-4)


def test_networks_train_independently(digits):
    spec = default_spec("mlp-tanh")
    theta0 = flatten_params(init_params(spec, 4, torch.Generator().manual_seed(1)))
    hp = _explicit_hparams(4, dropout=0.2, train_fraction=0.5)
    other = hp.copy()
    other.loc[3, ["lr", "optimizer", "l2"]] = [0.3, "sgd", 1e-2]
    a, _, _ = train_networks(spec, digits, theta0, hp, epochs=1, progress=False)
    b, _, _ = train_networks(spec, digits, theta0, other, epochs=1, progress=False)
    torch.testing.assert_close(a[1][:3], b[1][:3], atol=1e-6, rtol=0)
    assert not torch.allclose(a[1][3], b[1][3])


def test_diverging_networks_are_frozen_finite(digits):
    spec = default_spec("mlp-relu")
    hp = _explicit_hparams(3, lr=[0.01, 1e9, 0.01], optimizer=["adam", "sgd", "sgd"], init_scale=[1.0, 3.0, 1.0])
    zoo = generate(spec, digits, 3, epochs=1, checkpoints=(), hparams=hp, progress=False)
    assert zoo.meta["diverged"].tolist() == [False, True, False]
    assert torch.isfinite(flatten_params(zoo.params)).all()


# -- subsets, devices -----------------------------------------------------------------------------------------------
def test_subset(small_zoo):
    train = small_zoo.subset(split="train")
    assert set(train.meta["split"]) == {"train"} and len(train) == (small_zoo.meta["split"] == "train").sum()
    final = small_zoo.subset(epoch="final")
    assert len(final) == 12 and set(final.meta["epoch"]) == {2}
    both = small_zoo.subset(split="test", epoch=[0, 2])
    assert set(both.meta["epoch"]) == {0, 2} and set(both.meta["split"]) == {"test"}
    mask = (small_zoo.meta["net_id"] % 2 == 0).to_numpy()
    picked = small_zoo.subset(mask=mask)
    assert (picked.meta["net_id"] % 2 == 0).all()
    index = np.flatnonzero(mask)
    assert torch.equal(picked.params[1][0], small_zoo.params[1][0][index])
    with pytest.raises(ZooError, match="'final'"):
        small_zoo.subset(epoch="last")
    with pytest.raises(ZooError, match="unknown split"):
        small_zoo.subset(split="dev")
    assert small_zoo.to("cpu").device.type == "cpu"
    summary = small_zoo.summary()
    assert summary["n_networks"] == 12 and sum(summary["networks_per_split"].values()) == 12
    json.dumps(summary)


# -- storage -------------------------------------------------------------------------------------------------------
def _assert_same_zoo(a, b):
    assert a.spec == b.spec and a.dataset == b.dataset and a.split_seed == b.split_seed
    for (w1, b1), (w2, b2) in zip(a.params, b.params):
        assert torch.equal(w1, w2) and torch.equal(b1, b2) and w1.dtype == w2.dtype
    pd.testing.assert_frame_equal(a.meta, b.meta, check_exact=True)


def test_save_load_round_trip_is_exact(tmp_path, small_zoo, cnn_zoo):
    for zoo in (small_zoo, cnn_zoo):
        path = zoo.save(tmp_path / zoo.spec.family)
        loaded = Zoo.load(path)
        _assert_same_zoo(zoo, loaded)
        assert loaded.info == json.loads(json.dumps(zoo.info))
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_load_errors(tmp_path, small_zoo):
    with pytest.raises(ZooError, match="does not exist"):
        Zoo.load(tmp_path / "missing")
    path = small_zoo.save(tmp_path / "zoo")
    manifest = json.loads((path / "zoo.json").read_text())
    (path / "zoo.json").unlink()
    with pytest.raises(ZooError, match="has no zoo.json manifest"):
        Zoo.load(path)
    # tensors that do not fit the spec
    manifest["spec"]["widths"] = [64, 16, 32, 10]
    (path / "zoo.json").write_text(json.dumps(manifest))
    with pytest.raises(ZooError, match="tensor shapes disagree with the spec"):
        Zoo.load(path)
    # files changed after saving
    path = small_zoo.save(tmp_path / "zoo2")
    with open(path / "meta.csv", "a") as fh:
        fh.write("garbage\n")
    with pytest.raises(ZooError, match="does not match the checksum"):
        Zoo.load(path)


def test_interrupted_save_leaves_previous_zoo_intact(tmp_path, monkeypatch, small_zoo, cnn_zoo):
    path = tmp_path / "zoo"
    small_zoo.save(path)

    def exploding_to_csv(self, *args, **kwargs):  # params are already written when the failure hits
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(pd.DataFrame, "to_csv", exploding_to_csv)
    with pytest.raises(KeyboardInterrupt):
        cnn_zoo.save(path)
    with pytest.raises(KeyboardInterrupt):
        cnn_zoo.save(tmp_path / "fresh")
    monkeypatch.undo()
    _assert_same_zoo(small_zoo, Zoo.load(path))
    with pytest.raises(ZooError):
        Zoo.load(tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo"]


def test_save_refuses_to_replace_other_directories(tmp_path, small_zoo):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("precious")
    with pytest.raises(ZooError, match="refusing to overwrite"):
        small_zoo.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    _assert_same_zoo(small_zoo, Zoo.load(small_zoo.save(tmp_path / "empty")))


def test_load_or_generate(tmp_path, monkeypatch, digits):
    spec = default_spec("mlp-relu")
    path = tmp_path / "zoo" / "mlp-relu"
    kw = dict(epochs=1, checkpoints=(0,), seed=2, progress=False, verbose=False)
    first = load_or_generate(path, spec, digits, 4, **kw)
    assert (path / "zoo.json").is_file()

    def no_generate(*args, **kwargs):
        raise AssertionError("should have loaded the saved zoo")

    monkeypatch.setattr(zoo_mod, "generate", no_generate)
    _assert_same_zoo(first, load_or_generate(path, spec, digits, 4, **kw))
    monkeypatch.undo()
    bigger = load_or_generate(path, spec, digits, 5, **kw)  # different settings: regenerated and overwritten
    assert bigger.meta["net_id"].nunique() == 5
    assert Zoo.load(path).meta["net_id"].nunique() == 5
    reseeded = load_or_generate(path, spec, digits, 5, **{**kw, "seed": 3})
    assert not torch.equal(reseeded.params[0][0], bigger.params[0][0])


# -- the Small CNN Zoo format --------------------------------------------------------------------------------------
def _tf_reference_logits(row, x_nhwc, activation):
    """Logits of one network computed directly from its raw TensorFlow-layout row: 'valid' stride-2 convs on NHWC."""
    act = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0))
    pos, h = 0, x_nhwc.astype(np.float64)
    arrays = []
    for _, shape in _tf_shapes(small_cnn_zoo_spec()):
        size = math.prod(shape)
        arrays.append(row[pos:pos + size].astype(np.float64).reshape(shape))
        pos += size
    for layer in range(3):
        bias, kernel = arrays[2 * layer], arrays[2 * layer + 1]
        windows = sliding_window_view(h, (3, 3), axis=(1, 2))[:, ::2, ::2]  # (N, H', W', C, 3, 3)
        h = act(np.einsum("nijcab,abco->nijo", windows, kernel) + bias)
    bias, kernel = arrays[6], arrays[7]
    return h.mean(axis=(1, 2)) @ kernel + bias


def test_small_cnn_zoo_import_and_function(tmp_path):
    weights, metrics = write_small_cnn_zoo(tmp_path / "zoo")
    zoo = load_small_cnn_zoo(tmp_path / "zoo", activation="tanh")
    final_rows = np.flatnonzero(metrics["step"] == 86)
    expected_split = split_networks(len(final_rows), 0)
    tanh = metrics["config.activation"].to_numpy()[final_rows] == "tanh"
    assert zoo.spec == small_cnn_zoo_spec("tanh") and zoo.dataset == "cifar10-gs"
    assert zoo.meta["net_id"].tolist() == final_rows[tanh].tolist()
    assert zoo.meta["split"].tolist() == expected_split[tanh].tolist()
    assert (zoo.meta["epoch"] == 86).all()
    np.testing.assert_array_equal(zoo.meta["test_acc"], metrics["test_accuracy"].to_numpy()[final_rows[tanh]])
    np.testing.assert_array_equal(zoo.meta["lr"], metrics["config.learning_rate"].to_numpy()[final_rows[tanh]])
    assert set(zoo.meta["optimizer"]) <= {"adam", "sgd"} and "config.l2reg" in zoo.meta and "modeldir" in zoo.meta
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 1)).astype(np.float32)
    logits = forward(zoo.spec, zoo.params, torch.from_numpy(x).permute(0, 3, 1, 2))
    for i, row_index in enumerate(zoo.meta["net_id"]):
        reference = _tf_reference_logits(weights[row_index], x, "tanh")
        np.testing.assert_allclose(logits[i].double().numpy(), reference, atol=1e-4)
    # the same through a plain nn.Module of one network
    module = to_module(zoo.spec, zoo.params, index=1)
    np.testing.assert_allclose(module(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().double().numpy(),
                               _tf_reference_logits(weights[zoo.meta["net_id"][1]], x, "tanh"), atol=1e-4)
    # loaded zoos save and load like generated ones; mmap makes no difference
    _assert_same_zoo(zoo, Zoo.load(zoo.save(tmp_path / "converted")))
    _assert_same_zoo(zoo, load_small_cnn_zoo(tmp_path / "zoo", activation="tanh", mmap=False))


def test_small_cnn_zoo_step_and_activation_selection(tmp_path):
    write_small_cnn_zoo(tmp_path / "zoo", compress=False)
    relu0 = load_small_cnn_zoo(tmp_path / "zoo", activation="relu", step=0)
    assert (relu0.meta["epoch"] == 0).all() and relu0.spec.activation == "relu" and len(relu0) == 5
    with pytest.raises(ZooError, match="mixes activations \\['relu', 'tanh'\\]"):
        load_small_cnn_zoo(tmp_path / "zoo")
    with pytest.raises(ZooError, match="activations present: \\['relu', 'tanh'\\]"):
        load_small_cnn_zoo(tmp_path / "zoo", activation="sigmoid")
    with pytest.raises(ZooError, match="no checkpoints at step 5; steps present: \\[0, 86\\]"):
        load_small_cnn_zoo(tmp_path / "zoo", activation="tanh", step=5)


def test_small_cnn_zoo_missing_and_truncated_files(tmp_path):
    folder = tmp_path / "zoo"
    with pytest.raises(ZooError, match="not a directory"):
        load_small_cnn_zoo(folder)
    write_small_cnn_zoo(folder)
    (folder / "layout.csv").rename(folder / "layout.bak")
    with pytest.raises(ZooError, match="files missing: .*layout.csv"):
        load_small_cnn_zoo(folder, activation="tanh")
    (folder / "layout.bak").rename(folder / "layout.csv")
    raw = (folder / "weights.npy").read_bytes()
    (folder / "weights.npy").write_bytes(raw[: len(raw) // 2])
    for mmap in (True, False):
        with pytest.raises(ZooError, match="weights.npy is truncated"):
            load_small_cnn_zoo(folder, activation="tanh", mmap=mmap)


def test_small_cnn_zoo_layout_and_metrics_errors(tmp_path):
    folder = tmp_path / "a"
    write_small_cnn_zoo(folder, n_columns=4971)
    with pytest.raises(ZooError, match="describes 4970 values per network but weights.npy has 4971 columns"):
        load_small_cnn_zoo(folder, activation="tanh")
    shapes = _tf_shapes(small_cnn_zoo_spec())
    shapes[-1] = ("sequential/dense/kernel:0", (16, 11))
    folder = tmp_path / "b"
    write_small_cnn_zoo(folder, shapes=shapes)
    with pytest.raises(ZooError, match="has 4,970"):
        load_small_cnn_zoo(folder, activation="tanh")
    folder = tmp_path / "c"
    _, metrics = write_small_cnn_zoo(folder)
    metrics.drop(columns=["config.l2reg"]).to_csv(folder / "metrics.csv.gz", index=False, compression="gzip")
    with pytest.raises(ZooError, match="lacks columns \\['config.l2reg'\\]"):
        load_small_cnn_zoo(folder, activation="tanh")
    metrics.iloc[:-1].to_csv(folder / "metrics.csv.gz", index=False, compression="gzip")
    with pytest.raises(ZooError, match="has 19 rows but .*weights.npy has 20"):
        load_small_cnn_zoo(folder, activation="tanh")


def test_small_cnn_zoo_nonfinite_rows(tmp_path):
    folder = tmp_path / "zoo"
    weights, metrics = write_small_cnn_zoo(folder)
    final_tanh = np.flatnonzero((metrics["step"] == 86) & (metrics["config.activation"] == "tanh"))
    weights[final_tanh[0], 7] = np.nan
    weights[final_tanh[2], 100] = np.inf
    weights[0, 3] = np.nan  # a step-0 row: not selected, not counted
    np.save(folder / "weights.npy", weights)
    with pytest.raises(ZooError, match="2 of 5 selected networks have NaN/inf weights.*drop_nonfinite=True"):
        load_small_cnn_zoo(folder, activation="tanh")
    zoo = load_small_cnn_zoo(folder, activation="tanh", drop_nonfinite=True)
    assert len(zoo) == 3 and final_tanh[0] not in zoo.meta["net_id"].tolist()
    assert torch.isfinite(flatten_params(zoo.params)).all() and zoo.info["dropped_nonfinite"] == 2


# -- figures -------------------------------------------------------------------------------------------------------
def test_zoo_figures(small_zoo, cnn_zoo):
    zoos = {"mlp-tanh": small_zoo, "cnn-relu": cnn_zoo}
    fig = accuracy_distribution_figure(zoos)
    assert isinstance(fig, go.Figure) and [t.name for t in fig.data] == ["mlp-tanh", "cnn-relu"]
    assert len(fig.data[0].y) == len(small_zoo)
    fig = hparam_accuracy_figure(zoos)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2 * 6 * 2  # per family and panel: points, median line
    assert fig.layout.xaxis.type == "log"  # lr panel
    table = accuracy_table(zoos)
    assert table.loc[("mlp-tanh", 0), "count"] == 12
    assert table.loc[("mlp-tanh", 0), "max"] == pytest.approx(100 * small_zoo.meta.query("epoch == 0")["test_acc"].max())
    with pytest.raises(ValueError, match="unknown metric"):
        accuracy_distribution_figure(zoos, metric="f1")
