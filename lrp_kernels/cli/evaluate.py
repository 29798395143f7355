"""``lrp-kernels evaluate``: word deletion, AOPC, ABPC, word rank, method agreement, cross-dataset.

Example::

    lrp-kernels evaluate --model ckpt/ --task sst2 --data-dir glue/SST-2 --max-examples 200 \\
        --methods gradient,grad_x_input,lrp_epsilon,attnlrp,cp_lrp,lat,integrated_gradients,rollout,random \\
        --output report/

writes ``report/summary.csv`` (and the other tables), PNG plots, ``report.md`` and ``index.html``.
Before it starts it prints the plan (the forward and backward passes of every method); a progress
bar per method shows how far it is and its ETA.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lrp_kernels.cli._common import (
    add_option,
    check_output,
    require_non_negative,
    require_positive,
    warn_if_near_chance,
)
from lrp_kernels.evaluation.perturbation import REPLACEMENTS
from lrp_kernels.evaluation.study import METRICS, StudyConfig, run_study
from lrp_kernels.options import parse_methods, parse_names, resolve_model_path, set_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = StudyConfig(model="", task="", out="")
    add_option(parser, "model", required=True)
    parser.add_argument("--task", required=True, help="task name (sst2, sst5, imdb, qnli, ...; see `train --help`)")
    parser.add_argument("--data-dir", help="directory with the task's files")
    parser.add_argument("--split", default=d.split, help="split to evaluate on (default %(default)s)")
    add_option(parser, "methods")
    parser.add_argument("--metrics", default="all", help=f"comma-separated metrics: {', '.join(METRICS)} "
                                                         "(default: all)")
    add_option(parser, "output", required=True, help="output directory for tables, plots, report.md, index.html")
    parser.add_argument("--max-examples", type=int, default=None, help="only the first N examples of the split")
    parser.add_argument("--replacement", choices=REPLACEMENTS, default=d.replacement,
                        help="token that replaces deleted tokens in word deletion and ABPC (pad: as in the paper)")
    parser.add_argument("--min-tokens", type=int, default=d.min_tokens,
                        help="word deletion: only examples with at least this many tokens (default %(default)s)")
    add_option(parser, "batch_size", default=d.batch_size, help="examples per attribution batch (default %(default)s)")
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                        help="perturbed sequences per forward batch")
    add_option(parser, "max_length", default=d.max_length)
    add_option(parser, "device", default=d.device)
    add_option(parser, "dtype")
    add_option(parser, "threads")
    add_option(parser, "backend")
    add_option(parser, "eps", default=d.eps)
    add_option(parser, "ig_steps", default=d.ig_steps)
    parser.add_argument("--heatmaps", type=int, default=d.heatmaps, help="examples shown as heatmaps in index.html")
    parser.add_argument("--model2", help="cross-dataset: a second checkpoint (fine-tuned on another task)")
    parser.add_argument("--task2", help="cross-dataset: the second model's task (for word-rank correlation)")
    parser.add_argument("--data-dir2", help="cross-dataset: the second task's directory")
    add_option(parser, "progress")


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    require_positive(args, "batch_size", "eval_batch_size", "ig_steps")
    check_output(args.output, "directory")
    require_non_negative(args, "eps", "heatmaps")
    return StudyConfig(
        model=args.model, task=args.task, out=args.output, data_dir=args.data_dir, split=args.split,
        methods=parse_methods(args.methods), metrics=parse_names(args.metrics, METRICS, "metric"),
        max_examples=args.max_examples, replacement=args.replacement, min_tokens=args.min_tokens,
        batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, max_length=args.max_length,
        device=args.device, dtype=args.dtype, backend=args.backend, ig_steps=args.ig_steps, eps=args.eps,
        heatmaps=args.heatmaps, model2=args.model2, task2=args.task2, data_dir2=args.data_dir2, progress=args.progress,
    )


def print_summary(summary: dict) -> None:
    """The headline numbers per method, one line each."""
    accuracy = "" if summary.get("accuracy") is None else f", accuracy {summary['accuracy']:.4f}"
    print(f"{summary['examples']} examples{accuracy}, {summary['seconds']:.1f} s")
    for method, row in summary["methods"].items():
        parts = []
        for short in ("acc", "pred", "value"):
            if row.get(f"deletion_mean_{short}") is not None:
                parts.append(f"deletion {short}@10 {row[f'{short}@10']:.3f}")
        if "aopc_comprehensiveness" in row:
            parts.append(f"AOPC comp {row['aopc_comprehensiveness']:.3f} suff {row['aopc_sufficiency']:.3f}")
        if "abpc" in row:
            parts.append(f"ABPC {row['abpc']:.3f}")
        print(f"  {method:<22} " + ", ".join(parts))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    set_threads(args.threads)
    warn_if_near_chance(resolve_model_path(config.model))
    summary = run_study(config, log=_log)
    print_summary(summary)
    print(f"report: {Path(args.output) / 'index.html'}")
    return 0
