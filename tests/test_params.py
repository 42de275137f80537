"""Params files are validated against the notebooks' ``parameters`` cells before anything runs, and the runner
executes, records and resumes notebooks from one params file."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from workbench.errors import ParamsError
from workbench.run.params import RENAMED, declared_parameters, load_params, notebook_key
from workbench.run.runner import run, select_notebooks
from workbench.system.paths import REPO_ROOT

NB01 = REPO_ROOT / "notebooks" / "01_weight_space_graphs.ipynb"


def write_notebook(path: Path, parameters: str) -> Path:
    """A minimal notebook whose first code cell is tagged ``parameters``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "workbench", "display_name": "workbench", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    cell = nbformat.v4.new_code_cell(textwrap.dedent(parameters).strip())
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# tiny"), cell, nbformat.v4.new_code_cell("print(seed)")]
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def tiny(tmp_path) -> list[Path]:
    """Two notebooks: 01 declares output_dir/seed/lr/families/path; 02 declares seed/epochs."""
    a = write_notebook(tmp_path / "01_alpha.ipynb", """
        output_dir = "x"
        seed = 0
        lr = 0.1
        families = ["a"]
        path = None
    """)
    b = write_notebook(tmp_path / "02_beta.ipynb", """
        seed = 0
        epochs = 3
    """)
    return [a, b]


@pytest.fixture
def write(tmp_path):
    def _write(text: str, name: str = "run.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return _write


# -- valid files ---------------------------------------------------------------------------------------------------
def test_tiny_notebooks_declare_what_they_say(tiny):
    assert set(declared_parameters(tiny[0])) == {"output_dir", "seed", "lr", "families", "path"}
    assert set(declared_parameters(tiny[1])) == {"seed", "epochs"}
    assert [notebook_key(nb) for nb in tiny] == ["01", "02"]


def test_valid_file_loads(tiny, write):
    path = write("""
        seed: 3
        lr: 0.5
        families: [mlp-tanh, cnn-relu]
        "02":
          epochs: 7
    """, name="my_run.yaml")
    params = load_params(path, notebooks=tiny)
    assert params.name == "my_run"  # the file's stem
    assert params.path == path
    assert params.shared == {"seed": 3, "lr": 0.5, "families": ["mlp-tanh", "cnn-relu"]}
    assert params.sections == {"02": {"epochs": 7}}


def test_name_key_and_empty_file(tiny, write):
    assert load_params(write("name: nightly\nseed: 1\n"), notebooks=tiny).name == "nightly"
    empty = load_params(write(""), notebooks=tiny)
    assert (empty.name, empty.shared, empty.sections) == ("run", {}, {})
    for bad in ("name: a/b", "name: .hidden", "name: 3", "name: ''"):
        with pytest.raises(ParamsError, match="'name' in .* must be a plain folder name"):
            load_params(write(bad), notebooks=tiny)


def test_extends_starts_from_another_file_and_overrides_it_key_by_key(tiny, write):
    write("""
        name: base
        seed: 3
        lr: 0.5
        "02":
          epochs: 7
    """, name="base.yaml")
    child = load_params(write("""
        extends: base.yaml
        lr: 0.25
        families: [cnn-relu]
        "02":
          seed: 9
    """, name="child.yaml"), notebooks=tiny)
    assert child.name == "child"  # the base's name is not inherited
    assert child.shared == {"seed": 3, "lr": 0.25, "families": ["cnn-relu"]}
    assert child.sections == {"02": {"epochs": 7, "seed": 9}}


def test_extends_validates_the_merged_file_and_refuses_cycles_and_missing_bases(tiny, write):
    write("seed: 3\nbogus: 1\n", name="bad_base.yaml")
    with pytest.raises(ParamsError, match="unknown key 'bogus'"):
        load_params(write("extends: bad_base.yaml\n", name="a.yaml"), notebooks=tiny)
    write("extends: loop_b.yaml\n", name="loop_a.yaml")
    with pytest.raises(ParamsError, match="extends it back"):
        load_params(write("extends: loop_a.yaml\n", name="loop_b.yaml"), notebooks=tiny)
    with pytest.raises(ParamsError, match="not a file next to it"):
        load_params(write("extends: nowhere.yaml\n", name="c.yaml"), notebooks=tiny)
    with pytest.raises(ParamsError, match="must name another params file"):
        load_params(write("extends: [a, b]\n", name="d.yaml"), notebooks=tiny)


def test_the_study_shares_the_default_recipe_by_construction():
    """params/study.yaml extends params/default.yaml: every training setting it does not override is the default's."""
    default, study = (load_params(REPO_ROOT / "params" / f"{n}.yaml") for n in ("default", "study"))
    recipe = {k: v for k, v in default.shared.items() if k.startswith("meta_")}
    assert recipe and {k: study.shared[k] for k in recipe} == recipe
    assert study.name == "study" and study.shared["n_networks"] == default.shared["n_networks"]
    assert study.shared["n_seeds"] > default.shared["n_seeds"]  # what one 15-minute run cannot afford


def test_real_notebook_01(write):
    params = load_params(write("seed: 2\nn_networks: 2\ncnn_activation: relu\nmlp_widths: [4, 3]\n"), notebooks=[NB01])
    assert params.shared == {"seed": 2, "n_networks": 2, "cnn_activation": "relu", "mlp_widths": [4, 3]}
    assert set(declared_parameters(NB01)) == {"output_dir", "seed", "mlp_widths", "cnn_activation", "n_networks"}
    with pytest.raises(ParamsError, match=r"n_networks in .* is str 'two', but notebook "
                                          r"01_weight_space_graphs.ipynb expects int"):
        load_params(write("n_networks: two\n"), notebooks=[NB01])
    with pytest.raises(ParamsError, match=r"unknown key 'epochs'.*01_weight_space_graphs.ipynb: \['cnn_activation', "
                                          r"'mlp_widths', 'n_networks', 'seed'\]"):
        load_params(write("epochs: 3\n"), notebooks=[NB01])
    with pytest.raises(ParamsError, match=r"unknown key 'n_network' .*\(did you mean 'n_networks'\?\)"):
        load_params(write("n_network: 3\n"), notebooks=[NB01])


# -- unknown keys --------------------------------------------------------------------------------------------------
def test_unknown_key_names_key_notebooks_and_valid_keys(tiny, write):
    path = write("seed: 1\nbogus: 2\n")
    with pytest.raises(ParamsError) as info:
        load_params(path, notebooks=tiny)
    msg = str(info.value)
    assert "unknown key 'bogus'" in msg
    assert str(path) in msg
    assert "01_alpha.ipynb: ['families', 'lr', 'path', 'seed']" in msg
    assert "02_beta.ipynb: ['epochs', 'seed']" in msg
    assert "output_dir" not in msg  # the runner's key is never offered
    assert "did you mean" not in msg


def test_near_miss_gets_a_suggestion(tiny, write):
    with pytest.raises(ParamsError, match=r"unknown key 'sed' .*\(did you mean 'seed'\?\)"):
        load_params(write("sed: 1\n"), notebooks=tiny)
    with pytest.raises(ParamsError, match=r"unknown key 'epoch' .*\(did you mean 'epochs'\?\)"):
        load_params(write("epoch: 1\n"), notebooks=tiny)


def test_section_key_the_notebook_does_not_declare(tiny, write):
    # epochs is a valid key, but only for 02: in 01's section it is an error
    with pytest.raises(ParamsError, match=r"unknown key 'epochs' in section '01' of .*: notebook 01_alpha.ipynb "
                                          r"declares \['families', 'lr', 'path', 'seed'\]"):
        load_params(write('"01":\n  epochs: 5\n'), notebooks=tiny)
    with pytest.raises(ParamsError, match=r"unknown key 'lrr' in section '01' .*\(did you mean 'lr'\?\)"):
        load_params(write('"01":\n  lrr: 5\n'), notebooks=tiny)
    with pytest.raises(ParamsError, match=r"unknown key 'output_dir' in section '02'"):
        load_params(write('"02":\n  output_dir: elsewhere\n'), notebooks=tiny)
    with pytest.raises(ParamsError, match=r"section '02' in .* must be a mapping of 02_beta.ipynb's parameters"):
        load_params(write('"02": 5\n'), notebooks=tiny)
    with pytest.raises(ParamsError, match=r"02.epochs in .* is float 2.5, but notebook 02_beta.ipynb expects int"):
        load_params(write('"02":\n  epochs: 2.5\n'), notebooks=tiny)


# -- types ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, match",
    [
        ("seed: zero", r"seed in .* is str 'zero', but notebook 01_alpha.ipynb expects int \(its default is 0\)"),
        ("seed: true", r"seed in .* is bool True, but notebook 01_alpha.ipynb expects int"),
        ("lr: [0.1, 0.2]",
         r"lr in .* is list \[0.1, 0.2\], but notebook 01_alpha.ipynb expects float \(its default is 0.1\)"),
        ("lr: fast", r"lr in .* is str 'fast', but notebook 01_alpha.ipynb expects float"),
        ("families: a", r"families in .* is str 'a', but notebook 01_alpha.ipynb expects list"),
        ("epochs: 2.0", r"epochs in .* is float 2.0, but notebook 02_beta.ipynb expects int"),
        ("seed: 1.5", r"seed in .* is float 1.5, but notebook 01_alpha.ipynb expects int"),
    ],
)
def test_wrong_type_names_key_and_notebook(tiny, write, text, match):
    with pytest.raises(ParamsError, match=match):
        load_params(write(text + "\n"), notebooks=tiny)


def test_int_for_float_is_accepted(tiny, write):
    assert load_params(write("lr: 1\n"), notebooks=tiny).shared == {"lr": 1}


def test_none_default_accepts_strings_and_null(tiny, write):
    assert load_params(write("path: somewhere\n"), notebooks=tiny).shared == {"path": "somewhere"}
    assert load_params(write("path: null\n"), notebooks=tiny).shared == {"path": None}


@pytest.mark.parametrize("text", ["path: 3", "path: [1, 2]", "path: 0.5", "path: {a: 1}"])
def test_none_default_accepts_anything(tiny, write, text):
    params = load_params(write(text + "\n"), notebooks=tiny)
    assert set(params.shared) == {"path"}


def test_scientific_notation_float_default(tmp_path, write):
    nb = write_notebook(tmp_path / "05_sci.ipynb", "eps = 1e-3\n")
    assert load_params(write("eps: 0.5\n"), notebooks=[nb]).shared == {"eps": 0.5}


def test_null_value_accepted_for_any_default(tiny, write):
    assert load_params(write("seed: null\n"), notebooks=tiny).shared == {"seed": None}


# -- malformed files -----------------------------------------------------------------------------------------------
def test_output_dir_is_reserved_for_the_runner(tiny, write):
    with pytest.raises(ParamsError, match=r"'output_dir' in .* is set by the runner"):
        load_params(write("output_dir: /tmp/elsewhere\n"), notebooks=tiny)


def test_not_a_mapping(tiny, write):
    with pytest.raises(ParamsError, match=r"must be a mapping of parameter names to values, not a list"):
        load_params(write("- seed\n- lr\n"), notebooks=tiny)
    with pytest.raises(ParamsError, match=r"not a str"):
        load_params(write("just words\n"), notebooks=tiny)


def test_missing_file(tiny, tmp_path):
    missing = tmp_path / "nope" / "absent.yaml"
    with pytest.raises(ParamsError, match=rf"params file {re.escape(str(missing))} does not exist"):
        load_params(missing, notebooks=tiny)


def test_invalid_yaml(tiny, write):
    path = write("seed: [1, 2\nlr: 0.1\n")
    with pytest.raises(ParamsError, match=rf"params file {re.escape(str(path))} is not valid YAML"):
        load_params(path, notebooks=tiny)


# -- RunParams -----------------------------------------------------------------------------------------------------
def test_for_notebook_injects_declared_keys_and_own_section(tiny, write):
    params = load_params(write("""
        seed: 5
        lr: 0.2
        "01":
          families: [cnn-tanh]
        "02":
          epochs: 9
    """), notebooks=tiny)
    a, b = tiny
    assert params.for_notebook(a, declared_parameters(a)) == {"seed": 5, "lr": 0.2, "families": ["cnn-tanh"]}
    assert params.for_notebook(b, declared_parameters(b)) == {"seed": 5, "epochs": 9}  # no lr: 02 lacks it
    # a section overrides a shared key for its notebook only
    params = load_params(write('seed: 5\n"02":\n  seed: 6\n'), notebooks=tiny)
    assert params.for_notebook(a, declared_parameters(a)) == {"seed": 5}
    assert params.for_notebook(b, declared_parameters(b)) == {"seed": 6}
    # the digest follows what a notebook actually receives
    assert params.digest(a, declared_parameters(a)) != params.digest(b, declared_parameters(b))
    same = load_params(write('seed: 5\nlr: 0.9\n"02":\n  seed: 6\n', name="other.yaml"), notebooks=tiny)
    assert same.digest(b, declared_parameters(b)) == params.digest(b, declared_parameters(b))
    assert same.digest(a, declared_parameters(a)) != params.digest(a, declared_parameters(a))


# -- runner and command line ---------------------------------------------------------------------------------------
def test_select_notebooks():
    assert select_notebooks(["1"]) == [NB01]
    assert select_notebooks(["01"]) == [NB01]
    everything = select_notebooks(None)
    assert NB01 in everything and everything == sorted(everything)
    assert select_notebooks([]) == everything
    with pytest.raises(ParamsError, match=r"--only \['99'\]: no such notebook; available: \[.*'01'.*\]"):
        select_notebooks(["99"])
    with pytest.raises(ParamsError, match=r"--only \['xx'\]: no such notebook"):
        select_notebooks(["1", "xx"])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_validate(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("seed: 1\nn_networks: 4\n")
    result = _cli("validate", str(good))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout and "'good'" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("sed: 1\n")
    result = _cli("validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "unknown key 'sed'" in result.stderr and "did you mean 'seed'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.notebooks
def test_run_notebook_01_end_to_end_and_resume(tmp_path):
    params_file = tmp_path / "e2e.yaml"
    params_file.write_text("n_networks: 2\n")
    outputs = tmp_path / "outputs"
    logs: list[str] = []
    out = run(params_file, only=["01"], outputs=outputs, log=logs.append)
    assert out == outputs / "e2e"

    executed = out / "notebooks" / "01_weight_space_graphs.ipynb"
    assert executed.exists()
    assert not list((out / "notebooks").glob("*.running.ipynb"))
    assert not list((out / "notebooks").glob("*.failed.ipynb"))
    nb = nbformat.read(str(executed), 4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "n_networks = 2" in injected[0].source and f'output_dir = "{out}"' in injected[0].source
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "batch of 2 graphs" in printed  # the injected n_networks really reached the code

    for ext in ("json", "html"):
        figure = out / "figures" / f"01_mlp_vs_cnn_graphs.{ext}"
        assert figure.exists() and figure.stat().st_size > 0
    assert json.loads((out / "figures" / "01_mlp_vs_cnn_graphs.json").read_text())["data"]

    marker = out / "notebooks" / ".01_weight_space_graphs.done.json"
    assert marker.exists()
    info = json.loads(marker.read_text())
    assert set(info) == {"version", "digest", "seconds", "notebook_sha256", "artifacts"}
    assert "figures/01_mlp_vs_cnn_graphs.json" in info["artifacts"]
    assert json.loads((out / "params.json").read_text())["shared"] == {"n_networks": 2}
    assert any("running 01_weight_space_graphs.ipynb" in line for line in logs)

    mtime = executed.stat().st_mtime_ns
    logs.clear()
    run(params_file, only=["01"], outputs=outputs, resume=True, log=logs.append)
    assert any("01_weight_space_graphs.ipynb" in line and "skipped" in line for line in logs), logs
    assert not any("running" in line for line in logs), logs
    assert executed.stat().st_mtime_ns == mtime


# -- the training settings' keys: one rule, old names refused with the new one ---------------------------------------
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("0[1-7]_*.ipynb"))


@pytest.mark.parametrize("old, new", sorted(RENAMED.items()))
def test_a_renamed_key_fails_naming_its_new_name(write, old, new):
    with pytest.raises(ParamsError, match=rf"'{old}' in .* is now called '{new}'"):
        load_params(write(f"{old}: 1\n"), notebooks=NOTEBOOKS)
    with pytest.raises(ParamsError, match=rf"'{old}' in section '04' of .* is now called '{new}'"):
        load_params(write(f'"04":\n  {old}: 1\n'), notebooks=NOTEBOOKS)
    # negative control: the new name, with the notebook's own default, is a valid key
    default = next(declared_parameters(nb)[new]["default"] for nb in NOTEBOOKS if new in declared_parameters(nb))
    assert new in load_params(write(f"{new}: {default if default != 'None' else 'null'}\n"), notebooks=NOTEBOOKS).shared


def test_every_training_key_of_the_notebooks_follows_the_meta_rule():
    """``meta_<name>`` sets the TrainConfig/MetanetConfig field ``<name>``: every meta_ parameter a notebook declares
    maps to a setting (an unknown one would raise), with no rename table."""
    from workbench.metanet import MetanetConfig
    from workbench.training.train_config import TrainConfig
    from workbench.pipeline import Recipe
    from workbench.zoo import default_spec

    for nb in NOTEBOOKS[3:]:  # 04-07 train metanetworks
        declared = {k: v for k, v in declared_parameters(nb).items() if k.startswith("meta_") and k != "meta_extra"}
        assert declared and "meta_extra" in declared_parameters(nb), nb.name
        assert set(k[len("meta_"):] for k in declared) <= set(Recipe.setting_names()), nb.name
    cfg = Recipe.from_values({"meta_hidden": 8, "meta_n_layers": 3, "meta_batch_networks": 4, "meta_val_networks": 12,
                              "device": "cpu", "n_networks": 99}).config(default_spec("cnn-tanh"))
    assert cfg.meta == MetanetConfig(hidden=8, n_layers=3, symmetry="sign")
    assert (cfg.batch_networks, cfg.val_networks, cfg.device) == (4, 12, "cpu")
    assert TrainConfig().meta == MetanetConfig()  # one set of defaults
    with pytest.raises(ValueError, match=r"'meta_layers' sets no training setting; valid keys are .*'meta_n_layers'"):
        Recipe.from_values({"meta_layers": 2})
    with pytest.raises(ValueError, match="'meta_seed' sets no training setting"):
        Recipe.from_values({"meta_seed": 2})  # the seed is a run-wide key


def test_train_from_params_reads_the_file_not_notebook_04s_defaults(write):
    from workbench.run.params import file_values
    from workbench.run.train_command import train_from_params

    path = write('seed: 3\nmeta_hidden: 8\n"04":\n  meta_epochs: 2\n  family: mlp-tanh\n')
    _, values = file_values(path, "04")
    assert values == {"seed": 3, "meta_hidden": 8, "meta_epochs": 2, "family": "mlp-tanh"}  # no notebook defaults
    with pytest.raises(ParamsError, match=r"sets no \['n_networks', 'zoo_epochs'\]"):
        train_from_params(str(path), "mlp-tanh")
