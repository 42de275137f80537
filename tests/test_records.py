"""Typed records: families, methods and run keys parse once, read by field, and print as the names of before."""
import pytest

from workbench import pipeline
from workbench.nets import NetSpec
from workbench.records import Family, RecordError, RunKey
from workbench.viz.training import training_curves_figure, training_curves_grid


def test_family_parses_once_and_prints_as_before():
    family = Family.parse("cnn-tanh")
    assert (family.kind, family.activation) == ("cnn", "tanh")
    assert str(family) == family.name == "cnn-tanh" and Family.parse(family) is family
    assert Family.of(NetSpec.mlp((3, 4, 2), "relu")) == Family("mlp", "relu")
    for bad in ("cnn_tanh", "cnn-tanh-x", "rnn-tanh", "mlp-gelu", 3):
        with pytest.raises(RecordError, match="kind|'<kind>-<activation>'"):
            Family.parse(bad)


def test_methods_are_read_by_field_and_keep_their_labels():
    labels = {key: (pipeline.method_label(key, True), pipeline.method_label(key, False)) for key in pipeline.METHODS}
    assert labels == {"scalegmn": ("ScaleGMN-B", "ScaleGMN"), "gmn": ("GMN-B (sym. broken)", "GMN (sym. broken)"),
                      "gmn-aug": ("GMN-B + sym. aug.", "GMN + sym. aug."),
                      "nfn": ("NFN (perm. only)", "NFN (perm. only)"), "nfn-aug": ("NFN + sym. aug.", "NFN + sym. aug.")}
    for key, method in pipeline.METHODS.items():
        assert method.key == key
    assert [k for k, m in pipeline.METHODS.items() if m.equivariant] == ["scalegmn"]
    assert pipeline.METHODS["gmn-aug"].group_augment and pipeline.METHODS["nfn"].model == "nfn"


def test_run_keys_group_seeds_in_the_curve_figures():
    hist = [{"epoch": 0, "train_loss": 1.0, "val_loss": 1.0, "val_acc": 0.5},
            {"epoch": 1, "train_loss": 0.5, "val_loss": 0.8, "val_acc": 0.6}]
    histories = {RunKey("mlp-tanh", "ce", m, s): hist for m in ("ScaleGMN-B", "GMN-B (sym. broken)") for s in (0, 1)}
    assert RunKey("mlp-tanh", "ce", "ScaleGMN-B", 0).label == "mlp-tanh ce ScaleGMN-B seed 0"
    grid = training_curves_grid(histories, families=["mlp-tanh"], objectives=["ce"])
    assert len(grid.data) == 4 and sum(t.showlegend for t in grid.data) == 2  # one line per seed, one legend per method
    fig = training_curves_figure(histories)
    assert len(fig.data) == 12 and sum(bool(t.showlegend) for t in fig.data) == 2
