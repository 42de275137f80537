"""The glue between notebooks 03-07 (and the command line): which zoo, which run folder, which settings.

Each expensive step writes artifacts under ``output_dir`` and the cheap steps read them back, so that running
the notebooks in order reuses the zoo of notebook 03 and the trained metanetworks of notebooks 04/05; run alone,
each notebook regenerates what it is missing with the same settings (same seed, same result).

One module per concept:

* :mod:`~workbench.pipeline.zoos`: the data set and the (cached) zoo of a family (:func:`get_data`,
  :func:`get_zoo`, :func:`prefetch_zoos`).
* :mod:`~workbench.pipeline.methods`: the metanetworks compared (:data:`METHODS`) and their row labels.
* :mod:`~workbench.pipeline.recipe`: what every run of a sequence shares, built once from the notebook's
  parameters: :class:`DataRecipe`, :class:`ZooRecipe`, :class:`Recipe` (the TrainConfig template).
* :mod:`~workbench.pipeline.runs`: one run's folder, training it or reloading it (:func:`train_metanet`), many runs
  in parallel (:func:`prefetch_runs`).
* :mod:`~workbench.pipeline.held_out`: the held-out networks every method is scored on (:func:`test_networks`).
* :mod:`~workbench.pipeline.ablation`: notebook 05's ablation and its verdicts (:func:`run_ablation`).
* :mod:`~workbench.pipeline.table`: notebook 06's results (:func:`family_results`): the table, matched compute, the
  warm start and the verdicts (:mod:`~workbench.pipeline.verdict_rows`); :mod:`~workbench.pipeline.results_files`
  writes them.
* :mod:`~workbench.pipeline.scaling`: notebook 07's scaling study and lambda sweep.

Folder layout under ``output_dir``::

    zoo/<family>/                         zoo (safetensors + meta.csv + zoo.json)
    metanet/<family>/<objective>-<symmetry>-s<seed>/   best.pt, checkpoint.pt, metrics.jsonl, result.json
    results/                              tables and per-method measurements
    figures/                              every figure as .json and .html (and .png when possible)
"""
from .ablation import (
    OBJECTIVE_METRIC,
    Ablation,
    ablation_objectives,
    kind_contrast,
    ablation_conclusions,
    ablation_verdict,
    collapsed_runs,
    initial_scores,
    run_ablation,
    summarize_ablation,
    symmetry_response,
)
from .held_out import gain_by_checkpoint, held_out_summary, one_shot_gain, test_networks, trained_mask
from .methods import METHODS, method_label
from .recipe import OBJECTIVES, SETTINGS_PREFIX, DataRecipe, Recipe, ZooRecipe
from .runs import prefetch_runs, recipe_run_dir, run_dir, run_exists, train_metanet, training_splits
from .scaling import (lam_choice, lam_sweep, scaling_check, scaling_studies, scaling_study, scaling_table,
                      scaling_trend, scaling_zoo, subsample_train)
from .results_files import RESULT_FILES, save_family_results, stacked
from .table import FamilyResults, family_results, results_for_families, table_plan
from .zoos import ZOO_BATCH_SIZE, ZOO_CHECKPOINTS, check_families, get_data, get_zoo, prefetch_zoos, split_params

__all__ = [
    # zoos
    "ZOO_CHECKPOINTS",
    "ZOO_BATCH_SIZE",
    "check_families",
    "get_data",
    "get_zoo",
    "prefetch_zoos",
    "split_params",
    # methods
    "METHODS",
    "method_label",
    # recipes and runs
    "OBJECTIVES",
    "SETTINGS_PREFIX",
    "DataRecipe",
    "ZooRecipe",
    "Recipe",
    "run_dir",
    "recipe_run_dir",
    "train_metanet",
    "training_splits",
    "prefetch_runs",
    "run_exists",
    # held_out
    "test_networks",
    "trained_mask",
    "gain_by_checkpoint",
    "one_shot_gain",
    "held_out_summary",
    # ablation
    "OBJECTIVE_METRIC",
    "Ablation",
    "ablation_objectives",
    "kind_contrast",
    "run_ablation",
    "summarize_ablation",
    "symmetry_response",
    "initial_scores",
    "ablation_verdict",
    "ablation_conclusions",
    "collapsed_runs",
    # table and its files
    "FamilyResults",
    "family_results",
    "table_plan",
    "results_for_families",
    "RESULT_FILES",
    "save_family_results",
    "stacked",
    # scaling
    "subsample_train",
    "scaling_study",
    "scaling_table",
    "scaling_trend",
    "lam_sweep",
    "lam_choice",
    "scaling_zoo",
    "scaling_studies",
    "scaling_check",
]
