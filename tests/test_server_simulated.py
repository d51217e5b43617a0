"""The simulated backend: agreement rates, correlated errors, determinism, usage; and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from smart_spark.catalogue import ModelCatalogue
from smart_spark.testing import SimulatedBackend, SimulatedModel, StandInServer

REPO = Path(__file__).resolve().parents[1]
SIMULATED_YAML = REPO / "conf" / "simulated_models.yaml"
PROMPTS = [f"Is clause {i} overruling? Context: the court considered precedent {i * 7}." for i in range(20000)]


def _backend(correlation: float, odd: float = 0.0) -> SimulatedBackend:
    return SimulatedBackend(
        labels=["Yes", "No", "Maybe"],
        models={
            "ref": SimulatedModel(agreement=1.0),
            "good": SimulatedModel(agreement=0.9, odd_answer_rate=odd),
            "weak": SimulatedModel(agreement=0.6),
        },
        reference="ref",
        correlation=correlation,
        seed=7,
    )


def test_marginal_agreement_is_the_configured_one():
    for rho in (0.0, 0.8):
        backend = _backend(rho)
        for model, target in (("good", 0.9), ("weak", 0.6)):
            agree = sum(backend.label_for(model, p) == backend.reference_label(p) for p in PROMPTS) / len(PROMPTS)
            assert agree == pytest.approx(target, abs=0.015), (rho, model)


def test_correlation_makes_errors_coincide():
    def both_wrong(backend):
        return sum(
            backend.label_for("good", p) != backend.reference_label(p)
            and backend.label_for("weak", p) != backend.reference_label(p)
            for p in PROMPTS
        ) / len(PROMPTS)

    independent = both_wrong(_backend(0.0))
    assert independent == pytest.approx(0.1 * 0.4, abs=0.01)
    assert both_wrong(_backend(0.8)) > independent + 0.03


def test_answers_are_deterministic_per_model_and_prompt():
    first, second = _backend(0.5, odd=0.3), _backend(0.5, odd=0.3)
    assert [first.answer("good", p) for p in PROMPTS[:500]] == [second.answer("good", p) for p in PROMPTS[:500]]
    reseeded = SimulatedBackend(first.labels, first.models, "ref", 0.5, seed=8)
    assert [reseeded.label_for("weak", p) for p in PROMPTS[:200]] != [first.label_for("weak", p) for p in PROMPTS[:200]]


def test_usage_is_proportional_to_prompt_length():
    backend = _backend(0.0)
    short, long = backend.answer("ref", "x" * 40), backend.answer("ref", "x" * 4000)
    assert (short.prompt_tokens, long.prompt_tokens) == (10, 1000)
    assert backend.answer("ref", "hi").prompt_tokens == 1
    assert short.completion_tokens == 1


def test_odd_answers_still_carry_the_label():
    from smart_spark.llm.labels import normalise_label

    backend = _backend(0.0, odd=0.5)
    answers = [backend.answer("good", p) for p in PROMPTS[:400]]
    odd = [a for a in answers if a.text not in backend.labels]
    assert len(odd) > 100
    assert {a.text for a in odd} & {"Yes.", "No.", "Maybe (it is disapproving)", '"No"'}
    for prompt, answer in zip(PROMPTS, answers):
        assert normalise_label(answer.text, backend.labels) == backend.label_for("good", prompt)


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError, match="agreement must be in"):
        SimulatedModel(agreement=1.5)
    with pytest.raises(ValueError, match="reference model 'x'"):
        SimulatedBackend(["Yes", "No"], {"a": SimulatedModel(1.0)}, reference="x")
    with pytest.raises(ValueError, match="must have agreement 1.0"):
        SimulatedBackend(["Yes", "No"], {"a": SimulatedModel(0.9)}, reference="a")


def test_conf_example_loads_as_backend_and_catalogue():
    backend = SimulatedBackend.from_yaml(SIMULATED_YAML)
    catalogue = ModelCatalogue.from_yaml(SIMULATED_YAML)
    assert set(backend.model_names()) == set(catalogue.names)
    assert backend.reference in catalogue


def test_simulated_server_over_http_with_latency():
    backend = _backend(0.3)
    backend.models["slow"] = SimulatedModel(agreement=0.5, latency_s=0.2)
    with StandInServer(backend, latency_s=0.02) as server:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)
        # The SDK's first call pays one-time costs (platform detection, connection) that a loaded
        # machine stretches beyond the latencies compared below: warm it up on the other model.
        sdk.chat.completions.create(model="slow", messages=[{"role": "user", "content": PROMPTS[4]}])
        start = time.perf_counter()
        fast = sdk.chat.completions.create(model="good", messages=[{"role": "user", "content": PROMPTS[3]}])
        middle = time.perf_counter()
        sdk.chat.completions.create(model="slow", messages=[{"role": "user", "content": PROMPTS[3]}])
        end = time.perf_counter()
        assert fast.choices[0].message.content == backend.answer("good", PROMPTS[3]).text
        assert 0.02 <= middle - start < end - middle
        assert end - middle >= 0.2  # the model's own latency beats the server default
        assert server.counters()["good"] == {"requests": 1, "answered": 1, "distinct_prompts": 1, "faults": 0}


def test_cli_serves_a_simulation(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "smart_spark.testing.server", "--port", "0", "--simulate", str(SIMULATED_YAML)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        banner = process.stdout.readline()
        assert "stand-in LLM server at http://127.0.0.1:" in banner, process.stderr.read()
        base_url = banner.split(" at ")[1].split()[0]
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
            assert {m["id"] for m in json.load(response)["data"]} >= {"gpt-4", "gpt-3.5-turbo"}
        sdk = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
        answer = sdk.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Is it overruling?"}])
        assert answer.choices[0].message.content.strip(' ."\n').split(" ")[0] in ("Yes", "No")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert json.loads(stderr.strip().splitlines()[-1])["gpt-4"]["answered"] == 1


def test_cli_rejects_a_catalogue_without_replay():
    result = subprocess.run(
        [sys.executable, "-m", "smart_spark.testing.server", "--simulate", str(SIMULATED_YAML), "--catalogue", "x.yaml"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2 and "--catalogue only applies to --replay" in result.stderr
