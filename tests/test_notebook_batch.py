"""Notebooks executed without a frontend (``python -m workbench run``, papermill) are read later as files: their
progress bars must be text lines, not widget bars frozen at "0%", and their explorer widgets must leave a static
figure (:mod:`workbench.notebook`). The browser test checks the same on a really executed notebook."""
from __future__ import annotations

import re
import sys

import pytest
import torch

import workbench.notebook as wnb
import workbench.system.progress as wprogress
from workbench.nets import NetSpec, init_params

FROZEN_BAR = re.compile(r"\d+%\|")


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("0", False), ("false", False)])
def test_batch_mode_follows_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(wprogress.BATCH_ENV, value)
    assert wprogress.batch_mode() is expected


def test_batch_mode_outside_a_kernel_is_off(monkeypatch):
    monkeypatch.delenv(wprogress.BATCH_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert wprogress.batch_mode() is False


def test_text_progress_writes_whole_lines_and_a_final_summary(monkeypatch, capsys):
    monkeypatch.setenv(wprogress.BATCH_ENV, "1")
    monkeypatch.setattr(wprogress, "BATCH_MININTERVAL", 0.0)
    for _ in wprogress.progress_bar(range(4), desc="loop"):
        pass
    bar = wprogress.progress_bar(total=10, desc="kept short", leave=False)
    bar.update(3)
    bar.set_postfix(loss=0.5)
    bar.close()
    silent = wprogress.progress_bar(total=5, desc="silent", disable=True)
    silent.update(5)
    silent.close()
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err and not FROZEN_BAR.search(err), repr(err)
    lines = err.splitlines()
    assert [line for line in lines if line.startswith("loop")][-1].startswith("loop: 4/4 (100%)"), lines
    assert lines[-1].startswith("kept short: 3/10 (30%)") and "loss=0.5" in lines[-1], lines
    assert not [line for line in lines if "0/4" in line or "silent" in line], lines  # no empty start, no disabled bar


def test_text_progress_is_rate_limited(monkeypatch, capsys):
    monkeypatch.setenv(wprogress.BATCH_ENV, "1")
    monkeypatch.setattr(wprogress, "BATCH_MININTERVAL", 3600.0)
    for _ in wprogress.progress_bar(range(1000), desc="fast"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fast: 1000/1000 (100%)"), lines  # the final line only


def test_use_text_progress_rebinds_tqdm_auto_and_workbench_modules(monkeypatch):
    import tqdm.auto
    import tqdm.autonotebook

    import workbench.zoo.train as zoo  # the zoo module that binds tqdm

    for module in (tqdm.auto, tqdm.autonotebook):  # restored after the test
        monkeypatch.setattr(module, "tqdm", module.tqdm)
        monkeypatch.setattr(module, "trange", module.trange)
    monkeypatch.setattr(zoo, "tqdm", zoo.tqdm)
    wprogress.use_text_progress()
    text = wprogress._text_progress_class()
    assert tqdm.auto.tqdm is text and tqdm.autonotebook.tqdm is text and zoo.tqdm is text


@pytest.fixture
def shown(monkeypatch):
    """What :func:`show_widget` displays, as (object, raw) pairs."""
    import IPython.display

    calls = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: calls.append((obj, kw.get("raw", False))))
    return calls


def _widget():
    from workbench.viz.gauge import scaling_widget

    spec = NetSpec.mlp((4, 5, 3), "relu")
    return scaling_widget(spec, init_params(spec, 1, torch.Generator().manual_seed(0)), torch.randn(6, 4))


def test_show_widget_in_batch_mode_displays_a_static_snapshot(monkeypatch, shown, capsys):
    monkeypatch.setenv(wprogress.BATCH_ENV, "1")
    widget = _widget()
    wnb.show_widget(widget)
    note, figure = shown
    assert note[1] and "hidden layer, unit, log10 scale" in note[0]["text/plain"]
    assert figure[1] and "application/vnd.plotly.v1+json" in figure[0]
    assert "scaled by 10" in figure[0]["text/plain"]
    assert "max |delta logits| = " in capsys.readouterr().out
    assert not any(obj is widget for obj, _ in shown)


def test_show_widget_interactively_displays_the_live_widget(monkeypatch, shown):
    monkeypatch.setenv(wprogress.BATCH_ENV, "0")
    widget = _widget()
    wnb.show_widget(widget)
    assert shown == [(widget, False)]
