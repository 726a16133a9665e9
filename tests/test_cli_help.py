"""``--help`` lists what exists, and the command line starts without torch.

The listings come from a static table (families) and from files on disk (recipes, studies),
so these tests hold them equal to the real registry, recipes and study scripts.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from physgen.cli import main
from physgen.cli._catalog import FAMILIES, recipes, studies
from physgen.cli.data import SPLIT_FRACTIONS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "xarray", "h5py", "matplotlib")


def _imports_after(code: str) -> list[str]:
    """The heavy modules loaded by a fresh interpreter after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return done.stdout.split()


def test_import_and_parser_need_no_torch() -> None:
    assert _imports_after("import physgen.cli") == []
    assert _imports_after("import physgen.cli; physgen.cli.build_parser()") == []
    # Negative control: the probe does see torch when something imports it.
    assert "torch" in _imports_after("import physgen.cli, physgen.training")


def test_unknown_model_is_refused_without_torch() -> None:
    code = (
        "from physgen.cli import main\n"
        "assert main(['train', '--data', 'x', '--model', 'nosuch']) == 1"
    )
    assert _imports_after(code) == []


def test_unknown_model_error_lists_the_families(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", "x", "--model", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'nosuch'" in err and all(name in err for name in FAMILIES)


def _public_registry() -> dict[str, type]:
    from physgen.models import available_models

    # Tests register families of their own under names starting with "_".
    return {k: v for k, v in available_models().items() if not k.startswith("_")}


def test_family_table_equals_the_registry() -> None:
    assert sorted(FAMILIES) == sorted(_public_registry())


def _option_names(model: object) -> set[str]:
    """Keys ``model.sample`` takes: its own keywords, and for families that pass the rest on,
    the keywords of the samplers and ODE solver they pass them to."""
    from physgen import samplers
    from physgen.likelihood import solve_ode

    params = inspect.signature(model.sample).parameters
    names = {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD}
    if any(p.kind is p.VAR_KEYWORD and n in ("knobs", "ode") for n, p in params.items()):
        for fn in [*samplers.SAMPLERS.values(), solve_ode]:
            names |= set(inspect.signature(fn).parameters)
    return names - {"self", "n", "cond", "generator", "guidance", "sde", "score", "x"}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_sampler_defaults_and_options_are_the_models(name: str) -> None:
    from physgen import samplers
    from physgen.cli.sample import sampler_settings

    cls = _public_registry()[name]
    model = cls.for_shape(cls.example_shape, getattr(cls, "example_cond_shape", None))
    settings = sampler_settings(model, {})
    family = FAMILIES[name]
    assert settings["sampler"] == family.sampler
    assert settings.get("steps") == family.sample_steps
    if family.sampler == "ode":  # the listing says "adaptive steps (dopri5)"
        assert settings["method"] == "dopri5" and "steps" not in settings
    accepted = _option_names(model)
    assert set(family.options) <= accepted
    assert "stepz" not in accepted  # negative control: a misspelt key is not accepted
    if family.samplers:
        assert set(family.samplers) == set(samplers.SAMPLERS)


def test_recipe_and_study_listings_are_the_files() -> None:
    from physgen.recipes import available_recipes, load_recipe

    listed = dict(recipes())
    assert sorted(listed) == available_recipes()
    for name, description in listed.items():
        assert description == load_recipe(name).description
    names = [name for name, _ in studies()]
    assert names == sorted(p.parent.name for p in (ROOT / "studies").glob("*/run.py"))
    assert dict(studies())["quickstart"].startswith("Quickstart study:")


def test_split_fractions_are_the_data_layers() -> None:
    from physgen.data import DEFAULT_FRACTIONS

    assert tuple(SPLIT_FRACTIONS) == tuple(DEFAULT_FRACTIONS)


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_texts_teach_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    train = _help(["train"], capsys)
    for name, family in FAMILIES.items():
        line = next(line for line in train.splitlines() if line.split()[:1] == [name])
        assert line.split()[1] == str(family.train_steps) and family.purpose.split()[0] in line
    sample = _help(["sample"], capsys)
    assert "ddim, 50 steps" in sample and "n_steps, from_buffer" in sample
    make = _help(["data", "make"], capsys)
    assert all(name in make for name, _ in recipes())
    run = _help(["run"], capsys)
    assert all(name in run for name, _ in studies())


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "nope", "--model", "vae"],
        ["data", "make", "nope"],
        ["sample", "/nonexistent/checkpoint.pt", "--n", "2", "--out", "x.nc"],
        ["evaluate", "/nonexistent/a.nc", "--ref", "/nonexistent/b.nc"],
        ["infer", "/nonexistent/c.pt", "--task", "sr2", "--obs", "o.nc", "--out", "e.nc"],
    ],
)
def test_missing_inputs_are_refused_without_torch(argv: list[str]) -> None:
    code = f"from physgen.cli import main\nassert main({argv!r}) == 1"
    assert _imports_after(code) == []


def test_fast_recipe_check_says_what_load_recipe_says() -> None:
    from physgen.cli._catalog import check_recipe
    from physgen.recipes import load_recipe

    with pytest.raises(FileNotFoundError) as fast:
        check_recipe("nope")
    with pytest.raises(FileNotFoundError) as slow:
        load_recipe("nope")
    assert str(fast.value) == str(slow.value)
    check_recipe("grf1d")  # a shipped recipe passes
    check_recipe("some/file.nc")  # a path is left to the command
