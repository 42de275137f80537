"""Tiny training recipes for tests: ``tiny_recipe(epochs=1, hidden=8)`` is the recipe a notebook would build from
``meta_epochs = 1``, ``meta_hidden = 8`` (``device`` is passed as it is)."""
from __future__ import annotations

from workbench.pipeline import Recipe


def tiny_recipe(**fields) -> Recipe:
    return Recipe.from_values({k if k == "device" else f"meta_{k}": v for k, v in fields.items()})
