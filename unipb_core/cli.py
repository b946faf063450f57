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


def summary_text(summary) -> str:
    """``runner.cell_summary`` as plain text for the terminal, with a line counting failed samples."""
    import pandas as pd

    if summary.empty:
        return "(no cells)"
    with pd.option_context("display.max_rows", None, "display.width", 160, "display.float_format", "{:.3f}".format):
        text = summary.drop(columns="config_hash").to_string(index=False)
    errors = int(summary["errors"].sum())
    return text + (f"\n{errors} sample(s) failed in this run; their errors are in the store." if errors else "")


def cmd_run(args: argparse.Namespace) -> int:
    """Run a params grid into the store (resumable), then print a summary table."""
    from .grid import ParamsError, expand, load_params, run
    from .runner import cell_summary
    from .store import ResultStore

    try:
        params = load_params(args.params, executor=args.executor, limit=args.limit, store=args.store)
    except (ParamsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(expand(params))} cells -> {params.store} (executor: {params.executor})")
    results = run(params, progress=not args.quiet)
    print(summary_text(cell_summary(results, ResultStore(params.store))))
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    """Print (and optionally save) the study's four findings computed from a store."""
    from . import analysis
    from .store import ResultStore

    store = args.store
    if args.params:
        from .grid import load_params

        store = load_params(args.params).store
    frame = ResultStore(store).frame()
    table = analysis.findings_table(frame)
    if args.csv:
        table.to_csv(args.csv, index=False)
    for row in table.itertuples():
        print(f"[{'holds' if row.holds else 'does not hold' if row.holds is False else 'undecided'}] {row.verdict}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Evaluate a grid through notebooks (one per model x dimension), analyse it, and render the HTML report."""
    import pandas as pd
    from papermill import PapermillExecutionError

    from .grid import ParamsError
    from .report import run_report

    try:
        html = run_report(args.params, out_dir=args.out, store=args.store, progress=not args.quiet)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PapermillExecutionError as exc:
        print(f"error: a notebook failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}", file=sys.stderr)
        print(f"the partial notebook is kept under {args.out}/ (runs/ or analysis.ipynb)", file=sys.stderr)
        return 1
    for row in pd.read_csv(html.parent / "tables" / "findings.csv").itertuples():
        print(f"[{row.status}] {row.finding}: {row.verdict}")
    print(f"report: {html}")
    return 0


def cmd_train_tiny(args: argparse.Namespace) -> int:
    """Train one tiny family on the synthetic train split, save it and record it in the weights manifest."""
    from functools import partial

    from .training import TrainConfig, require_device, train_and_ship

    flags = {"steps": args.steps, "seed": args.seed, "threads": args.threads, "device": args.device}
    flags |= {"batch_size": args.batch_size, "workers": args.workers}
    try:
        config = TrainConfig(family=args.family, **{k: v for k, v in flags.items() if v is not None})
        require_device(config.device)
    except ValueError as exc:  # unknown family or device, steps < 1, no CUDA device
        print(f"error: {exc}", file=sys.stderr)
        return 2
    entry = train_and_ship(config, args.out, test_per_dimension=args.test_limit, log=partial(print, flush=True))
    print(f"trained in {entry['train_seconds']:.0f} s; recorded in MANIFEST.json as: {entry['command']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unipb", description="UniPruneBench workbook")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="load each tiny model family and answer one sample")
    demo.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate per answer")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help="run a params grid into the results store (skips finished samples)")
    run.add_argument("params", help="params YAML, e.g. params/smoke.yaml")
    run.add_argument("--executor", choices=["local", "ray"], default=None, help="override the params' executor")
    run.add_argument("--limit", type=int, default=None, help="override samples per dataset (synthetic: per dimension)")
    run.add_argument("--store", default=None, help="override the results store path")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)
    findings = sub.add_parser("findings", help="compute the four findings from a results store")
    findings.add_argument("--store", default="reports/results.sqlite", help="results store path")
    findings.add_argument("--params", default=None, help="read the store path from this params YAML instead")
    findings.add_argument("--csv", default=None, help="also write the findings table to this CSV")
    findings.set_defaults(func=cmd_findings)
    report = sub.add_parser("report", help="run a grid through the notebooks and render reports/analysis.html")
    report.add_argument("params", nargs="?", default="params/smoke.yaml", help="params YAML (default: the smoke grid)")
    report.add_argument("--out", default="reports", help="output folder: runs/, figures/, tables/, analysis.html")
    report.add_argument("--store", default=None, help="override the results store path")
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    report.set_defaults(func=cmd_report)
    train_tiny = sub.add_parser("train-tiny", help="train one tiny model family on the synthetic suite")
    train_tiny.add_argument("--family", required=True, help="llava, internvl or qwen2_5_vl")
    train_tiny.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the family's budget)")
    train_tiny.add_argument("--seed", type=int, default=None, help="seeds the weights and the data (default 0)")
    train_tiny.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2)")
    train_tiny.add_argument("--device", default=None, help="cpu (default), cuda or cuda:<index>")
    train_tiny.add_argument(
        "--batch-size", type=int, default=None, help="samples per step (default 8 on cpu, 32 on cuda)"
    )
    train_tiny.add_argument(
        "--workers", type=int, default=None, help="processes drawing the training images (default 0; ~12 on a GPU)"
    )
    train_tiny.add_argument("--out", default=None, help="output folder (default: the shipped models/weights/<family>)")
    train_tiny.add_argument("--test-limit", type=int, default=50, help="test samples per dimension for the accuracy")
    train_tiny.set_defaults(func=cmd_train_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
