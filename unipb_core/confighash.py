"""Stable identities for result cells: a hash of the run configuration and a fingerprint of model weights.

The store keys every record by ``config_hash(config)``, so the hash must change whenever something that can
change a result changes, and must *not* change for differences that mean nothing (key order, a tuple written
as a list, float noise such as ``0.1 + 0.2``).

Numbers are normalised before hashing:

* floats are rounded to 6 significant digits. Values reach the config through YAML, arithmetic
  (``1 - 1/3``), float32 tensors and JSON round-trips; without rounding, ``0.30000000000000004`` and ``0.3``
  or a float32 round-trip of ``0.667`` (``0.6669999957``) would open a second cell for the same experiment
  and silently split its records. Six digits is finer than any parameter of this study (ratios are quoted to
  3 digits, learning rates and temperatures to 1-2) and coarser than float32 noise (~7 digits); two values
  that differ only in the 7th digit are treated as the same value.
* a float that is integral after rounding is written as an int, because ``ratio: 0`` and ``ratio: 0.0`` in
  a params file mean the same experiment (as ``0 == 0.0`` does in Python). Booleans stay booleans
  (``True`` and ``1`` hash differently).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

HASH_CHARS = 16  # 64 bits: collision-free in practice for the few thousand cells of a study.
FLOAT_DIGITS = 6

_ACCEPTED = "dict (str keys), list, tuple, str, int, float, bool or None"


def normalise(value: Any, path: str = "<config>") -> Any:
    """Return ``value`` as plain JSON-ready data with floats normalised (see the module docstring).

    Parameters
    ----------
    value : Any
        Nested dicts / lists / tuples of str, int, float, bool and None.
    path : str
        Where ``value`` sits in the enclosing config; only used in error messages.

    Raises
    ------
    TypeError
        For any other type or a non-str dict key, naming the key path (e.g. ``method.params.fn``).
    ValueError
        For NaN or infinity, which have no canonical JSON form.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"config value at {path} is {value!r}; only finite floats can be hashed")
        rounded = float(f"{value:.{FLOAT_DIGITS - 1}e}")
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"config key {key!r} at {path} is {type(key).__name__}; keys must be str")
            out[key] = normalise(item, key if path == "<config>" else f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [normalise(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"config value at {path} has type {type(value).__name__}; accepted: {_ACCEPTED}")


def canonical_json(config: Mapping[str, Any]) -> str:
    """Serialise ``config`` canonically: normalised numbers, sorted keys, no whitespace.

    This exact text is what ``config_hash`` hashes and what the store saves, so a stored config always
    reproduces its hash.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    return json.dumps(normalise(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(config: Mapping[str, Any]) -> str:
    """Return the first 16 hex characters of the sha256 of ``canonical_json(config)``.

    Examples
    --------
    >>> config_hash({"ratio": 0.667, "seed": 0}) == config_hash({"seed": 0, "ratio": 0.6670000001})
    True
    """
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:HASH_CHARS]


def weights_fingerprint(model: Any, samples_per_tensor: int = 256) -> str:
    """Return a cheap deterministic fingerprint (16 hex chars) of a torch module's weights.

    Hashes, for every ``state_dict`` entry in name order, its name, shape and dtype plus ``samples_per_tensor``
    values taken at evenly spaced flat positions (always including the first and last element). Reading a
    few hundred values per tensor instead of every byte keeps this well under a second for 7B-parameter
    models on GPU or CPU. It reliably tells apart different checkpoints, dtypes, shapes and architectures;
    it does *not* see an edit confined to unsampled positions (e.g. a single weight patched by hand), so it
    is an identity check, not an integrity check. Tensors on the ``meta`` device contribute name, shape and
    dtype only.

    Parameters
    ----------
    model : torch.nn.Module
        Any module; only ``model.state_dict()`` is read.
    samples_per_tensor : int
        Values sampled from each tensor.
    """
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            if tensor.device.type == "meta" or tensor.numel() == 0:
                continue
            flat = tensor.reshape(-1)
            positions = torch.linspace(0, flat.numel() - 1, min(samples_per_tensor, flat.numel()))
            sample = flat[positions.round().long().to(flat.device)]
            if sample.is_complex():
                sample = torch.view_as_real(sample)
            # float64 holds every value of the float16/bfloat16/float32/int32/bool tensors found in checkpoints
            # exactly, so the bytes do not depend on the source dtype's host representation.
            digest.update(sample.to(device="cpu", dtype=torch.float64).numpy().tobytes())
    return digest.hexdigest()[:HASH_CHARS]
