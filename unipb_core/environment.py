"""What a run ran on: device, dtype, attention kernel, library versions, code commit, host.

Stored with every cell so that each number in a report can be traced to the hardware and code that made it.
Nothing here may fail a run: anything that cannot be determined is recorded as ``"unknown"``.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from unipb_core.timing import memory_source

UNKNOWN = "unknown"
_PACKAGE_DIR = Path(__file__).resolve().parent


def git_state(path: str | os.PathLike = _PACKAGE_DIR) -> dict[str, Any]:
    """Return ``{"git_commit": sha or "unknown", "git_dirty": bool or None}`` for the checkout holding ``path``.

    ``git_dirty`` is True when tracked or untracked files differ from the commit, i.e. when the commit alone
    does not reproduce the code that ran; None when there is no commit to compare with.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"git_commit": UNKNOWN, "git_dirty": None}
    status = git("status", "--porcelain")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def cpu_name() -> str:
    """Return the CPU model from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``, else "unknown"."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or UNKNOWN


def cpu_cores() -> int:
    """Return the cores this process may use (the affinity mask, which containers and schedulers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a broken optional install must not fail the record
        return UNKNOWN


def _attn_implementations(model: Any) -> dict[str, Any]:
    """Top-level attention implementation plus any differing per-submodel one (a VLM may run its vision tower
    with SDPA and its language model eagerly, e.g. when a pruning method needs attention weights)."""
    config = getattr(model, "config", None)
    top = getattr(config, "_attn_implementation", None)
    out: dict[str, Any] = {"attn_implementation": top or UNKNOWN}
    subs = {}
    for name in ("text_config", "vision_config"):
        impl = getattr(getattr(config, name, None), "_attn_implementation", None)
        if impl and impl != top:
            subs[name] = impl
    if subs:
        out["attn_implementation_by_config"] = subs
    return out


def environment_record(model: Any = None, device: Any = None, dtype: Any = None) -> dict[str, Any]:
    """Describe the environment of a run as a JSON-ready dict.

    Parameters
    ----------
    model : torch.nn.Module, optional
        Supplies the attention implementation (``model.config._attn_implementation``) and, when not given,
        the device and dtype (of its first parameter).
    device : str or torch.device, optional
        Defaults to the model's device, else ``"cuda"`` when available, else ``"cpu"``.
    dtype : torch.dtype or str, optional
        The compute dtype; defaults to the model's.

    Returns
    -------
    dict
        ``device``, ``device_name``, ``cpu_name``, ``cpu_cores``, ``dtype``, ``attn_implementation``,
        ``parameters`` (the model's parameter count, for the report's model table; "unknown" without a model),
        ``peak_memory_source``, ``torch``, ``cuda``, ``transformers``, ``python``, ``platform``,
        ``git_commit``, ``git_dirty``, ``hostname``.
    """
    import torch

    param = next(model.parameters(), None) if hasattr(model, "parameters") else None
    if device is None:
        device = param.device if param is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None and param is not None:
        dtype = param.dtype
    device = str(device)
    if device.startswith("cuda"):
        try:
            device_name = torch.cuda.get_device_name(torch.device(device))
        except Exception:  # noqa: BLE001 - no driver / bad index: record, do not fail
            device_name = UNKNOWN
    else:
        device_name = cpu_name()
    record: dict[str, Any] = {
        "device": device,
        "device_name": device_name,
        "cpu_name": cpu_name(),
        "cpu_cores": cpu_cores(),
        "dtype": str(dtype).removeprefix("torch.") if dtype is not None else UNKNOWN,
        **_attn_implementations(model),
        "parameters": sum(p.numel() for p in model.parameters()) if param is not None else UNKNOWN,
        "peak_memory_source": memory_source(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **git_state(),
        "hostname": socket.gethostname(),
    }
    return record
