"""Subprocess used by tests/test_store.py: writes deterministic records to a store one by one, resumably.

    python tests/helpers_store_writer.py STORE FIRST LAST [--reverse] [--sleep SECONDS] [--wait]

Registers the test cell, prints "ready", (with --wait: waits for a line on stdin, so a test can start
several writers at the same moment), then writes samples FIRST..LAST-1, skipping the ids the store already
has (read once at start), with a pause between writes so a test can SIGKILL it mid-run.
"""

from __future__ import annotations

import argparse
import sys
import time

from unipb_core.confighash import config_hash
from unipb_core.store import ResultStore

CONFIG = {"model": "tiny:llava", "method": "random", "ratio": 0.667, "seed": 0, "dataset": "synthetic"}
HASH = config_hash(CONFIG)


def make_record(i: int) -> dict:
    """The record of sample ``i``: a pure function of ``i``, so any interleaving of runs gives the same rows."""
    return {
        "sample_id": f"s{i:03d}",
        "prediction": f"answer {i}",
        "correct": float(i % 2),
        "parsed": i % 3 != 0,
        "extracted": "A" if i % 2 else "B",
        "score": {"acc": i % 2, "i": i},
        "kept": {"pre_llm": i % 5 + 1},
        "timings": {"total": 0.01 * i, "prefill": 0.005 * i, "method": 0.001 * i},
        "tokens_generated": i % 7,
        "n_visual": 576,
        "n_text": 30 + i,
        "peak_mem_bytes": 1000 * i,
        "flops": 1e9 * i,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("first", type=int)
    parser.add_argument("last", type=int)
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args(argv)
    store = ResultStore(args.store)
    store.register_cell(HASH, CONFIG, {"host": "test"})
    done = store.done_ids(HASH)
    print("ready", flush=True)
    if args.wait:
        sys.stdin.readline()
    ids = range(args.first, args.last)
    for i in reversed(ids) if args.reverse else ids:
        if f"s{i:03d}" not in done:
            store.write(HASH, make_record(i))
            time.sleep(args.sleep)


if __name__ == "__main__":
    main(sys.argv[1:])
