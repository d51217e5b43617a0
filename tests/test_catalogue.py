"""ModelSpec / ModelCatalogue: YAML loading, price conversion, validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_spark.catalogue import CatalogueError, ModelCatalogue, ModelSpec, load_catalogue

ROOT = Path(__file__).resolve().parents[1]

DOC_YAML = """\
models:
  - name: gpt-4o-mini
    input_price_per_1m: 0.15
    output_price_per_1m: 0.60
    request_fee: 0.0
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    max_concurrency: 16
  - name: big-model
    input_price_per_1m: 2.5
    output_price_per_1m: 10
    request_fee: 0.001
    max_concurrency: 4
"""


def _write(tmp_path: Path, text: str, name: str = "catalogue.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _entry(**overrides):
    entry = {"name": "m", "input_price_per_1m": 1.0, "output_price_per_1m": 2.0}
    entry.update(overrides)
    return entry


# --- loading -------------------------------------------------------------------


def test_yaml_load_documented_shape(tmp_path):
    catalogue = ModelCatalogue.from_yaml(_write(tmp_path, DOC_YAML))
    assert catalogue.names == ["gpt-4o-mini", "big-model"]
    assert len(catalogue) == 2
    assert "gpt-4o-mini" in catalogue and "nope" not in catalogue
    mini = catalogue["gpt-4o-mini"]
    assert mini.input_price_per_token == pytest.approx(0.15e-6, rel=1e-12)
    assert mini.output_price_per_token == pytest.approx(0.60e-6, rel=1e-12)
    assert mini.request_fee == 0.0
    assert mini.base_url == "https://api.openai.com/v1"
    assert mini.api_key_env == "OPENAI_API_KEY"
    assert mini.max_concurrency == 16
    big = catalogue["big-model"]
    assert big.request_fee == pytest.approx(0.001)
    assert big.max_concurrency == 4
    assert big.base_url is None and big.api_key_env is None
    # load_catalogue accepts a path, a catalogue, and a list of dicts / specs
    assert load_catalogue(str(tmp_path / "catalogue.yaml")) == catalogue
    assert load_catalogue(catalogue) is catalogue
    assert load_catalogue(catalogue.to_dicts()).names == catalogue.names
    assert load_catalogue(list(catalogue)).names == catalogue.names


def test_yaml_defaults_for_optional_fields(tmp_path):
    text = "models:\n  - name: a\n    input_price_per_1m: 1\n    output_price_per_1m: 2\n"
    spec = ModelCatalogue.from_yaml(_write(tmp_path, text))["a"]
    assert spec.request_fee == 0.0
    assert spec.base_url is None
    assert spec.api_key_env is None
    assert spec.max_concurrency == 16


@pytest.mark.parametrize(
    "key, scale",
    [("per_1m", 1e-6), ("per_1k", 1e-3), ("per_token", 1.0)],
)
def test_price_units_convert_to_per_token(key, scale):
    spec = ModelSpec.from_dict(
        {"name": "m", f"input_price_{key}": 3.0, f"output_price_{key}": 7.0}
    )
    assert spec.input_price_per_token == pytest.approx(3.0 * scale, rel=1e-12)
    assert spec.output_price_per_token == pytest.approx(7.0 * scale, rel=1e-12)


def test_per_1m_conversion_values():
    spec = ModelSpec.from_dict(_entry(input_price_per_1m=0.15, output_price_per_1m=0.6))
    # 1M input tokens cost the per-1M price
    assert spec.cost(1_000_000, 0) == pytest.approx(0.15, rel=1e-12)
    assert spec.cost(0, 1_000_000) == pytest.approx(0.60, rel=1e-12)


def test_cost_with_request_fee():
    spec = ModelSpec("m", input_price_per_token=2e-6, output_price_per_token=8e-6, request_fee=0.01)
    assert spec.cost(1000, 500) == pytest.approx(1000 * 2e-6 + 500 * 8e-6 + 0.01, rel=1e-12)
    assert spec.cost(1000, 500, requests=3) == pytest.approx(1000 * 2e-6 + 500 * 8e-6 + 0.03, rel=1e-12)
    assert spec.cost(0, 0) == pytest.approx(0.01)
    assert spec.cost(0, 0, requests=0) == 0.0
    free = ModelSpec("f", 0.0, 0.0)
    assert free.cost(10_000, 10_000) == 0.0


def test_to_dict_from_dict_round_trip_fields():
    spec = ModelSpec(
        "m",
        input_price_per_token=0.15e-6,
        output_price_per_token=0.6e-6,
        request_fee=0.002,
        base_url="http://localhost:1234/v1",
        api_key_env="MY_KEY",
        max_concurrency=3,
    )
    data = spec.to_dict()
    assert set(data) == {
        "name", "input_price_per_1m", "output_price_per_1m", "request_fee",
        "base_url", "api_key_env", "max_concurrency",
    }
    assert data["input_price_per_1m"] == pytest.approx(0.15, rel=1e-12)
    assert data["output_price_per_1m"] == pytest.approx(0.6, rel=1e-12)
    back = ModelSpec.from_dict(data)
    assert back.name == spec.name
    assert back.request_fee == spec.request_fee
    assert back.base_url == spec.base_url
    assert back.api_key_env == spec.api_key_env
    assert back.max_concurrency == spec.max_concurrency
    assert back.input_price_per_token == pytest.approx(spec.input_price_per_token, rel=1e-12)
    assert back.output_price_per_token == pytest.approx(spec.output_price_per_token, rel=1e-12)
    # None fields are left out of the dict
    assert "base_url" not in ModelSpec("x", 1e-6, 1e-6).to_dict()


def test_catalogue_yaml_round_trip(tmp_path):
    catalogue = ModelCatalogue.from_yaml(_write(tmp_path, DOC_YAML))
    again = ModelCatalogue.from_yaml(_write(tmp_path, catalogue.to_yaml(), "again.yaml"))
    assert again.names == catalogue.names
    for a, b in zip(catalogue, again):
        assert a.input_price_per_token == pytest.approx(b.input_price_per_token, rel=1e-12)
        assert a.output_price_per_token == pytest.approx(b.output_price_per_token, rel=1e-12)
        assert (a.request_fee, a.base_url, a.api_key_env, a.max_concurrency) == (
            b.request_fee, b.base_url, b.api_key_env, b.max_concurrency,
        )


def test_to_dict_from_dict_round_trip_is_exact():
    # Published per-1M prices; all of them survive x / 1e6 * 1e6 exactly.
    failures = []
    for price in [0.15, 0.6, 0.1, 0.2, 0.4, 1.25, 2.5, 5, 10, 15, 20, 30, 60]:
        spec = ModelSpec.from_dict(_entry(input_price_per_1m=price, output_price_per_1m=price))
        data = spec.to_dict()
        if (
            spec.input_price_per_token != price / 1e6
            or data["input_price_per_1m"] != price
            or ModelSpec.from_dict(data) != spec
        ):
            failures.append((price, spec.input_price_per_token, data["input_price_per_1m"]))
    assert not failures


def test_paper_prices_yaml():
    catalogue = ModelCatalogue.from_yaml(ROOT / "conf" / "paper_prices.yaml")
    assert "gpt-4" in catalogue
    gpt4 = catalogue.require("gpt-4")
    assert gpt4.input_price_per_token == pytest.approx(3e-5, rel=1e-12)
    assert gpt4.output_price_per_token == pytest.approx(6e-5, rel=1e-12)
    assert catalogue["babbage-002"].input_price_per_token == pytest.approx(4e-7, rel=1e-12)


# --- errors --------------------------------------------------------------------


def test_duplicate_names(tmp_path):
    text = (
        "models:\n"
        "  - {name: twin, input_price_per_1m: 1, output_price_per_1m: 1}\n"
        "  - {name: twin, input_price_per_1m: 2, output_price_per_1m: 2}\n"
    )
    with pytest.raises(CatalogueError, match="duplicate.*twin"):
        ModelCatalogue.from_yaml(_write(tmp_path, text))
    with pytest.raises(CatalogueError, match="twin"):
        ModelCatalogue((ModelSpec("twin", 1e-6, 1e-6), ModelSpec("twin", 2e-6, 2e-6)))


@pytest.mark.parametrize("field", ["input_price_per_1m", "output_price_per_1m"])
def test_negative_price(field):
    with pytest.raises(CatalogueError) as info:
        ModelSpec.from_dict(_entry(name="cheapo", **{field: -1.0}))
    message = str(info.value)
    assert "cheapo" in message
    assert field.split("_price")[0] in message and "price" in message


def test_negative_request_fee_and_direct_spec():
    with pytest.raises(CatalogueError, match=r"'feey'.*request_fee"):
        ModelSpec.from_dict(_entry(name="feey", request_fee=-0.5))
    with pytest.raises(CatalogueError, match=r"'direct'.*output_price_per_token"):
        ModelSpec("direct", 1e-6, -1e-6)
    with pytest.raises(CatalogueError, match=r"'nan'.*input_price_per_token"):
        ModelSpec("nan", float("nan"), 1e-6)


@pytest.mark.parametrize("missing", ["input_price_per_1m", "output_price_per_1m"])
def test_missing_price(missing):
    entry = _entry(name="pricey")
    del entry[missing]
    with pytest.raises(CatalogueError) as info:
        ModelSpec.from_dict(entry)
    assert "pricey" in str(info.value)
    assert missing in str(info.value)


def test_non_numeric_price():
    with pytest.raises(CatalogueError, match=r"'strprice'.*input_price_per_1m"):
        ModelSpec.from_dict(_entry(name="strprice", input_price_per_1m="0.15"))


def test_price_given_twice():
    with pytest.raises(CatalogueError, match="twice"):
        ModelSpec.from_dict(_entry(name="double", input_price_per_1k=0.001))


def test_unknown_field(tmp_path):
    text = (
        "models:\n"
        "  - name: typo\n"
        "    input_price_per_1m: 1\n"
        "    output_price_per_1m: 1\n"
        "    max_concurency: 4\n"
    )
    with pytest.raises(CatalogueError) as info:
        ModelCatalogue.from_yaml(_write(tmp_path, text))
    assert "typo" in str(info.value)
    assert "max_concurency" in str(info.value)


@pytest.mark.parametrize(
    "value", ["sk-abc123def456", "sk-proj-XXXXXXXX", "1BAD", "has space", "my-key", ""]
)
def test_api_key_env_must_be_env_var_name(value):
    with pytest.raises(CatalogueError) as info:
        ModelSpec.from_dict(_entry(name="keyed", api_key_env=value))
    message = str(info.value)
    assert "keyed" in message and "api_key_env" in message
    if value:
        # the pasted key must not be echoed back in the error (it would end up in logs)
        assert value not in message


@pytest.mark.parametrize("value", ["OPENAI_API_KEY", "_PRIVATE", "key2", "A"])
def test_api_key_env_valid_names(value, monkeypatch):
    spec = ModelSpec.from_dict(_entry(api_key_env=value))
    assert spec.api_key_env == value
    monkeypatch.setenv(value, "secret-value")
    assert spec.api_key() == "secret-value"
    assert "secret-value" not in repr(spec) and "secret-value" not in str(spec.to_dict())
    monkeypatch.delenv(value)
    assert spec.api_key() is None


def test_bad_max_concurrency():
    with pytest.raises(CatalogueError, match=r"'conc'.*max_concurrency"):
        ModelSpec.from_dict(_entry(name="conc", max_concurrency=0))


def test_require_unknown_reference():
    catalogue = ModelCatalogue((ModelSpec("a", 1e-6, 1e-6), ModelSpec("b", 2e-6, 2e-6)))
    assert catalogue.require("a").name == "a"
    with pytest.raises(CatalogueError) as info:
        catalogue.require("gpt-5")
    message = str(info.value)
    assert "gpt-5" in message and "reference model" in message
    assert "'a'" in message and "'b'" in message
    with pytest.raises(CatalogueError, match="judge 'x'"):
        catalogue.require("x", role="judge")
    with pytest.raises(KeyError, match="gpt-5"):
        catalogue["gpt-5"]


def test_empty_catalogue(tmp_path):
    with pytest.raises(CatalogueError, match="empty"):
        ModelCatalogue(())
    with pytest.raises(CatalogueError, match="empty"):
        ModelCatalogue.from_yaml(_write(tmp_path, "models: []\n"))
    with pytest.raises(CatalogueError, match="models"):
        ModelCatalogue.from_yaml(_write(tmp_path, "something_else: 1\n", "other.yaml"))
    with pytest.raises(CatalogueError, match="models"):
        ModelCatalogue.from_yaml(_write(tmp_path, "", "blank.yaml"))


def test_missing_file(tmp_path):
    path = tmp_path / "does_not_exist.yaml"
    with pytest.raises(CatalogueError) as info:
        ModelCatalogue.from_yaml(path)
    assert "not found" in str(info.value)
    assert str(path) in str(info.value)


def test_invalid_yaml(tmp_path):
    path = _write(tmp_path, "models:\n  - name: [unclosed\n    input: : :\n")
    with pytest.raises(CatalogueError) as info:
        ModelCatalogue.from_yaml(path)
    assert "not valid YAML" in str(info.value)
    assert str(path) in str(info.value)


def test_entry_not_a_mapping():
    with pytest.raises(CatalogueError, match="mapping"):
        ModelCatalogue.from_dicts(["just-a-name"])


def test_catalogue_rejects_non_spec():
    with pytest.raises(CatalogueError, match="ModelSpec"):
        ModelCatalogue(({"name": "a"},))


def test_catalogue_error_is_value_error():
    assert issubclass(CatalogueError, ValueError)
