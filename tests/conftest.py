import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

import workbench  # noqa: F401,E402  (sets torch CPU threads, see workbench/__init__.py)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # lets test modules import the shared `strategies`


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the item (``item.rep_call``), so fixtures can save artifacts on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def digits():
    """The digits data (seed 0), for the tests of held-out sets, training history, skipped checkpoints and L1 runs;
    a test module may define its own ``digits``."""
    from workbench.data import load_dataset

    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def zoo(digits):
    """20 digits MLPs (64-4-10) x checkpoints 0, 1, 2 (2 = final): 10 test, 8 train, 2 validation networks; a test
    module may define its own ``zoo``."""
    from workbench.nets import NetSpec
    from workbench.zoo import generate

    return generate(NetSpec.mlp((64, 4, 10), "tanh"), digits, 20, epochs=2, checkpoints=[0, 1], seed=0,
                    progress=False)
