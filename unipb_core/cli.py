"""``unipb`` command line: parses arguments, then calls into ``unipb_core``."""

from __future__ import annotations

import argparse
import sys
import time

from PIL import Image, ImageDraw


def _demo_image() -> Image.Image:
    image = Image.new("RGB", (336, 336), "white")
    ImageDraw.Draw(image).ellipse((84, 84, 252, 252), fill="red")
    return image


def cmd_demo(args: argparse.Namespace) -> int:
    """Load each tiny family and answer one question: a smoke check of the whole loading path."""
    from .models import TINY_SPECS, load_model

    rows = []
    for spec in TINY_SPECS:
        start = time.perf_counter()
        model = load_model(spec)
        loaded = time.perf_counter() - start
        inputs = model.build_inputs([_demo_image()], "What colour is the circle?")
        start = time.perf_counter()
        out = model.generate(inputs, max_new_tokens=args.max_new_tokens)
        rows.append((spec, out.n_visual, out.n_text, out.n_generated, loaded, time.perf_counter() - start, out.text))
    header = f"{'model':<18} {'visual':>6} {'text':>5} {'gen':>4} {'load s':>7} {'gen s':>6}  answer"
    print(header)
    print("-" * len(header))
    for spec, n_vis, n_txt, n_gen, t_load, t_gen, text in rows:
        print(f"{spec:<18} {n_vis:>6} {n_txt:>5} {n_gen:>4} {t_load:>7.2f} {t_gen:>6.2f}  {text!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unipb", description="UniPruneBench workbook")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="load each tiny model family and answer one sample")
    demo.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate per answer")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
