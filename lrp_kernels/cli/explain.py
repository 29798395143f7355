"""``lrp-kernels explain``: token relevance for texts, as JSON lines, an HTML heatmap page or a PNG.

Inputs: TEXT arguments, or ``--input`` (a file, or ``-`` for standard input; see
:mod:`lrp_kernels.cli._inputs`). Ids start at 1. Output: on a terminal a readable table (tokens with
scores and bars, the top-k tokens); JSON lines with ``--json``, when stdout is not a terminal, and in
``--output``. Every JSON line is one text explained by one method (:meth:`Explanation.to_dict`) plus
its ``id``; with several ``--methods`` a text has one line per method, in the order given. In
``--output`` each line also records ``computed_from`` (model fingerprint, its method and that
method's settings, every method of the run, target, contrast, max length, stride, layers, …).

The options map onto :meth:`~lrp_kernels.explainer.Explainer.explain`: ``--target`` (a class
index, a label name or ``all``: ``class_scores``/``class_names`` hold every class), ``--contrast``
(explain logit_target − logit_contrast; refused for a regression model), ``--stride`` (texts
longer than ``--max-length`` tokens are explained in full-length windows sharing at least that many tokens; ``windows``
counts them; without it they are truncated, with one warning), ``--layers`` (the relevance per layer: the ``layers`` field — with
``--target all`` that of the predicted class —, a token × layer table in ``--html``), ``--methods``
and ``--merge-subwords`` (the default: one score per word, its pieces' sum; ``--no-merge-subwords``
keeps the word pieces).

Restartable: texts are tokenized up front and cut into fixed, length-bucketed batches (an
:class:`~lrp_kernels.cli._job.ExplainJob`); results are appended to ``--output`` batch by batch and
a re-run skips the (id, method) records already there (:class:`~lrp_kernels.cli._jsonl.JsonlSink`),
computing every remaining text in the very same batch as before — so a resumed output equals an
uninterrupted one. A re-run with other settings or other texts for the same ids is refused
(``--overwrite`` replaces the file). When everything is done the file is rewritten in input order.

A causal language model (config.json's ``architectures``: ``*ForCausalLM`` …) explains the next token
of each prompt, ``--continuation TEXT`` or ``--generate N`` tokens: :mod:`lrp_kernels.cli._generate`.

Data parallel: under ``torchrun --nproc_per_node N`` (``torch.distributed``; gloo on CPU, nccl on
CUDA) rank r takes batches r, r+N, … and appends to ``<output>.part-rank<r>``; rank 0 merges
the parts into ``--output`` at the end. The merged file is identical to a single-process one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from lrp_kernels.cli import _generate
from lrp_kernels.cli._common import (
    add_option,
    check_output,
    require_non_negative,
    require_positive,
    warn_if_near_chance,
)
from lrp_kernels.cli._inputs import FORMATS, read_inputs, records_from_texts
from lrp_kernels.cli._job import ExplainJob, Settings
from lrp_kernels.cli._jsonl import JsonlSink, MemorySink, model_fingerprint, remove_outputs
from lrp_kernels.cli._table import format_table
from lrp_kernels.errors import InputError
from lrp_kernels.options import (
    check_max_length,
    parse_device,
    parse_dtype,
    parse_methods,
    resolve_model_path,
    set_threads,
)

ALL = "all"  # --target all (lrp_kernels.attribution.ALL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts (a language model: prompts) to explain "
                                                                 "(or use --input)")
    add_option(parser, "model", required=True)
    add_option(parser, "methods", default="attnlrp", help="attribution methods, comma-separated, or 'all'; several: "
                                                          "one record per text and method (default %(default)s)")
    _add_explained(parser)
    parser.add_argument("--input", help="a .txt (one text per line), .jsonl or .csv/.tsv file; - reads stdin")
    parser.add_argument("--input-format", choices=FORMATS, help="the format of --input (default: its suffix; "
                                                                 "stdin: txt)")
    parser.add_argument("--text-column", default="text", help="text column/field of --input (default %(default)s)")
    parser.add_argument("--text-pair-column", help="second-text column/field for sentence-pair models")
    parser.add_argument("--id-column", help="id column/field of --input (default: 'id' in jsonl, else the row number)")
    add_option(parser, "output", help="JSON-lines output, written as it goes and resumed on re-run "
                                      "(default: print to stdout)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output instead of resuming it")
    parser.add_argument("--json", action="store_true", help="print JSON lines even on a terminal")
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="the table's top tokens "
                                                                          "(default %(default)s)")
    parser.add_argument("--html", help="also write a heatmap page (standalone HTML)")
    parser.add_argument("--png", help="also write a heatmap figure (PNG; best for a few texts)")
    add_option(parser, "batch_size")
    add_option(parser, "max_length", help="tokens per input (default %(default)s; the model's limit at most): "
                                          "longer texts are truncated, or windowed with --stride")
    add_option(parser, "merge_subwords")
    _add_running(parser)
    _generate.add_arguments(parser)


def _add_explained(parser: argparse.ArgumentParser) -> None:
    """What is explained: the class, a contrast, windows, layers."""
    parser.add_argument("--target", metavar="CLASS", help="class to explain: index, label name, or 'all' (every "
                                                          "class in one backward; default: the predicted class)")
    parser.add_argument("--contrast", metavar="CLASS", help="explain the target's logit minus this class's "
                                                            "(index or label name; gradient and IG methods)")
    parser.add_argument("--stride", type=int, metavar="N",
                        help="explain texts longer than --max-length tokens in full-length windows sharing at least "
                             "N tokens (default: truncate)")
    parser.add_argument("--layers", action="store_true", help="also the relevance per layer (gradient methods; "
                                                              "a token x layer table in --html)")


def _add_running(parser: argparse.ArgumentParser) -> None:
    """Where and how it runs."""
    from lrp_kernels.methods import READ_OUT_POINTS

    add_option(parser, "device")
    add_option(parser, "dtype")
    add_option(parser, "threads")
    add_option(parser, "backend")
    add_option(parser, "eps")
    parser.add_argument("--read-at", choices=READ_OUT_POINTS, help="read-out point of the gradient methods "
                                                                   "(default: the method's own)")
    add_option(parser, "ig_steps")
    parser.add_argument("--checkpoint", action="store_true",
                        help="recompute each layer during the backward: for inputs whose activations do not fit "
                             "in memory (about one more forward; the same scores; not with --layers)")
    add_option(parser, "progress")
    parser.add_argument("--stop-after-batches", type=int, default=None,
                        help="stop after N batches (an interruption on purpose; re-run to continue)")


# ---------------------------------------------------------------------------------------- running
@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process under ``torchrun`` (rank 0 of 1 without it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Ranks":
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))


def run(args: argparse.Namespace) -> int:
    from lrp_kernels.explainer import Explainer
    from lrp_kernels.models.loading import read_config

    methods = _methods(args)
    ranks = Ranks.from_env()
    if ranks.world > 1 and args.input == "-":
        raise InputError("data-parallel explain (torchrun) reads --input from a file, not stdin")
    records = _records(args)
    device = parse_device(args.device, ranks.local_rank if ranks.world > 1 else None)
    set_threads(args.threads)
    model_dir = resolve_model_path(args.model)
    language_model = read_config(model_dir).language_model
    if language_model:
        _generate.check(args, methods, records)
    else:
        _generate.check_classifier(args)
        warn_if_near_chance(model_dir)
    read_at = {"read_at": args.read_at} if args.read_at else {}
    explainer = Explainer.from_pretrained(model_dir, method=methods[0], device=device, dtype=args.dtype,
                                          backend=args.backend, max_length=args.max_length, eps=args.eps,
                                          ig_steps=args.ig_steps, **read_at,
                                          **({"checkpoint": True} if args.checkpoint else {}))
    if language_model:
        return _generate.run(args, explainer, records, methods)
    pair = records[0]["text_pair"] is not None
    check_max_length(explainer.encoder.tokenizer, args.max_length, pair)
    settings = _settings(args, explainer, methods, pair)
    job = ExplainJob.create(explainer, records, args.batch_size, settings, rank=ranks.rank, world=ranks.world)
    if args.output is None:
        if ranks.world > 1:
            raise InputError("data-parallel explain (torchrun) needs --output")
        return _to_stdout(job, args)
    job.computed_from = computed_from(job, args, model_dir)
    return _to_file(job, args, device)


def computed_from(job: ExplainJob, args: argparse.Namespace, model_dir: Path) -> dict[str, dict[str, Any]]:
    """Per method, what the rows of this run are computed from beside their texts (every setting
    that changes scores)."""
    settings, dtype = job.settings, parse_dtype(args.dtype)
    common = {"model": model_fingerprint(model_dir), "methods": list(settings.methods),
              "target": "predicted" if settings.target is None else settings.target, "contrast": settings.contrast,
              "max_length": job.explainer.encoder.max_length, "stride": settings.stride, "layers": settings.layers,
              "merge_subwords": settings.merge_subwords,
              "dtype": "float32" if dtype is None else str(dtype).replace("torch.", "")}
    return {method: {"model": common["model"], "method": method, **common, **_method_settings(method, job, args)}
            for method in settings.methods}


def _method_settings(method: str, job: ExplainJob, args: argparse.Namespace) -> dict[str, Any]:
    """The settings of one method: ε (LRP), the read-out point (gradient methods), IG's steps."""
    from lrp_kernels.methods import get_method

    spec, values = get_method(method), {}
    if spec.is_lrp:
        values["eps"] = job.explainer.eps
    if spec.read_at is not None:
        values["read_at"] = args.read_at or spec.read_at
    if spec.kind == "integrated_gradients":
        values["ig_steps"] = args.ig_steps
    return values


def _records(args: argparse.Namespace) -> list[dict[str, Any]]:
    require_positive(args, "batch_size", "ig_steps", "top_k")
    require_non_negative(args, "stop_after_batches", "eps", "stride")
    if args.output is not None:
        check_output(args.output, "file")
    if args.overwrite and args.output is None:
        raise InputError("--overwrite applies to --output")
    if bool(args.texts) == bool(args.input):
        raise InputError("give either TEXT arguments or --input FILE (- for stdin)")
    if args.input:
        return read_inputs(args.input, args.text_column, args.text_pair_column, args.id_column, args.input_format)
    return records_from_texts(args.texts)


# ---------------------------------------------------------------------------------------- settings
def _methods(args: argparse.Namespace) -> tuple[str, ...]:
    """``--methods``, each checked against the options that apply to some methods only."""
    from lrp_kernels.methods import METHODS, get_method

    methods = parse_methods(args.methods)
    needs = [("--layers", args.layers, lambda spec: spec.kind == "gradient", "gradient methods"),
             ("--read-at", args.read_at, lambda spec: spec.kind == "gradient", "gradient methods"),
             ("--contrast", args.contrast is not None, lambda spec: spec.depends_on_target,
              "methods whose scores depend on the explained class")]
    for option, given, applies, what in needs:
        valid = [m for m in METHODS if applies(get_method(m))]
        wrong = [m for m in methods if given and m not in valid]
        if wrong:
            raise InputError(f"{option} applies to the {what} ({', '.join(valid)}), not {wrong[0]}")
    return methods


def _settings(args: argparse.Namespace, explainer, methods: tuple[str, ...], pair: bool) -> Settings:
    """The checked ``--target``, ``--contrast`` and ``--stride`` (with the methods and flags)."""
    target = _class("--target", args.target, explainer, every=True)
    contrast = _class("--contrast", args.contrast, explainer)
    explainer.model.config.head.check_contrast(contrast)
    if contrast is not None and contrast == target:
        raise InputError(f"--contrast {args.contrast} is the explained class (--target {args.target}): "
                         "every score would be 0")
    if args.stride is not None:
        room = explainer.encoder.max_length - explainer.encoder.special_tokens(pair)
        if args.stride >= room:
            raise InputError(f"--stride {args.stride} must be below {room}: a window of {explainer.encoder.max_length} "
                             f"tokens (--max-length) holds {room} text tokens")
    return Settings(methods, target, contrast, args.layers, args.stride, args.merge_subwords)


def _class(option: str, value: str | None, explainer, every: bool = False) -> int | str | None:
    """A class given as an index or a label name (``every``: or ``all``), checked against the model's
    labels by the library's one parser (:func:`~lrp_kernels.attribution.label_index`)."""
    from lrp_kernels.attribution import label_index

    if value is None or (every and value == ALL):
        return value
    return label_index(value, explainer.id2label, explainer.model.config.num_labels, option,
                       " nor all" if every else "")


def _intro(args: argparse.Namespace, job: ExplainJob) -> str:
    """One line above the heatmaps: the model, the texts and what was explained."""
    settings = job.settings
    n, several = len(job.records), len(settings.methods) > 1
    parts = [f"model {args.model}", f"{n} text{'s' if n > 1 else ''}",
             f"method{'s' if several else ''} " + ", ".join(settings.methods)]
    head = job.explainer.model.config.head
    predicted = ("the predicted value" if head.is_regression else "the predicted labels (sigmoid ≥ 0.5, else the "
                 "top one)" if head.is_multi_label else "the predicted class")
    parts.append("every class" if settings.target == ALL else predicted if settings.target is None
                 else f"class {job.explainer.id2label.get(settings.target, settings.target)}")
    if settings.contrast is not None:
        parts[-1] += f" against {job.explainer.id2label.get(settings.contrast, settings.contrast)}"
    if settings.stride is not None:
        parts.append(f"texts over {job.explainer.encoder.max_length} tokens in windows sharing at least {settings.stride}")
    return "; ".join(parts)


def _to_stdout(job: ExplainJob, args: argparse.Namespace) -> int:
    """JSON lines (``--json`` or not a terminal) or the readable table."""
    with MemorySink() as sink:
        job.run(sink, args.stop_after_batches, args.progress)
    records = sink.in_order(job.order())
    if args.json or not sys.stdout.isatty():
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
    else:
        print(format_table(records, args.top_k))
    _write_pictures(records, args, job)
    return 0


def _to_file(job: ExplainJob, args: argparse.Namespace, device) -> int:
    output = Path(args.output)
    with _process_group(device, job.world) as group:
        if args.overwrite and job.rank == 0:
            remove_outputs(output)
        if group is not None:
            group.barrier()
        with JsonlSink(output, job.row_check(), job.rank, job.world) as sink:
            idle = job.world == 1 and not job.pending(sink.done)
            finished = job.run(sink, args.stop_after_batches, args.progress)
        finished = _all_finished(group, finished, device)
        if job.rank == 0 and not finished:
            print(f"stopped early; re-run the same command to continue ({output})", file=sys.stderr)
        elif job.rank == 0:
            merged = sink.merge(job.order())
            _write_pictures(merged, args, job)
            count = f"{len(merged)} explanation{'s' if len(merged) != 1 else ''}"
            pictures = (f" and {args.html}" if args.html else "") + (f" and {args.png}" if args.png else "")
            print(f"nothing to do: {output} already holds all {count} (--overwrite recomputes them)"
                  + (f"; wrote {pictures[5:]}" if pictures else "") if idle else f"wrote {count} to {output}{pictures}",
                  file=sys.stderr)
        if group is not None:
            group.barrier()
    return 0


@contextlib.contextmanager
def _process_group(device, world: int):
    """``torch.distributed`` (nccl on CUDA, gloo on CPU) for the duration, when there are several ranks."""
    if world == 1:
        yield None
        return
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist
    finally:
        dist.destroy_process_group()


def _all_finished(group, finished: bool, device) -> bool:
    """Whether every rank finished its batches (this rank's answer without a group)."""
    if group is None:
        return finished
    import torch

    flag = torch.tensor([1 if finished else 0], device=device if device.type == "cuda" else "cpu")
    group.all_reduce(flag, op=group.ReduceOp.MIN)
    group.barrier()
    return bool(flag.item())


def _write_pictures(records: list[dict[str, Any]], args: argparse.Namespace, job: ExplainJob) -> None:
    """``--html`` and ``--png``, when asked for."""
    if args.html:
        from lrp_kernels.visualization import save_html

        save_html(records, args.html, title=f"lrp-kernels explain: {', '.join(job.methods)}", intro=_intro(args, job))
    if args.png:
        from lrp_kernels.visualization import plot_explanations

        plot_explanations(records, args.png)
