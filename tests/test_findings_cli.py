"""``unipb findings``: the store, a params grid or an external CSV in; progress, verdicts and a CSV out."""

from __future__ import annotations

import pandas as pd
import pytest

from unipb_core import cli
from unipb_core.analysis.summary import CLAIMS, COLUMNS
from unipb_core.report import ROOT

EXAMPLE = ROOT / "tests" / "fixtures" / "results_example.csv"


def test_findings_help_has_a_description(capsys):
    with pytest.raises(SystemExit):
        cli.main(["findings", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Compute the study's four findings" in text and "--results" in text


def test_findings_on_an_external_csv_prints_progress_verdicts_and_saves_the_table(tmp_path, capsys):
    out = tmp_path / "findings.csv"
    assert cli.main(["findings", "--results", str(EXAMPLE), "--score-scale", "100", "--n-boot", "50",
                     "--csv", str(out)]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "finding 1 of 4" in captured.err and "finding 4 of 4" in captured.err
    for claim in CLAIMS:
        assert claim in captured.out
    assert "input: cell-level results" in captured.out and "evidence:" in captured.out
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS and list(table["finding"]) == list(CLAIMS)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--results", str(EXAMPLE), "--store", "x.sqlite"], "cannot be combined with --store or --params"),
        (["--results", str(EXAMPLE)], "must lie in [0, 1]"),
        (["--store", "x.sqlite", "--report", "out"], "--report renders an external table"),
        (["--store", "x.sqlite", "--alias", "a=b"], "apply to --results only"),
        (["--results", str(EXAMPLE), "--alias", "ab"], "--alias expects NAME=VALUE"),
        (["--store", "no/such/store.sqlite"], "no results store at no/such/store.sqlite"),
    ],
)
def test_findings_rejects_bad_combinations_with_a_clear_error(argv, message, capsys):
    assert cli.main(["findings", "--quiet", *argv]) == 2
    assert message in capsys.readouterr().err


def test_findings_params_honours_store(tmp_path, capsys):
    store = tmp_path / "elsewhere.sqlite"
    params = ROOT / "tests" / "fixtures" / "params_tiny.yaml"
    assert cli.main(["findings", "--quiet", "--params", str(params), "--store", str(store)]) == 2
    assert str(store) in capsys.readouterr().err  # the given store is the one read, not the params' store


def test_findings_report_renders_the_analysis_notebook_on_an_external_csv(tmp_path):
    out = tmp_path / "report"
    argv = ["findings", "--quiet", "--results", str(EXAMPLE), "--score-scale", "100", "--n-boot", "50"]
    assert cli.main([*argv, "--report", str(out)]) == 0
    html = (out / "analysis.html").read_text(encoding="utf-8")
    for claim in CLAIMS:
        assert claim in html
    assert "cell-level results" in html
    assert (out / "figures" / "accuracy_vs_ratio.png").stat().st_size > 0
    views = pd.read_csv(out / "tables" / "findings_views.csv")
    assert {"LLaVA-1.5-7B", "Qwen2.5-VL-7B", "pooled"} <= set(views["scope"])
