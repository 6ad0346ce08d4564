"""Fuzzing what users hand dartsnas (config values, genotype texts and JSON, space files, checkpoint fields): every
outcome is a success or a DartsNASError (one line at the command line), never another exception.
Derandomized, so that CI sees the same examples every run."""
import copy
import json

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dartsnas.config import SearchConfig, TrainConfig, load_config  # noqa: E402
from dartsnas.errors import DartsNASError  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
SAFE_KEYS = [k for k in SearchConfig.__dataclass_fields__ if k not in ("ops_module", "space", "data", "out")]


def outcome(fn, *args):
    """Call ``fn``; a DartsNASError is an accepted outcome, anything else fails the test."""
    try:
        return fn(*args)
    except DartsNASError:
        return None


@FUZZ
@given(st.dictionaries(st.sampled_from(SAFE_KEYS), values, max_size=4))
def test_search_config_values(overrides):
    outcome(load_config, SearchConfig, None, overrides)


@FUZZ
@given(st.dictionaries(st.sampled_from(["epochs", "batch_size", "layers", "init_channels", "lr", "momentum",
                                        "weight_decay", "drop_path_prob", "cutout", "auxiliary_weight", "seed",
                                        "label_smoothing", "recipe", "amp", "epoch"]), values, max_size=4))
def test_train_config_values(overrides):
    outcome(load_config, TrainConfig, None, {"genotype": "DARTS_V2", **overrides})


VALID = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1)], "
         "normal_concat=range(2, 4), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
         "('max_pool_3x3', 0)], reduce_concat=[2, 3])")


@st.composite
def mutated(draw, text=VALID):
    """A valid genotype text with a few characters deleted, replaced or inserted."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(chars)))
        kind = draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = draw(st.sampled_from(list("()[],'\"0123456789*+ ") + ["range(", "**", "9" * 50, "Genotype("]))
        if kind == "delete" and i < len(chars):
            del chars[i]
        elif kind == "insert":
            chars.insert(i, piece)
        elif i < len(chars):
            chars[i] = piece
    return "".join(chars)


@FUZZ
@given(st.one_of(mutated(), st.text(max_size=60).map(lambda t: "Genotype(" + t)))
def test_genotype_texts(text):
    from dartsnas.genotype import load_genotype

    outcome(load_genotype, text)


json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["format", "version", "normal", "reduce", "nodes",
                                                                  "concat", "cells", "primitives", "ops",
                                                                  "reduction"]), inner, max_size=5)), max_leaves=12)


@FUZZ
@given(json_values)
def test_genotype_json(data):
    from dartsnas.genotype import Genotype

    if isinstance(data, dict):
        data = {"format": "dartsnas-genotype", "version": 1, **data}
    outcome(Genotype.from_dict, data)
    from dartsnas.genotype.files import _parse_json

    outcome(_parse_json, json.dumps(data, allow_nan=True))


@FUZZ
@given(st.dictionaries(st.sampled_from(["primitives", "nodes", "multiplier", "layers"]), values, max_size=3))
def test_space_files(tmp_path_factory, content):
    import yaml

    from dartsnas.space import load_space_file

    path = tmp_path_factory.mktemp("space") / "s.yaml"
    try:
        path.write_text(yaml.safe_dump(content))
    except (yaml.YAMLError, UnicodeEncodeError):
        return  # not expressible as a file
    outcome(load_space_file, path)


@pytest.fixture(scope="module")
def search_and_state():
    from dartsnas.engine.search import Search

    cfg = SearchConfig(dataset="digits", layers=3, init_channels=2, nodes=2, multiplier=2, batch_size=256,
                       workers=0, epochs=2)
    search = Search(cfg, show_progress=False)
    return cfg, search.state_dict()


@FUZZ
@given(field=st.sampled_from(["epoch", "step", "partial", "metrics", "alpha_history", "rng", "loader_rng",
                              "scheduler", "scaler", "model", "weight_optimizer", "arch_optimizer", "kind"]),
       value=values)
def test_checkpoint_fields(search_and_state, field, value):
    from dartsnas.engine.search import Search

    cfg, state = search_and_state
    damaged = copy.copy(state)
    damaged[field] = value
    outcome(Search(copy.deepcopy(cfg), show_progress=False).load_state_dict, damaged)
