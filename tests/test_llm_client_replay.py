"""LLMClient on the OVERRULING recording: odd raw answers, recorded costs, spend cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_spark.catalogue import ModelCatalogue
from smart_spark.llm import LLMClient
from smart_spark.testing import ReplayBackend, StandInServer, with_base_url

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "overruling_12llm.csv"
CATALOGUE = ModelCatalogue.from_yaml(REPO / "conf" / "overruling_catalogue.yaml")

# Every answer of gpt-3.5-turbo and gpt-4 in the recording that is not a bare
# Yes/No, and what the rule makes of it: the label followed by an explanation
# is that label; anything else ("Not ...", "Cannot determine ...") is no label.
ODD_ANSWERS: dict[str, str | None] = {
    'No (impliedly overruling another case)': "No",
    'No (it is disapproved, not overruled)': "No",
    'No (it is disapproving)': "No",
    'No (it is questioning or challenging the holding, but not necessarily overruling it)': "No",
    'No (it is receding)': "No",
    'No (it is rejecting, not overruling)': "No",
    'No (the context is incomplete and does not provide enough information to determine if it is overruling or not)': "No",
    'No (the context is incomplete and does not provide information on whether there is any overruling happening)': "No",
    "No (the previous precedents were overruled, but the court's error was in following them, not in overruling them)": "No",
    'No (there is no information provided about overruling in this context)': "No",
    'No (there is no information provided in the context to determine if it is overruling or not)': "No",
    'No (there is no information provided to determine if it is overruling or not)': "No",
    'No (there is no information provided to suggest that this is an overruling statement)': "No",
    'No (there is no legal context provided to determine if this statement relates to overruling)': "No",
    'No (there is no mention of overruling in this context)': "No",
    'No (this context does not provide enough information to determine if it is overruling or not)': "No",
    'No (this is a reference to a rule of the Tennessee Supreme Court, not a decision or ruling)': "No",
    'No (this is just a citation/reference to a court case)': "No",
    'No (this is just a heading or topic, not a statement or ruling)': "No",
    'No, it is disapproving.': "No",
    'No, it is receding.': "No",
    'Cannot determine as there is no context provided to indicate whether it involves a legal ruling or decision.': None,
    'Cannot determine as there is no context provided.': None,
    'Cannot determine as there is no information provided about a legal ruling or decision being made.': None,
    'Cannot determine as there is no information provided about the context of "lohmeier."': None,
    'Cannot determine without additional context.': None,
    'Cannot determine without further context.': None,
    'Cannot determine without more context.': None,
    'Cannot determine.': None,
    'Incomplete context.': None,
    'Incomplete context. The sentence is cut off.': None,
    'Insufficient information': None,
    'It is unclear from this context whether it is overruling or not.': None,
    'Not applicable. This context does not involve a legal ruling or decision.': None,
    'Not necessarily. It depends on the outcome of the review and whether the court ultimately decides to overturn its previous interpretation.': None,
    'Not specified.': None,
    'Possible answer: It is a request for overruling, but it does not indicate whether the court actually overruled Downs.': None,
    'Unclear/Incomplete. The context provided is incomplete and does not provide enough information to determine whether it is an overruling or not.': None,
}


@pytest.fixture(scope="module")
def rows(overruling_rows) -> list[dict[str, str]]:
    return overruling_rows


@pytest.fixture(scope="module")
def server(rows):
    with StandInServer(ReplayBackend.from_csv(DATA, CATALOGUE)) as running:
        yield running


@pytest.fixture
def client(server):
    with LLMClient(with_base_url(CATALOGUE, server.base_url), ["Yes", "No"], timeout=5.0) as llm:
        yield llm


@pytest.mark.parametrize("model", ["gpt-3.5-turbo", "gpt-4"])
def test_every_odd_answer_normalises_as_the_rule_says(client, rows, model):
    odd_rows = [r for r in rows if r[f"{model}_answer"] not in ("Yes", "No")]
    assert odd_rows, "the recording has odd answers for both models"
    assert {r[f"{model}_answer"] for r in odd_rows} <= set(ODD_ANSWERS)
    results = client.complete_batch(model, [r["query"] for r in odd_rows])
    for row, result in zip(odd_rows, results):
        assert result.ok
        assert result.raw == row[f"{model}_answer"]  # the raw text is kept as received
        assert result.label == ODD_ANSWERS[row[f"{model}_answer"]]


def test_replay_is_exact_in_order_at_the_recorded_cost(client, rows):
    sample = rows[::3]  # a third of the column keeps the suite fast
    results = client.complete_batch("gpt-3.5-turbo", [r["query"] for r in sample])
    assert [r.raw for r in results] == [row["gpt-3.5-turbo_answer"] for row in sample]
    assert [r.label for r in results if r.raw in ("Yes", "No")] == [r.raw for r in results if r.raw in ("Yes", "No")]
    assert client.spent == pytest.approx(sum(float(row["gpt-3.5-turbo_cost"]) for row in sample), rel=0.01)


def test_request_fees_are_charged(client, rows):
    [result] = client.complete_batch("j1-jumbo", [rows[5]["query"]])
    assert result.cost == pytest.approx(float(rows[5]["j1-jumbo_cost"]))
    assert result.cost == pytest.approx(0.005 + 2 * 250e-6)


def test_spend_cap_on_gpt4(server, rows):
    catalogue = with_base_url(CATALOGUE, server.base_url)
    queries = [r["query"] for r in rows[:30]]
    server.reset_counters()
    with LLMClient(catalogue, ["Yes", "No"], spend_cap=0.05, concurrency=1) as client:
        results = client.complete_batch("gpt-4", queries)
    answered = [r for r in results if r.ok]
    assert 0 < len(answered) < len(queries)
    assert server.counters()["gpt-4"]["requests"] == len(answered)
    assert all(r.error == "spend cap of 0.05 USD reached; not called" for r in results[len(answered) :])
    assert client.spent >= 0.05 and client.spent - answered[-1].cost < 0.05
