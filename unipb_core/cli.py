"""``unipb`` command line: parses arguments, then calls into ``unipb_core``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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
    """``runner.cell_summary`` as plain text for the terminal (failures: its ``errors`` column; ``cmd_run`` then
    prints one summary line with the first distinct errors on stderr)."""
    import pandas as pd

    if summary.empty:
        return "(no cells)"
    with pd.option_context("display.max_rows", None, "display.width", 160, "display.float_format", "{:.3f}".format):
        return summary.drop(columns="config_hash").to_string(index=False)


def cmd_run(args: argparse.Namespace) -> int:
    """Run a params grid into the store (resumable), then print a summary table and the run's counts.

    Exit status: 0 when every sample of the grid is recorded without error, 1 when a sample failed (the
    failures are recorded; a rerun retries them), 2 for a user error found before any sample ran.
    """
    from .grid import execute, load_params, prepare, summarize
    from .runner import cell_summary
    from .store import ResultStore

    params = load_params(args.params, executor=args.executor, limit=args.limit, store=args.store)
    if args.dry_run:
        from .dryrun import dry_run, dry_run_text

        print(dry_run_text(params, dry_run(params)))
        return 0
    plan = prepare(params)  # every user error surfaces here, before a model loads or anything is written
    done = f", {len(plan.done)} already complete" if plan.done else ""
    print(f"{len(plan.cells)} cells{done} -> {params.store} (executor: {params.executor})", flush=True)
    results = execute(plan, progress=not args.quiet, keep_going=args.keep_going)
    print(summary_text(cell_summary(results, ResultStore.open(params.store))))
    counts = summarize(results)
    busy = f", {counts['busy']} left to another run on this store" if counts["busy"] else ""
    print(
        f"samples: {counts['computed']} computed, {counts['skipped']} skipped (already stored), "
        f"{counts['failed']} failed{busy}; {counts['cells']} cells"
    )
    if not counts["failed"]:
        return 0
    stop = " (stopped at the first failure; --keep-going runs every cell)" if counts["stopped"] else ""
    print(f"error: {counts['failed']} sample(s) failed in {counts['failed_cells']} cell(s){stop}", file=sys.stderr)
    for message in counts["errors"]:
        print(f"  {message}", file=sys.stderr)
    print("the errors are recorded in the store; a rerun retries the failed samples", file=sys.stderr)
    return 1


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; a malformed item raises ValueError naming the flag."""
    out = {}
    for item in items or []:
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ValueError(f"{flag} expects NAME=VALUE, got {item!r}")
        out[name.strip()] = target.strip()
    return out


def load_findings_input(args: argparse.Namespace) -> tuple[object, str]:
    """The frame ``unipb findings`` analyses and a line saying where it came from.

    ``--results`` reads an external CSV (and cannot be combined with ``--store`` or ``--params``); ``--params``
    selects the grid's cells from its store, or from ``--store`` when given (it overrides the params' store, as
    in ``unipb run``); otherwise the whole ``--store`` (default reports/results.sqlite) is read.
    """
    from . import analysis

    if args.results:
        if args.store or args.params:
            raise ValueError("--results reads an external table; it cannot be combined with --store or --params")
        columns = _pairs(args.column, "--column")
        aliases = _pairs(args.alias, "--alias")
        frame = analysis.read_results(args.results, columns=columns, aliases=aliases, score_scale=args.score_scale)
        return frame, f"{len(frame)} rows ({analysis.input_level(frame)}) from {args.results}"
    if args.column or args.alias or args.score_scale != 1.0:
        raise ValueError("--column, --alias and --score-scale apply to --results only")
    from .store import ResultStore

    if args.params:
        from . import report

        params = report.load_grid(args.params, args.store)
        cells = report.grid_cells(params)
        frame = ResultStore(params.store).frame(config_hash=list(cells["config_hash"]))
        return frame, f"{len(frame)} records in {len(cells)} cells of {args.params} from {params.store}"
    store = args.store or "reports/results.sqlite"
    if not Path(store).is_file():
        raise ValueError(f"no results store at {store}; run a grid first (unipb run / unipb report) or pass --store")
    frame = ResultStore(store).frame()
    if frame.empty:
        raise ValueError(f"the store {store} holds no records; run a grid first (unipb run / unipb report)")
    return frame, f"{len(frame)} records from {store}"


def cmd_findings(args: argparse.Namespace) -> int:
    """Print (and optionally save, or render as a report) the study's four findings."""
    from . import analysis

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    if args.report and not args.results:
        print("error: --report renders an external table (--results); for a grid use `unipb report`", file=sys.stderr)
        return 2
    try:
        say("reading results ...")
        frame, source = load_findings_input(args)
        say(source)
        findings = analysis.compute_findings(frame, n_boot=args.n_boot, seed=args.seed, progress=say)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = analysis.findings_table(findings)
    if args.csv:
        table.to_csv(args.csv, index=False)
    for row in table.itertuples():
        print(f"[{row.status}] {row.finding}\n    {row.verdict}\n    evidence: {row.evidence}\n    input: {row.input}")
    if args.report:
        from papermill import PapermillExecutionError

        from .report import run_results_report

        say(f"rendering the analysis notebook into {args.report}/ ...")
        try:
            html = run_results_report(args.results, args.report, n_boot=args.n_boot, seed=args.seed,
                                         columns=_pairs(args.column, "--column"),
                                         aliases=_pairs(args.alias, "--alias"), score_scale=args.score_scale,
                                         progress=not args.quiet)  # fmt: skip
        except PapermillExecutionError as exc:
            print(f"error: the analysis notebook failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}; "
                  f"the partial notebook is {args.report}/analysis.ipynb", file=sys.stderr)  # fmt: skip
            return 1
        print(f"report: {html}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Evaluate a grid through notebooks (one per model x dimension), analyse it, and render the HTML report."""
    import pandas as pd
    from papermill import PapermillExecutionError

    from .grid import load_params, prepare
    from .report import from_root, run_report

    # The whole grid is checked here, before papermill starts a kernel: a user error is one line, exit 2.
    prepare(load_params(args.params, store=args.store))
    try:
        html = run_report(args.params, out_dir=args.out, store=args.store, progress=not args.quiet)
    except PapermillExecutionError as exc:
        print(f"error: a notebook failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}", file=sys.stderr)
        print(f"the partial notebook is kept under {from_root(args.out)}/ (runs/ or analysis.ipynb)", file=sys.stderr)
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
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    # --debug is accepted after the command too; SUPPRESS keeps a subcommand from resetting the top-level value.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", parents=[debug], help="load each tiny model family and answer one sample")
    demo.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate per answer")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser(
        "run", parents=[debug], help="run a params grid into the results store (skips finished samples)"
    )
    run.add_argument("params", help="params YAML, e.g. params/smoke.yaml")
    run.add_argument("--executor", choices=["local", "ray"], default=None, help="override the params' executor")
    run.add_argument("--limit", type=int, default=None, help="override samples per dataset (synthetic: per dimension)")
    run.add_argument("--store", default=None, help="override the results store path")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print cells, samples, finished / remaining records and the estimated remaining time per model; "
        "load and write nothing",
    )
    run.add_argument(
        "--keep-going",
        action="store_true",
        help="run every cell even when samples fail (default: stop at the first failed sample); exit 1 either way",
    )
    run.set_defaults(func=cmd_run)
    findings = sub.add_parser(
        "findings",
        parents=[debug],
        help="compute the four findings from a results store or an external results CSV",
        description=(
            "Compute the study's four findings (random baseline, no single winner, task sensitivity, ratio "
            "dominance) and print one verdict per finding with its evidence and input level. Input: a results "
            "store (--store), the cells of a params grid (--params, optionally from --store), or an external "
            "CSV (--results), per-sample or one row per (model, method, ratio, seed, dataset); column and "
            "method names are mapped by unipb_core.analysis.naming (see docs/analysis.md). Progress goes to stderr."
        ),
    )
    findings.add_argument("--store", default=None, help="results store (default reports/results.sqlite); with "
                          "--params it replaces the params' store")  # fmt: skip
    findings.add_argument("--params", default=None, help="analyse this params grid's cells (as the report does)")
    findings.add_argument("--results", default=None, help="an external results CSV instead of a store")
    findings.add_argument("--column", action="append", metavar="CSV=COLUMN", help="map a CSV column to an "
                          "analysis column, e.g. --column 'Top-1=score' (repeatable; --results only)")  # fmt: skip
    findings.add_argument("--alias", action="append", metavar="NAME=METHOD", help="map a method name to a method "
                          "key, e.g. --alias 'Rand. ViT=random_pre' (repeatable; --results only)")  # fmt: skip
    findings.add_argument("--score-scale", type=float, default=1.0, help="a perfect score in the CSV, e.g. 100 for "
                          "percentages (--results only)")  # fmt: skip
    findings.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples and sign-flip permutations")
    findings.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    findings.add_argument("--csv", default=None, help="also write the findings table to this CSV")
    findings.add_argument("--report", default=None, metavar="DIR", help="also render the analysis report of the "
                          "--results table into DIR (analysis.html, figures/, tables/)")  # fmt: skip
    findings.add_argument("--quiet", action="store_true", help="no progress lines")
    findings.set_defaults(func=cmd_findings)
    report = sub.add_parser(
        "report", parents=[debug], help="run a grid through the notebooks and render reports/analysis.html"
    )
    report.add_argument("params", nargs="?", default="params/smoke.yaml", help="params YAML (default: the smoke grid)")
    report.add_argument("--out", default="reports", help="output folder: runs/, figures/, tables/, analysis.html")
    report.add_argument("--store", default=None, help="override the results store path")
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    report.set_defaults(func=cmd_report)
    train_tiny = sub.add_parser(
        "train-tiny", parents=[debug], help="train one tiny model family on the synthetic suite"
    )
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


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean a user mistake (bad params, paths, names): one line, exit 2."""
    from .grid import ParamsError
    from .models.loading import MissingWeightsError, UnknownModelError
    from .pruning import UnknownMethodError
    from .store import StoreError

    return ParamsError, StoreError, UnknownModelError, UnknownMethodError, MissingWeightsError


def main(argv: list[str] | None = None) -> int:
    """Run a command. User errors print ``error: <one line>`` and exit 2; any other exception prints one line
    too and exits 1. ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted (finished samples are kept; a rerun resumes)", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        user = isinstance(exc, _user_errors())
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not user:
            message = f"{type(exc).__name__}: {message} (unexpected; rerun with --debug for the traceback)"
        print(f"error: {message}", file=sys.stderr)
        return 2 if user else 1


if __name__ == "__main__":
    sys.exit(main())
