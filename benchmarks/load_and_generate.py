"""Load time and one-sample generate time of each tiny family (a benchmark, not a test).

Run: ``make bench`` or ``python benchmarks/load_and_generate.py``. Numbers depend on the machine;
compare them only within one run.
"""

from __future__ import annotations

import statistics
import time

from PIL import Image, ImageDraw

from unipb_core.models import TINY_SPECS, load_model


def main(repeats: int = 5, max_new_tokens: int = 8) -> None:
    image = Image.new("RGB", (336, 336), "white")
    ImageDraw.Draw(image).rectangle((60, 60, 200, 200), fill="blue")
    print(f"{'model':<18} {'load s':>7} {'generate s (median of ' + str(repeats) + ')':>28}")
    for spec in TINY_SPECS:
        start = time.perf_counter()
        model = load_model(spec)
        load_s = time.perf_counter() - start
        inputs = model.build_inputs([image], "What colour is the square?")
        model.generate(inputs, max_new_tokens=max_new_tokens)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.generate(inputs, max_new_tokens=max_new_tokens)
            times.append(time.perf_counter() - start)
        print(f"{spec:<18} {load_s:>7.3f} {statistics.median(times):>28.4f}")


if __name__ == "__main__":
    main()
