"""config_hash: stable under meaningless differences, sensitive to every field; weights_fingerprint."""

from __future__ import annotations

import copy

import pytest
import torch

from unipb_core.confighash import canonical_json, config_hash, weights_fingerprint

CONFIG = {
    "model": "tiny:qwen2_5_vl",
    "weights": "0123456789abcdef",
    "method": "dart",
    "params": {"layer": 2, "pivots": [10, 5], "similarity": "cosine"},
    "ratio": 0.889,
    "seed": 0,
    "dataset": "ocrbench",
    "split": "test",
    "prompt_template": "v1",
    "generation": {"max_new_tokens": 32, "do_sample": False, "temperature": None},
    "code_version": "abc123",
}


def _leaf_paths(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaf_paths(item, (*path, i))
    else:
        yield path


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None:
        return 0.5
    return value + "x"


def test_hash_is_16_hex_and_stable():
    h = config_hash(CONFIG)
    assert len(h) == 16 and int(h, 16) >= 0
    assert config_hash(copy.deepcopy(CONFIG)) == h


@pytest.mark.parametrize("path", list(_leaf_paths(CONFIG)), ids=lambda p: ".".join(map(str, p)))
def test_every_field_changes_the_hash(path):
    changed = copy.deepcopy(CONFIG)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = _changed(parent[path[-1]])
    assert config_hash(changed) != config_hash(CONFIG)


def test_adding_or_removing_a_field_changes_the_hash():
    assert config_hash({**CONFIG, "judge": None}) != config_hash(CONFIG)
    assert config_hash({k: v for k, v in CONFIG.items() if k != "split"}) != config_hash(CONFIG)


def test_key_order_does_not_matter_at_any_depth():
    def reverse(value):
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        return value

    assert list(reverse(CONFIG)) != list(CONFIG)
    assert config_hash(reverse(CONFIG)) == config_hash(CONFIG)


def test_number_normalisation():
    assert config_hash({"r": 0.1 + 0.2}) == config_hash({"r": 0.3})
    assert config_hash({"r": float(torch.tensor(0.667, dtype=torch.float32))}) == config_hash({"r": 0.667})
    assert config_hash({"r": 0.667}) != config_hash({"r": 0.6667})
    assert config_hash({"lr": 1e-5}) != config_hash({"lr": 1.1e-5})  # significant digits, not decimals
    assert config_hash({"r": 0}) == config_hash({"r": 0.0}) == config_hash({"r": -0.0})
    assert config_hash({"flag": True}) != config_hash({"flag": 1})
    assert config_hash({"pivots": (10, 5)}) == config_hash({"pivots": [10, 5]})
    assert canonical_json({"b": 1, "a": [0.30000000000000004, 2.0]}) == '{"a":[0.3,2],"b":1}'


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"method": {"params": {"fn": object()}}}, "method.params.fn"),
        ({"pivots": [1, {2}]}, r"pivots\[1\]"),
        ({"dtype": torch.float16}, "dtype"),
        ({"params": {1: "a"}}, "params"),
    ],
)
def test_unserialisable_values_name_their_key(config, where):
    with pytest.raises(TypeError, match=where):
        config_hash(config)


def test_nan_is_rejected():
    with pytest.raises(ValueError, match="ratio"):
        config_hash({"ratio": float("nan")})


def _tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))


def test_weights_fingerprint_identity():
    base = weights_fingerprint(_tiny())
    assert len(base) == 16 and weights_fingerprint(_tiny()) == base
    assert weights_fingerprint(_tiny(seed=1)) != base
    assert weights_fingerprint(_tiny().to(torch.bfloat16)) != base
    edited = _tiny()
    with torch.no_grad():
        edited[2].bias[0] += 1.0  # the first element of every tensor is always sampled
    assert weights_fingerprint(edited) != base
    assert weights_fingerprint(torch.nn.Linear(64, 8, device="meta")) == weights_fingerprint(
        torch.nn.Linear(64, 8, device="meta")
    )
