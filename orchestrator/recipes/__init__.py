"""Recipes: a study described once (schema.py), read with located errors (loading.py), expanded (grid.py)."""

from orchestrator.recipes.grid import Step, VariantPlan, expand
from orchestrator.recipes.loading import LoadedRecipe, check_recipe, load_recipe
from orchestrator.recipes.schema import QUANTIZE_PRESETS, QuantizeSpec, Recipe

__all__ = ["QUANTIZE_PRESETS", "LoadedRecipe", "QuantizeSpec", "Recipe", "Step", "VariantPlan", "check_recipe",
           "expand", "load_recipe"]
