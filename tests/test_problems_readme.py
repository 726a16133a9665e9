"""The example problem in problems/README.md loads, generates at the floor and makes a dataset."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from physgen.data import open_fields
from physgen.paths import find_project_dir
from physgen.problem import load
from physgen.recipes import load_recipe, make_dataset


def _blocks(language: str) -> list[str]:
    text = (find_project_dir("problems") / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_readme_example_is_a_complete_problem(tmp_path: Path) -> None:
    source = _blocks("python")[0]
    assert 30 <= len(source.strip().splitlines()) <= 60
    path = tmp_path / "reaction1d.py"
    path.write_text(source)
    problem = load(path, c=5.0)
    fields = problem.to_tensor(problem.generate(6, seed=0))
    assert float(problem.relative_residual(fields).max()) < 1e-10
    bumped = fields + 1e-3 * torch.randn(fields.shape, dtype=fields.dtype)
    assert float(problem.relative_residual(bumped).min()) > 1e-4
    again = problem.to_tensor(problem.generate(6, seed=0))
    assert torch.equal(fields, again)

    recipe = tmp_path / "reaction1d.toml"
    toml = _blocks("toml")[0].replace('problem = "reaction1d"', 'problem = "reaction1d.py"')
    recipe.write_text(re.sub(r"(train|valid|test) = \d+", r"\1 = 3", toml))
    files = make_dataset(load_recipe(recipe), tmp_path / "data", progress=False)
    train = open_fields(files["train"], load=True)
    assert list(train.attrs["fields"]) == ["f", "u"] and train.sizes["sample"] == 3
    assert np.all(np.isfinite(train["u"].values)) and files["stats"].exists()
