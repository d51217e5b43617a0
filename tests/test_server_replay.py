"""The replay backend through real HTTP with the openai SDK: recorded answers, usage, errors."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from smart_spark.catalogue import ModelCatalogue
from smart_spark.testing import ReplayBackend, StandInServer

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "overruling_12llm.csv"
CATALOGUE = REPO / "conf" / "overruling_catalogue.yaml"


@pytest.fixture(scope="module")
def rows(overruling_rows) -> list[dict[str, str]]:
    return overruling_rows


@pytest.fixture(scope="module")
def catalogue() -> ModelCatalogue:
    return ModelCatalogue.from_yaml(CATALOGUE)


@pytest.fixture(scope="module")
def backend(rows, catalogue) -> ReplayBackend:
    return ReplayBackend.from_csv(DATA, catalogue)


@pytest.fixture(scope="module")
def server(backend):
    with StandInServer(backend) as running:
        yield running


@pytest.fixture
def sdk(server):
    return openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=10)


def test_catalogue_has_the_twelve_recorded_models(rows, catalogue):
    recorded = [c[: -len("_answer")] for c in rows[0] if c.endswith("_answer") and c != "ref_answer"]
    assert sorted(catalogue.names) == sorted(recorded)
    assert len(catalogue) == 12


def test_models_endpoint_lists_the_recorded_models(sdk, catalogue):
    assert sorted(model.id for model in sdk.models.list()) == sorted(catalogue.names)


def test_replay_returns_recorded_answers_exactly(sdk, rows):
    # Every odd answer of the two OpenAI chat models, plus a spread of ordinary rows.
    picked = [r for r in rows if r["gpt-3.5-turbo_answer"] not in ("Yes", "No") or r["gpt-4_answer"] not in ("Yes", "No")]
    picked += rows[::97]
    for model in ("gpt-3.5-turbo", "gpt-4", "xlarge", "j1-jumbo"):
        for row in picked:
            response = sdk.chat.completions.create(
                model=model, messages=[{"role": "user", "content": row["query"]}], temperature=0, max_tokens=16
            )
            assert response.choices[0].message.content == row[f"{model}_answer"]


def test_usage_reproduces_recorded_costs_within_one_percent(backend, rows, catalogue):
    # All 12 x 2,160 recorded costs, from the usage the server would report.
    for model in catalogue.names:
        spec = catalogue[model]
        for row in rows:
            answer = backend.answer(model, row["query"])
            recorded = float(row[f"{model}_cost"])
            assert spec.cost(answer.prompt_tokens, answer.completion_tokens) == pytest.approx(recorded, rel=0.01)


def test_usage_over_http_reproduces_cost(sdk, rows, catalogue):
    for model in catalogue.names:
        row = rows[123]
        response = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": row["query"]}])
        usage = response.usage
        cost = catalogue[model].cost(usage.prompt_tokens, usage.completion_tokens)
        assert cost == pytest.approx(float(row[f"{model}_cost"]), rel=0.01)
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_prompt_template_wrapping_the_query_still_finds_the_row(sdk, rows):
    row = rows[42]
    wrapped = f"You are a careful lawyer. Answer Yes or No.\n\n{row['query']} Reply with one word."
    response = sdk.chat.completions.create(
        model="gpt-4",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": wrapped}],
    )
    assert response.choices[0].message.content == row["gpt-4_answer"]


def test_unknown_prompt_is_an_openai_error_not_an_invented_answer(sdk, server):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Is the sky green?"}])
    assert caught.value.body["code"] == "prompt_not_recorded"
    assert caught.value.body["type"] == "invalid_request_error"


def test_unknown_model_is_a_404(sdk, rows):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": rows[0]["query"]}])
    assert caught.value.body["code"] == "model_not_found"


def test_recording_without_catalogue_estimates_usage(rows):
    backend = ReplayBackend.from_csv(DATA)
    answer = backend.answer("gpt-4", rows[0]["query"])
    assert answer.text == rows[0]["gpt-4_answer"]
    assert answer.prompt_tokens == round(len(rows[0]["query"]) / 4)


def test_conflicting_duplicate_queries_are_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("query,m_answer,m_cost\nq1,Yes,0.1\nq1,No,0.1\n")
    with pytest.raises(ValueError, match="different m answers"):
        ReplayBackend.from_csv(path)
    path.write_text("query,m_answer,m_cost\nq1,Yes,0.1\nq1,Yes,0.1\nq2,No,0.1\n")
    assert ReplayBackend.from_csv(path).answer("m", "q2").text == "No"
