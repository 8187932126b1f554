"""The search-space schema: shipped files load; bad input names the key path and the bound."""

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "name": "t",
    "backend": "oracle",
    "oracle": {"law": {"E": 0.4, "A": 50, "alpha": 0.3, "B": 20, "beta": 0.3}},
    "axes": {"params": {"n_params": [1e5, 1e6]}, "data": [1e5, 1e6]},
    "budget": {"trials": 4},
}


def with_change(change):
    d = copy.deepcopy(BASE)
    change(d)
    return d


def test_oracle_spec_ships_and_loads():
    spec = load_spec(ROOT / "search_spaces" / "oracle.yaml")
    assert spec.backend == "oracle" and len(spec.axes.param_grid()) == 10


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda d: d["axes"]["params"].update(n_params=[1e5, 1e6, -8]),
            "axes.params.n_params[2]: must be > 0, got -8",
        ),
        (lambda d: d["budget"].update(trials=0), "budget.trials: must be > 0, got 0"),
        (lambda d: d["budget"].update(flops=-1.0), "budget.flops: must be > 0, got -1.0"),
        (lambda d: d.update(colour="red"), "colour: unknown key"),
        (lambda d: d["axes"].update(data=[]), "axes.data: must have at least 1 value"),
        (
            lambda d: d["axes"].update(data={"low": 10, "high": 1, "num": 3}),
            "axes.data: high must be >= low",
        ),
        (lambda d: d.pop("budget"), "budget: required key is missing"),
        (lambda d: d.update(backend="xgboost"), "backend:"),
        (lambda d: d.pop("oracle"), "needs an `oracle:` section"),
        (
            lambda d: d["axes"]["params"].update(embedding_dim=[8]),
            "oracle backend scales only n_params",
        ),
        (
            lambda d: d["resources"] if False else d.update(resources={"concurrency": 0}),
            "resources.concurrency: must be >= 1",
        ),
        (lambda d: d.update(name="has space"), "name:"),
        (lambda d: d.update(policy={"name": "bandit"}), "policy.name:"),
        (lambda d: d.update(policy={"name": "halving", "eta": 1}), "policy.eta: must be >= 2"),
        (
            lambda d: d.update(policy={"name": "adaptive", "target": {}}),
            "policy.target: give exactly one of points, compute, frontier",
        ),
        (
            lambda d: d.update(policy={"name": "adaptive", "target": {"compute": -1}}),
            "policy.target.compute: must be > 0, got -1",
        ),
        (
            lambda d: d.update(
                policy={"name": "adaptive", "target": {"points": [{"params": 1e9}]}}
            ),
            "policy.target.points[0].samples: required key is missing",
        ),
        (
            lambda d: d.update(policy={"name": "adaptive", "tolerance": 0}),
            "policy.tolerance: must be > 0, got 0",
        ),
    ],
)
def test_bad_spec_error_names_key_path_and_bound(change, message):
    with pytest.raises(SpecError) as err:
        parse_spec(with_change(change), "s.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("s.yaml: ") and "\n" not in str(err.value)


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\naxes: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad.yaml: line \d+ malformed YAML"):
        load_spec(path)


def test_missing_file():
    with pytest.raises(SpecError, match="no such search space"):
        load_spec("/nonexistent.yaml")


def test_range_expands_log_spaced_integers():
    spec = parse_spec(
        with_change(
            lambda d: d["axes"]["params"].update(n_params={"low": 1e3, "high": 1e6, "num": 4})
        )
    )
    assert [p["n_params"] for p in spec.axes.param_grid()] == [1000, 10000, 100000, 1000000]


def test_fingerprint_changes_with_the_spec():
    a = parse_spec(BASE)
    b = parse_spec(with_change(lambda d: d["budget"].update(trials=5)))
    assert a.fingerprint() == parse_spec(copy.deepcopy(BASE)).fingerprint() != b.fingerprint()


yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 10**9)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(
        [
            "name",
            "backend",
            "axes",
            "budget",
            "policy",
            "resources",
            "trial",
            "oracle",
            "seed",
            "extra",
        ]
    ),
    value=yaml_values,
)
def test_loader_either_loads_or_raises_spec_error(key, value):
    data = with_change(lambda d: d.update({key: value}))
    try:
        parse_spec(yaml.safe_load(yaml.safe_dump(data)))
    except SpecError as err:
        assert str(err) and "\n" not in str(err)
