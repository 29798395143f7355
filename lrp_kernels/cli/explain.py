"""``lrp-kernels explain``: token relevance for texts, as JSON lines, an HTML heatmap page or a PNG.

Inputs: TEXT arguments, or ``--input`` (a file, or ``-`` for standard input; see
:mod:`lrp_kernels.cli._inputs`). Ids start at 1. Output: on a terminal a readable table (tokens with
scores and bars, the top-k tokens); JSON lines with ``--json``, when stdout is not a terminal, and in
``--output``. Every JSON line is the explanation (:meth:`Explanation.to_dict`) plus its ``id``; in
``--output`` also ``computed_from`` (model fingerprint, method and its settings, target, max length).

Restartable: texts are tokenized up front and cut into fixed, length-bucketed batches (an
:class:`ExplainJob`); results are appended to ``--output`` batch by batch and a re-run skips the ids
already there (:class:`~lrp_kernels.cli._jsonl.JsonlSink`), computing every remaining text in the
very same batch as before — so a resumed output equals an uninterrupted one. A re-run with other
settings or other texts for the same ids is refused (``--overwrite`` replaces the file). When
everything is done the file is rewritten in input order.

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
import warnings
from pathlib import Path
from typing import Any

from lrp_kernels.cli._common import (
    add_option,
    check_output,
    require_non_negative,
    require_positive,
    warn_if_near_chance,
)
from lrp_kernels.cli._inputs import FORMATS, id_key, read_inputs, records_from_texts
from lrp_kernels.cli._jsonl import JsonlSink, MemorySink, RowCheck, model_fingerprint, remove_outputs
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

TRUNCATION_WARNING = r".*tokens were truncated"  # the tokenizer's; ExplainJob.create words its own


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lrp_kernels.methods import READ_OUT_POINTS

    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain (or use --input)")
    add_option(parser, "model", required=True)
    add_option(parser, "methods", default="attnlrp", help="the attribution method (one per run; default %(default)s)")
    parser.add_argument("--target", help="class to explain, index or label name (default: the predicted class)")
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
    add_option(parser, "max_length")
    parser.add_argument("--merge-subwords", action="store_true", help="sum word-piece scores per word")
    add_option(parser, "device")
    add_option(parser, "dtype")
    add_option(parser, "threads")
    add_option(parser, "backend")
    add_option(parser, "eps")
    parser.add_argument("--read-at", choices=READ_OUT_POINTS, help="read-out point of the gradient methods "
                                                                   "(default: the method's own)")
    add_option(parser, "ig_steps")
    add_option(parser, "progress")
    parser.add_argument("--stop-after-batches", type=int, default=None,
                        help="stop after N batches (an interruption on purpose; re-run to continue)")


# ---------------------------------------------------------------------------------------- the job
@dataclasses.dataclass
class ExplainJob:
    """The records to explain, cut into fixed batches (the same on every run and rank), and how."""

    explainer: Any
    records: list[dict[str, Any]]
    batches: list[list[int]]
    target: int | None = None
    merge_subwords: bool = False
    rank: int = 0
    world: int = 1
    computed_from: dict[str, Any] | None = None  # added to every record (file output)

    @classmethod
    def create(cls, explainer, records: list[dict[str, Any]], batch_size: int, **options) -> "ExplainJob":
        """Tokenize every record up front and bucket by length into batches of ``batch_size``;
        one warning (naming the first id) for the texts cut at the maximum length."""
        texts, pairs = cls._texts(records, range(len(records)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TRUNCATION_WARNING)
            encodings = explainer.encoder.tokenize(texts, pairs)
        cut = [records[i]["id"] for i, encoding in enumerate(encodings) if encoding.overflowing]
        if cut:
            warnings.warn(f"{len(cut)} text(s) longer than {explainer.encoder.max_length} tokens were truncated "
                          f"(first: id {json.dumps(cut[0], ensure_ascii=False)})", stacklevel=2)
        return cls(explainer, records, list(explainer.batches(encodings, batch_size, bucket=True)), **options)

    @staticmethod
    def _texts(records, index) -> tuple[list[str], list[str] | None]:
        texts = [records[i]["text"] for i in index]
        pairs = [records[i]["text_pair"] for i in index] if records[0]["text_pair"] is not None else None
        return texts, pairs

    @property
    def method(self) -> str:
        return self.explainer.method

    def order(self) -> list[str]:
        """The id keys in input order."""
        return [id_key(r["id"]) for r in self.records]

    def pending(self, done) -> list[list[int]]:
        """This rank's batches (r, r+N, …) that hold an id not in ``done``."""
        return [b for b in self.batches[self.rank :: self.world]
                if any(id_key(self.records[i]["id"]) not in done for i in b)]

    def explain_batch(self, index: list[int]) -> list[dict[str, Any]]:
        texts, pairs = self._texts(self.records, index)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TRUNCATION_WARNING)  # create() reported them
            explanations = self.explainer.explain(texts, pairs, target=self.target, batch_size=len(index),
                                                  merge_subwords=self.merge_subwords, bucket=False)
        extra = {} if self.computed_from is None else {"computed_from": self.computed_from}
        return [{"id": self.records[i]["id"], **e.to_dict(), **extra} for i, e in zip(index, explanations)]

    def row_check(self) -> RowCheck:
        """What the rows of an existing output must match to be kept."""
        texts = {id_key(r["id"]): (r["text"], r["text_pair"]) for r in self.records}
        return RowCheck(self.computed_from, texts)

    def run(self, sink, stop_after: int | None = None, progress: bool = True) -> bool:
        """Explain the pending batches into ``sink``; False when stopped after ``stop_after`` batches."""
        pending = self.pending(sink.done)
        with contextlib.ExitStack() as stack:
            if progress and self.rank == 0:
                from tqdm.auto import tqdm

                pending = stack.enter_context(tqdm(pending, desc=f"explain ({self.method})", unit="batch",
                                                   file=sys.stderr))
            for n, index in enumerate(pending):
                if stop_after is not None and n >= stop_after:
                    return False
                for i, record in zip(index, self.explain_batch(index)):
                    sink.add(i, record)
                sink.flush()
        return True


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

    method = _one_method(args.methods)
    ranks = Ranks.from_env()
    if ranks.world > 1 and args.input == "-":
        raise InputError("data-parallel explain (torchrun) reads --input from a file, not stdin")
    records = _records(args)
    device = parse_device(args.device, ranks.local_rank if ranks.world > 1 else None)
    set_threads(args.threads)
    model_dir = resolve_model_path(args.model)
    warn_if_near_chance(model_dir)
    read_at = {"read_at": args.read_at} if args.read_at else {}
    explainer = Explainer.from_pretrained(model_dir, method=method, device=device, dtype=args.dtype,
                                          backend=args.backend, max_length=args.max_length, eps=args.eps,
                                          ig_steps=args.ig_steps, **read_at)
    check_max_length(explainer.encoder.tokenizer, args.max_length, records[0]["text_pair"] is not None)
    job = ExplainJob.create(explainer, records, args.batch_size, target=_target(args.target, explainer),
                            merge_subwords=args.merge_subwords, rank=ranks.rank, world=ranks.world)
    if args.output is None:
        if ranks.world > 1:
            raise InputError("data-parallel explain (torchrun) needs --output")
        return _to_stdout(job, args)
    job.computed_from = computed_from(job, args, model_dir)
    return _to_file(job, args, device)


def computed_from(job: ExplainJob, args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """What the rows of this run are computed from, beside their texts (the settings that change scores)."""
    from lrp_kernels.methods import get_method

    spec = get_method(job.method)
    dtype = parse_dtype(args.dtype)
    values = {"model": model_fingerprint(model_dir), "method": job.method,
              "target": "predicted" if job.target is None else job.target,
              "max_length": job.explainer.encoder.max_length, "merge_subwords": job.merge_subwords,
              "dtype": "float32" if dtype is None else str(dtype).replace("torch.", "")}
    if spec.is_lrp:
        values["eps"] = job.explainer.eps
    if spec.read_at is not None:
        values["read_at"] = args.read_at or spec.read_at
    if spec.kind == "integrated_gradients":
        values["ig_steps"] = args.ig_steps
    return values


def _records(args: argparse.Namespace) -> list[dict[str, Any]]:
    require_positive(args, "batch_size", "ig_steps", "top_k")
    require_non_negative(args, "stop_after_batches", "eps")
    if args.output is not None:
        check_output(args.output, "file")
    if args.overwrite and args.output is None:
        raise InputError("--overwrite applies to --output")
    if bool(args.texts) == bool(args.input):
        raise InputError("give either TEXT arguments or --input FILE (- for stdin)")
    if args.input:
        return read_inputs(args.input, args.text_column, args.text_pair_column, args.id_column, args.input_format)
    return records_from_texts(args.texts)


def _one_method(value: str) -> str:
    methods = parse_methods(value)
    if len(methods) != 1:
        raise InputError(f"explain takes one method per run, not {len(methods)} ({', '.join(methods)})")
    return methods[0]


def _target(value: str | None, explainer) -> int | None:
    """``--target``: a class index or a label name, checked against the model's labels."""
    if value is None:
        return None
    id2label = explainer.id2label
    try:
        target = int(value)
    except ValueError:
        target = next((index for index, name in id2label.items() if name == value), None)
        if target is None:
            raise InputError(f"--target {value!r} is neither a class index nor a label name "
                             f"(labels: {', '.join(id2label.values())})") from None
    n_labels = explainer.model.config.num_labels
    if not 0 <= target < n_labels:
        raise InputError(f"--target {target} out of range: the model has {n_labels} labels (0..{n_labels - 1})")
    return target


def _to_stdout(job: ExplainJob, args: argparse.Namespace) -> int:
    """JSON lines (``--json`` or not a terminal) or the readable table."""
    with MemorySink() as sink:
        job.run(sink, args.stop_after_batches, args.progress)
    records = sink.in_order()
    if args.json or not sys.stdout.isatty():
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
    else:
        print(format_table(records, args.top_k))
    _write_pictures(records, args, job.method)
    return 0


def _to_file(job: ExplainJob, args: argparse.Namespace, device) -> int:
    output = Path(args.output)
    with _process_group(device, job.world) as group:
        if args.overwrite and job.rank == 0:
            remove_outputs(output)
        if group is not None:
            group.barrier()
        with JsonlSink(output, job.row_check(), job.rank, job.world) as sink:
            finished = job.run(sink, args.stop_after_batches, args.progress)
        finished = _all_finished(group, finished, device)
        if job.rank == 0 and not finished:
            print(f"stopped early; re-run the same command to continue ({output})", file=sys.stderr)
        elif job.rank == 0:
            merged = sink.merge(job.order())
            _write_pictures(merged, args, job.method, intro=f"model {args.model}, {len(merged)} texts")
            print(f"wrote {len(merged)} explanations to {output}"
                  + (f" and {args.html}" if args.html else "") + (f" and {args.png}" if args.png else ""),
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


def _write_pictures(records: list[dict[str, Any]], args: argparse.Namespace, method: str,
                    intro: str | None = None) -> None:
    """``--html`` and ``--png``, when asked for."""
    if args.html:
        from lrp_kernels.visualization import save_html

        save_html(records, args.html, title=f"lrp-kernels explain: {method}", intro=intro)
    if args.png:
        from lrp_kernels.visualization import plot_explanations

        plot_explanations(records, args.png)
