"""The quickstart study runs end to end and reports the residual floors of its data."""

from __future__ import annotations

from pathlib import Path

from physgen.cli import main as cli_main
from physgen.data import open_fields


def test_quickstart_writes_data_report_and_figures(tmp_path: Path, capsys) -> None:
    out = tmp_path / "qs"
    args = ["run", "quickstart", "--samples", "20", "--epochs", "2", "--out", str(out)]
    assert cli_main(args) == 0
    assert f"{out / 'report.md'}" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "generator output (float64)" in report and "stored file (float32)" in report
    train = open_fields(out / "data" / "train.nc")
    assert train.sizes["sample"] == 16 and list(train.attrs["fields"]) == ["k", "u", "f"]
    assert open_fields(out / "data" / "valid.nc")["sample"].values.tolist() == [16, 17, 18, 19]
    assert "## PI-VAE" in report and "| u-mean | u-std | k-mean | k-std |" in report
    figures = ("samples_k.png", "samples_u.png", "samples_f.png", "residual_histogram.png")
    for name in (*figures, "pivae_mean_std.png", "pivae_loss.png"):
        assert (out / name).stat().st_size > 1000


def test_quickstart_names_bad_arguments(tmp_path: Path, capsys) -> None:
    assert cli_main(["run", "quickstart", "--samples", "1", "--out", str(tmp_path)]) == 1
    assert "--samples must be at least 2" in capsys.readouterr().err
    assert cli_main(["run", "quickstart", "--problem", "nope", "--out", str(tmp_path)]) == 1
    assert "no problem 'nope'" in capsys.readouterr().err
