"""jobs.reproduce_paper end to end on a small grid: CSV columns, summary, ceiling."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import SHARED_DATA

from jobs import reproduce_paper

PAPER_STATS = SHARED_DATA / "smart_paper_profile_stats.csv"


@pytest.fixture()
def own_stats(tmp_path):
    """A user's own profile file in the paper's format (two models plus the reference)."""
    rows = [
        ("mine", 20000, "gpt-4", 31600, 100, 0.954, 100, 1.0),
        ("mine", 20000, "gpt-3.5-turbo-1106", 31600, 100, 0.0318, 100, 0.95),
        ("mine", 20000, "babbage-002", 30900, 1600, 0.013, 100, 0.0),
    ]
    columns = ["dataset", "nr_items", "model", "nr_prompt_tokens", "nr_completion_tokens", "cost", "nr_processed", "conformity"]
    path = tmp_path / "stats.csv"
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def test_own_stats_file_runs_every_method_and_writes_the_csv(own_stats, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    code = reproduce_paper.main(
        ["--stats", str(own_stats), "--targets", "0.9", "--trials", "2", "--workers", "1", "--out", str(out), "--ceiling"]
    )
    assert code == 0
    runs = pd.read_csv(out)
    expected = {"dataset", "accuracy_target", "method", "trial", "cost", "reference_cost", "savings", "agreement", "satisfied"}
    assert expected <= set(runs.columns)
    assert sorted(runs["method"].unique()) == sorted(reproduce_paper.METHODS)
    assert len(runs) == 2 * len(reproduce_paper.METHODS)
    assert runs["satisfied"].all()
    printed = capsys.readouterr().out
    assert "mix: mean savings" in printed
    # The ceiling column is in the main table even with no prototype figure to compare with.
    header = next(line for line in printed.splitlines() if "miss mix" in line)
    assert "ceiling" in header and "told single look" in header and "mix / ceiling" in header
    assert "no cell in common with the prototype" in printed


def test_ceiling_is_printed_next_to_the_prototype(capsys):
    if not PAPER_STATS.exists():
        pytest.skip(f"shared data not available: {PAPER_STATS} (the paper's statistics live outside the repo)")
    code = reproduce_paper.main(
        ["--datasets", "sms_spam", "--targets", "0.92", "--methods", "mix", "--trials", "2", "--workers", "1", "--ceiling"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ceiling" in printed
    # SMS 0.92: the prototype's 12.0x is above what a valid procedure can expect.
    assert "1 cell(s) where 95% of the prototype's figure exceeds" in printed


def test_missing_stats_file_is_a_clear_error(tmp_path, capsys):
    assert reproduce_paper.main(["--stats", str(tmp_path / "nope.csv")]) == 2
    assert "statistics file not found" in capsys.readouterr().err
