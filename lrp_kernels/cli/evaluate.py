"""``lrp-kernels evaluate``: word deletion, AOPC, ABPC, word rank, method agreement, cross-dataset.

Example::

    lrp-kernels evaluate --model ckpt/ --task sst2 --data-dir ../shared/data/sst2 \\
        --methods gradient,grad_x_input,lrp_epsilon,attnlrp,cp_lrp,lat,integrated_gradients,rollout,random \\
        --out report/

writes ``report/summary.csv`` (and the other tables), PNG plots, ``report.md`` and ``index.html``.
"""

from __future__ import annotations

from lrp_kernels.attribution import METHODS
from lrp_kernels.evaluation.perturbation import REPLACEMENTS
from lrp_kernels.evaluation.study import METRICS, StudyConfig, parse_list, run_study


def add_arguments(parser) -> None:
    d = StudyConfig(model="", task="", out="")
    parser.add_argument("--model", required=True, help="fine-tuned Hugging Face checkpoint directory")
    parser.add_argument("--task", required=True, help="task name (sst2, sst5, imdb, qnli, ...; see `train --help`)")
    parser.add_argument("--data-dir", help="directory with the task's files")
    parser.add_argument("--split", default=d.split, help="split to evaluate on (default %(default)s)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all)")
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated metrics (default: all)")
    parser.add_argument("--out", required=True, help="output directory for tables, plots, report.md, index.html")
    parser.add_argument("--max-examples", type=int, default=None, help="only the first N examples of the split")
    parser.add_argument("--replacement", choices=REPLACEMENTS, default=d.replacement,
                        help="token that replaces deleted tokens in word deletion and ABPC (pad: as in the paper)")
    parser.add_argument("--min-tokens", type=int, default=d.min_tokens,
                        help="word deletion: only examples with at least this many tokens (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per attribution batch")
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                        help="perturbed sequences per forward batch")
    parser.add_argument("--max-length", type=int, default=d.max_length, help="truncate texts to this many tokens")
    parser.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--backend", default=None, help="LRP kernel backend (auto, torch, cpp, cuda, triton)")
    parser.add_argument("--ig-steps", type=int, default=d.ig_steps, help="integrated-gradients steps")
    parser.add_argument("--heatmaps", type=int, default=d.heatmaps, help="examples shown as heatmaps in index.html")
    parser.add_argument("--model2", help="cross-dataset: a second checkpoint (fine-tuned on another task)")
    parser.add_argument("--task2", help="cross-dataset: the second model's task (for word-rank correlation)")
    parser.add_argument("--data-dir2", help="cross-dataset: the second task's directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args) -> StudyConfig:
    from lrp_kernels.errors import InputError

    for name in ("batch_size", "eval_batch_size", "max_length", "ig_steps"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.heatmaps < 0:
        raise InputError("--heatmaps must be non-negative")
    return StudyConfig(
        model=args.model, task=args.task, out=args.out, data_dir=args.data_dir, split=args.split,
        methods=parse_list(args.methods, METHODS, "method"), metrics=parse_list(args.metrics, METRICS, "metric"),
        max_examples=args.max_examples, replacement=args.replacement, min_tokens=args.min_tokens,
        batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, max_length=args.max_length,
        device=args.device, backend=args.backend, ig_steps=args.ig_steps, heatmaps=args.heatmaps,
        model2=args.model2, task2=args.task2, data_dir2=args.data_dir2, progress=not args.no_progress,
    )


def print_summary(summary: dict) -> None:
    """The headline numbers per method, one line each."""
    print(f"{summary['examples']} examples, accuracy {summary['accuracy']:.4f}, {summary['seconds']:.1f} s")
    for method, row in summary["methods"].items():
        parts = []
        if "deletion_mean_acc" in row and row["deletion_mean_acc"] is not None:
            parts.append(f"deletion acc@10 {row['acc@10']:.3f}")
        if "aopc_comprehensiveness" in row:
            parts.append(f"AOPC comp {row['aopc_comprehensiveness']:.3f} suff {row['aopc_sufficiency']:.3f}")
        if "abpc" in row:
            parts.append(f"ABPC {row['abpc']:.3f}")
        print(f"  {method:<22} " + ", ".join(parts))


def run(args) -> int:
    summary = run_study(config_from_args(args))
    print_summary(summary)
    print(f"report: {args.out}/index.html")
    return 0
