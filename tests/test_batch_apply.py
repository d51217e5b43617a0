"""Batch mode of the apply phase without Spark: process_batch through the stand-in's Batch API and answer store."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

from smart_spark.catalogue import ModelCatalogue, ModelSpec
from smart_spark.engine import Plan
from smart_spark.llm import LLMClient
from smart_spark.spark.apply import ApplySpec, process_batch
from smart_spark.spark.params import catalogue_yaml
from smart_spark.store import AnswerStore
from smart_spark.testing import SimulatedBackend, SimulatedModel, StandInServer
from smart_spark.testing.batch_api import BatchConfig

LABELS = ("Yes", "No")
BACKEND = SimulatedBackend(
    list(LABELS), {"ref": SimulatedModel(1.0), "cheap": SimulatedModel(0.8)}, reference="ref", correlation=0.3
)
PLAN = Plan(
    fractions={"cheap": 0.7, "ref": 0.3}, reference="ref", accuracy_target=0.9, confidence=0.95,
    remaining_target=0.88, n_total=100, n_remaining=40, unit_costs={"cheap": 0.001, "ref": 0.01}, seed=3,
)
KEYS = [f"k{i:02d}" for i in range(40)]
TEXTS = [f"is clause {i} overruling?" for i in range(40)]


def _catalogue(server: StandInServer) -> ModelCatalogue:
    return ModelCatalogue(tuple(
        ModelSpec(name, price, 2 * price, base_url=server.base_url, batch_discount=0.5)
        for name, price in (("cheap", 1e-6), ("ref", 1e-5))
    ))


@contextlib.contextmanager
def _batch_job(batch: BatchConfig, tmp_path) -> Iterator[tuple[StandInServer, ApplySpec, LLMClient]]:
    with StandInServer(BACKEND, batch=batch) as server:
        catalogue = _catalogue(server)
        spec = ApplySpec(
            plan_json=PLAN.to_json(), catalogue_yaml=catalogue_yaml(catalogue), labels=LABELS,
            prompt_template="Q: {text}", execution_mode="batch", answers_path=str(tmp_path / "answers"),
            batch_poll_s=0.05,
        )
        with LLMClient(catalogue, list(LABELS)) as online:
            yield server, spec, online


def _online_price(server: StandInServer, model: str, text: str) -> float:
    usage = BACKEND.answer(model, f"Q: {text}")  # the stand-in's usage for this prompt (no call counted)
    return _catalogue(server)[model].cost(usage.prompt_tokens, usage.completion_tokens)


def _paid_once(server: StandInServer) -> bool:
    return all(server.answered_count(PLAN.route(k), f"Q: {t}") == 1 for k, t in zip(KEYS, TEXTS))


def test_batch_mode_answers_every_row_at_the_discount_and_retries_failed_lines_online(tmp_path):
    with _batch_job(BatchConfig(completion_delay_s=0.1, fail_every=4), tmp_path) as (server, spec, online):
        out = process_batch(spec, KEYS, TEXTS, client=online)
        assert len(out) == len(KEYS) and out["error"].isna().all() and out["paid"].all()
        assert list(out["model"]) == [PLAN.route(k) for k in KEYS]
        assert list(out["prediction"]) == [BACKEND.label_for(PLAN.route(k), f"Q: {t}") for k, t in zip(KEYS, TEXTS)]
        assert len(server.batch_api.created_batches()) == 2  # one per model
        full = [row.cost == pytest.approx(_online_price(server, row.model, t)) for row, t in zip(out.itertuples(), TEXTS)]
        half = [row.cost == pytest.approx(_online_price(server, row.model, t) / 2) for row, t in zip(out.itertuples(), TEXTS)]
        assert all(f or h for f, h in zip(full, half))
        per_model = {m: sum(1 for k in KEYS if PLAN.route(k) == m) for m in ("cheap", "ref")}
        assert sum(full) == sum(n // 4 for n in per_model.values())  # every 4th line of each batch went on-line
        assert _paid_once(server)

        again = process_batch(spec, KEYS, TEXTS, client=online)  # the answers are in the store: nothing paid
        assert list(again["prediction"]) == list(out["prediction"])
        assert (again["cost"] == 0).all() and not again["paid"].any()
        assert len(server.batch_api.created_batches()) == 2 and _paid_once(server)


def test_a_rerun_after_a_crash_waits_for_the_recorded_batches_instead_of_resubmitting(tmp_path):
    with _batch_job(BatchConfig(completion_delay_s=0.8), tmp_path) as (server, spec, online):
        import dataclasses

        # The first attempt stops waiting early (as a killed job would): its rows are pending, not escalated.
        impatient = dataclasses.replace(spec, batch_max_wait_s=0.05)
        first = process_batch(impatient, KEYS, TEXTS, client=online)
        assert first["prediction"].isna().all() and (first["cost"] == 0).all()
        assert first["error"].str.contains("resumes the wait").all()
        assert list(first["model"]) == [PLAN.route(k) for k in KEYS]
        created = server.batch_api.created_batches()
        assert len(created) == 2 and sum(c["answered"] for c in server.counters().values()) == 0
        assert sorted(b["batch_id"] for b in AnswerStore(spec.answers_path).batches()) == sorted(created)

        # The rerun (a fresh store handle, as in a new process) waits for the same batches.
        rerun = process_batch(spec, KEYS, TEXTS, client=online)
        assert rerun["error"].isna().all() and rerun["paid"].all()
        assert server.batch_api.created_batches() == created and _paid_once(server)


@pytest.mark.parametrize("outcome", ["failed", "expired"])
def test_a_rejected_or_expired_batch_loses_no_row_and_pays_nothing_twice(tmp_path, outcome):
    with _batch_job(BatchConfig(completion_delay_s=0.05, outcome=outcome), tmp_path) as (server, spec, online):
        out = process_batch(spec, KEYS, TEXTS, client=online)
        assert len(out) == len(KEYS) and out["error"].isna().all() and out["prediction"].notna().all()
        assert _paid_once(server)


def test_rows_beyond_the_spend_cap_are_not_sent_in_the_batch(tmp_path):
    with _batch_job(BatchConfig(completion_delay_s=0.05), tmp_path) as (server, spec, online):
        import dataclasses

        out = process_batch(dataclasses.replace(spec, row_budget=0.0), KEYS, TEXTS, client=online)
        assert out["error"].str.contains("spend cap reached").all() and (out["cost"] == 0).all()
        assert server.batch_api.created_batches() == []


def test_an_unknown_execution_mode_is_a_configuration_error():
    from smart_spark import SmartLLMClassifier, SmartLLMClassifierModel
    from smart_spark.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"executionMode must be one of \['online', 'batch'\], got 'bulk'"):
        SmartLLMClassifier(executionMode="bulk")
    with pytest.raises(ConfigurationError, match="executionMode"):
        SmartLLMClassifierModel().setExecutionMode("Batch")
    assert SmartLLMClassifier().getExecutionMode() == "online"
    assert SmartLLMClassifier().setParams(executionMode="batch").getExecutionMode() == "batch"


def test_a_task_submits_every_arrow_batch_before_waiting_and_keeps_the_arrow_batches(tmp_path):
    import pandas as pd

    from smart_spark.spark.model import _make_apply

    with _batch_job(BatchConfig(completion_delay_s=0.05), tmp_path) as (server, spec, _):
        arrow_batches = [(pd.Series(KEYS[a:b]), pd.Series(TEXTS[a:b])) for a, b in ((0, 10), (10, 10), (10, 40))]
        consumed = []
        frames_out = _make_apply(spec, 8)(x for x in arrow_batches if not consumed.append(1))
        first = next(frames_out)
        # The whole partition was read and submitted (one batch per model and Arrow batch, not per
        # piece of 8 rows) before the first answers came back: the task holds one Arrow batch while waiting.
        assert len(consumed) == 3
        models = [{PLAN.route(k) for k in KEYS[a:b]} for a, b in ((0, 10), (10, 40))]
        assert len(server.batch_api.created_batches()) == sum(map(len, models))
        frames = [first, *frames_out]
        assert [len(f) for f in frames] == [10, 0, 30]
        assert pd.concat(frames)["prediction"].notna().all() and pd.concat(frames)["paid"].all()
        assert len(server.batch_api.created_batches()) == sum(map(len, models))  # waited for, not resubmitted
        assert _paid_once(server)


def test_with_a_spend_cap_a_task_answers_its_partition_in_one_go(tmp_path):
    import dataclasses

    import pandas as pd

    from smart_spark.spark.model import _make_apply

    with _batch_job(BatchConfig(completion_delay_s=0.05), tmp_path) as (server, spec, _):
        capped = dataclasses.replace(spec, row_budget=1.0)  # the cap binds nothing, but ahead-of-time sends could pass it
        arrow_batches = [(pd.Series(KEYS[a:b]), pd.Series(TEXTS[a:b])) for a, b in ((0, 10), (10, 40))]
        frames = list(_make_apply(capped, 8)(iter(arrow_batches)))
        assert [len(f) for f in frames] == [10, 30] and pd.concat(frames)["prediction"].notna().all()
        assert len(server.batch_api.created_batches()) == 2  # one per model for the whole partition
