"""Every ``python`` block of the README and of the documentation pages runs as written, each on
its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# The Markdown pages of the documentation; _build holds Sphinx's output, not sources.
DOC_PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts)


def _blocks(path: Path) -> list[tuple[str, int, str]]:
    """``(file, line number, code)`` of each python block of a Markdown file."""
    text = path.read_text()
    name = path.relative_to(ROOT).as_posix()
    return [
        (name, text.count("\n", 0, match.start()) + 2, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    ]


README_BLOCKS = _blocks(README)
DOC_BLOCKS = [block for page in DOC_PAGES for block in _blocks(page)]
BLOCKS = README_BLOCKS + DOC_BLOCKS


def test_the_readme_has_a_python_block() -> None:
    # The README is the entry point: one runnable example; the guide pages hold the rest.
    assert len(README_BLOCKS) >= 1


def test_the_docs_have_python_blocks() -> None:
    # The user guide's pages each show their API at work.
    pages = {name for name, _, _ in DOC_BLOCKS}
    assert len(pages) >= 8 and len(DOC_BLOCKS) >= 16, sorted(pages)


def _projection_reaches_the_floor(out: str) -> None:
    """The physics example prints RE before and after the solver projection."""
    before, after = (
        float(v) for v in out.replace("tensor(", "").replace(", dtype=torch.float64)", "").split()
    )
    assert after < 1e-8 < before  # the projection puts the residual at the solver's floor


# What a block prints, checked where the README states a result (marker in the block → check).
OUTPUT_CHECKS = {"ResidualPenalty(darcy": _projection_reaches_the_floor}


@pytest.mark.parametrize(
    ("name", "line", "code"), BLOCKS, ids=[f"{name}:line{line}" for name, line, _ in BLOCKS]
)
def test_block_runs(
    name: str,
    line: int,
    code: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHYSGEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PHYSGEN_RUNS_DIR", str(tmp_path / "runs"))
    capsys.readouterr()
    exec(compile(code, f"<{name} block at line {line}>", "exec"), {"__name__": "readme"})
    for marker, check in OUTPUT_CHECKS.items():
        if marker in code:
            check(capsys.readouterr().out)


def test_every_output_check_finds_its_block() -> None:
    assert all(any(marker in code for _, _, code in BLOCKS) for marker in OUTPUT_CHECKS)
