"""``lrp-kernels explain``: token relevance for texts, as JSON lines, an HTML heatmap page or a PNG.

Inputs: TEXT arguments, or ``--input`` — ``.txt`` (one text per line; the id is the line number),
``.jsonl`` (objects with ``text``, optional ``text_pair`` and ``id``) or ``.csv``/``.tsv`` (columns
named by ``--text-column`` / ``--text-pair-column`` / ``--id-column``; the id defaults to the row
number). Every output line is the explanation (:meth:`Explanation.to_dict`) plus its ``id``.

Restartable: texts are tokenized up front and cut into fixed, length-bucketed batches; results are
appended to ``--output`` batch by batch, and a re-run skips the ids already there (a half-written
last line is dropped), computing every remaining text in the very same batch as before — so a
resumed output equals an uninterrupted one. When everything is done the file is rewritten in input
order.

Data parallel: under ``torchrun --nproc_per_node N`` (``torch.distributed``; gloo on CPU, nccl on
CUDA) rank r takes batches r, r+N, … and appends to ``<output>.part-rank<r>``; rank 0 merges
the parts into ``--output`` at the end. The merged file is identical to a single-process one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from lrp_kernels.attribution import METHODS
from lrp_kernels.errors import InputError

PART_SUFFIX = ".part-rank"


# ---------------------------------------------------------------------------------------- inputs
def _id_key(value) -> str:
    """Ids compare by their JSON form (so 3 and "3" stay different, as written)."""
    return json.dumps(value, ensure_ascii=False)


def read_inputs(path: str, text_column: str = "text", text_pair_column: str | None = None,
                id_column: str | None = None) -> list[dict[str, Any]]:
    """``[{"id", "text", "text_pair"}]`` from a .txt, .jsonl or .csv/.tsv file."""
    from lrp_kernels.data.readers import read_text

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".txt", ".jsonl", ".csv", ".tsv"):
        raise InputError(f"{p}: unsupported input type {suffix or '(none)'}; use .txt, .jsonl, .csv or .tsv")
    content = read_text(p)  # missing, empty and non-UTF-8 files raise InputError
    records: list[dict[str, Any]] = []
    if suffix == ".txt":
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                records.append({"id": number, "text": line.strip(), "text_pair": None})
    elif suffix == ".jsonl":
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{p}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{p}:{number}: expected a JSON object")
            if text_column not in obj:
                raise InputError(f"{p}:{number}: no {text_column!r} field (fields: {', '.join(obj)})")
            if text_pair_column and text_pair_column not in obj:
                raise InputError(f"{p}:{number}: no {text_pair_column!r} field")
            ident = obj.get(id_column or "id", number)
            pair = obj.get(text_pair_column or "text_pair")
            records.append({"id": ident, "text": obj[text_column], "text_pair": pair})
    else:
        reader = csv.DictReader(io.StringIO(content), delimiter="\t" if suffix == ".tsv" else ",")
        columns = reader.fieldnames or []
        for name in (text_column, text_pair_column, id_column):
            if name and name not in columns:
                raise InputError(f"{p}: no column {name!r} (columns: {', '.join(columns)}); see --text-column")
        for number, row in enumerate(reader, start=1):
            ident = row[id_column] if id_column else number
            records.append({"id": ident, "text": row[text_column],
                            "text_pair": row[text_pair_column] if text_pair_column else None})
    if not records:
        raise InputError(f"{p}: no texts in the file")
    pairs = [r["text_pair"] is not None for r in records]
    if any(pairs) and not all(pairs):
        raise InputError(f"{p}: some records have a text_pair and some do not")
    for r in records:
        if not isinstance(r["text"], str) or not r["text"].strip():
            raise InputError(f"{p}: the text of id {r['id']} is empty")
        if r["text_pair"] is not None and (not isinstance(r["text_pair"], str) or not r["text_pair"].strip()):
            raise InputError(f"{p}: the text_pair of id {r['id']} is empty")
    seen = set()
    for r in records:
        key = _id_key(r["id"])
        if key in seen:
            raise InputError(f"{p}: id {r['id']} appears twice")
        seen.add(key)
    return records


# ---------------------------------------------------------------------------------------- output
def read_done(path: Path, method: str, repair: bool) -> list[dict[str, Any]]:
    """Records already in a JSONL output file.

    Lines are written whole with their newline, so only a last line without a newline can be cut
    short by an interruption: it is ignored (and cut off the file when ``repair``). Any other bad
    line is an error.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    complete_end = data.rfind(b"\n") + 1  # everything after the last newline is an unfinished write
    records = []
    for number, raw in enumerate(data[:complete_end].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{path}:{number}: not a JSON line; remove the file to start over") from None
        if not isinstance(obj, dict) or "id" not in obj:
            raise InputError(f"{path}:{number}: not an explain output line (no id)")
        if obj.get("method") != method:
            raise InputError(f"{path} holds {obj.get('method')} explanations, not {method}; use another --output")
        records.append(obj)
    if repair and complete_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(complete_end)
    return records


def part_files(output: Path) -> list[Path]:
    return sorted(output.parent.glob(output.name + PART_SUFFIX + "*"))


def merge_outputs(output: Path, order: list[str], method: str) -> list[dict[str, Any]]:
    """Rewrite ``output`` (plus any rank parts) in input order, atomically; remove the parts."""
    records: dict[str, dict[str, Any]] = {}
    for path in [output] + part_files(output):
        for r in read_done(path, method, repair=False):
            records.setdefault(_id_key(r["id"]), r)
    rank = {key: i for i, key in enumerate(order)}
    ordered = sorted(records.values(), key=lambda r: rank.get(_id_key(r["id"]), len(rank)))
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in ordered:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, output)
    for path in part_files(output):
        path.unlink()
    return ordered


# ---------------------------------------------------------------------------------------- running
def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(name: str, local_rank: int, world: int):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: CUDA is not available on this machine")
        if world > 1 and name == "cuda":
            name = f"cuda:{local_rank}"
    elif name != "cpu":
        raise InputError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    return torch.device(name)


def _target(value: str | None, id2label: dict[int, str]):
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        for index, name in id2label.items():
            if name == value:
                return index
    raise InputError(f"--target {value!r} is neither a class index nor a label name "
                     f"(labels: {', '.join(id2label.values())})")


def add_arguments(parser) -> None:
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain (or use --input)")
    parser.add_argument("--model", required=True, help="Hugging Face checkpoint directory")
    parser.add_argument("--method", default="attnlrp", help=f"one of {', '.join(METHODS)} (default %(default)s)")
    parser.add_argument("--target", help="class to explain, index or label name (default: the predicted class)")
    parser.add_argument("--input", help="a .txt (one text per line), .jsonl or .csv/.tsv file")
    parser.add_argument("--text-column", default="text", help="text column/field of --input (default %(default)s)")
    parser.add_argument("--text-pair-column", help="second-text column/field for sentence-pair models")
    parser.add_argument("--id-column", help="id column/field of --input (default: 'id' in jsonl, else the row number)")
    parser.add_argument("--output", help="JSON-lines output, written as it goes and resumed on re-run "
                                         "(default: print to stdout)")
    parser.add_argument("--html", help="also write a heatmap page (standalone HTML)")
    parser.add_argument("--png", help="also write a heatmap figure (PNG; best for a few texts)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512, help="truncate longer texts (tokens)")
    parser.add_argument("--merge-subwords", action="store_true", help="sum word-piece scores per word")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default %(default)s)")
    parser.add_argument("--dtype", default=None, help="float32 (default), bfloat16, float16, float64")
    parser.add_argument("--backend", default=None, help="LRP kernel backend (auto, torch, cpp, cuda, triton)")
    parser.add_argument("--ig-steps", type=int, default=32, help="integrated-gradients steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--stop-after-batches", type=int, default=None,
                        help="stop after N batches (an interruption on purpose; re-run to continue)")


def run(args) -> int:
    from lrp_kernels.explainer import Explainer

    if args.method not in METHODS:
        raise InputError(f"unknown method {args.method!r}; valid methods: {', '.join(METHODS)}")
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if args.stop_after_batches is not None and args.stop_after_batches < 0:
        raise InputError("--stop-after-batches must be non-negative")
    if bool(args.texts) == bool(args.input):
        raise InputError("give either TEXT arguments or --input FILE")
    if args.input:
        records = read_inputs(args.input, args.text_column, args.text_pair_column, args.id_column)
    else:
        records = [{"id": i, "text": t, "text_pair": None} for i, t in enumerate(args.texts)]
        for r in records:
            if not r["text"].strip():
                raise InputError(f"text {r['id']} is empty")
    if not Path(args.model).is_dir():
        raise InputError(f"{args.model}: checkpoint directory not found")

    rank, world, local_rank = _dist_env()
    device = _device(args.device, local_rank, world)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    explainer = Explainer.from_pretrained(args.model, method=args.method, device=device, dtype=args.dtype,
                                          backend=args.backend, max_length=args.max_length, ig_steps=args.ig_steps)
    target = _target(args.target, explainer.id2label)
    n_labels = explainer.model.config.num_labels
    if target is not None and not 0 <= target < n_labels:
        raise InputError(f"--target {target} out of range: the model has {n_labels} labels (0..{n_labels - 1})")

    texts = [r["text"] for r in records]
    pairs = [r["text_pair"] for r in records] if records[0]["text_pair"] is not None else None
    encodings = explainer.encoder.tokenize(texts, pairs)
    batches = list(explainer.batches(encodings, args.batch_size, bucket=True))
    order = [_id_key(r["id"]) for r in records]

    output = Path(args.output) if args.output else None
    group = None
    if world > 1:
        if output is None:
            raise InputError("data-parallel explain (torchrun) needs --output")
        import torch
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        group = dist
    try:
        finished = _explain_batches(explainer, args, records, texts, pairs, batches, target, output, rank, world)
        if group is not None:
            import torch

            flag = torch.tensor([1 if finished else 0], device=device if device.type == "cuda" else "cpu")
            group.all_reduce(flag, op=group.ReduceOp.MIN)
            finished = bool(flag.item())
            group.barrier()
        if output is None:
            return 0
        if not finished:
            if rank == 0:
                print(f"stopped early; re-run the same command to continue ({output})", file=sys.stderr)
            return 0
        if rank == 0:
            merged = merge_outputs(output, order, args.method)
            if args.html:
                from lrp_kernels.visualization import save_html

                save_html(merged, args.html, title=f"lrp-kernels explain: {args.method}",
                          intro=f"model {args.model}, {len(merged)} texts")
            if args.png:
                from lrp_kernels.visualization import plot_explanations

                plot_explanations(merged, args.png)
            print(f"wrote {len(merged)} explanations to {output}"
                  + (f" and {args.html}" if args.html else "") + (f" and {args.png}" if args.png else ""),
                  file=sys.stderr)
        if group is not None:
            group.barrier()
    finally:
        if group is not None:
            group.destroy_process_group()
    return 0


def _explain_batches(explainer, args, records, texts, pairs, batches, target, output, rank, world) -> bool:
    """Explain this rank's pending batches, appending as it goes; True when nothing is left."""
    mine = batches[rank::world]
    results: dict[int, dict] = {}
    done: set[str] = set()
    sink = None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_to = output if world == 1 else output.with_name(f"{output.name}{PART_SUFFIX}{rank}")
        for path in [output] + part_files(output):
            done |= {_id_key(r["id"]) for r in read_done(path, args.method, repair=(path == write_to))}
        sink = open(write_to, "a", encoding="utf-8")
    pending = [b for b in mine if any(_id_key(records[i]["id"]) not in done for i in b)]
    iterator = pending
    if not args.no_progress and rank == 0:
        from tqdm.auto import tqdm

        iterator = tqdm(pending, desc=f"explain ({args.method})", unit="batch", file=sys.stderr)
    finished = True
    try:
        for n, index in enumerate(iterator):
            if args.stop_after_batches is not None and n >= args.stop_after_batches:
                finished = False
                break
            expl = explainer.explain(
                [texts[i] for i in index], None if pairs is None else [pairs[i] for i in index],
                target=target, batch_size=len(index), merge_subwords=args.merge_subwords, bucket=False,
            )
            for i, e in zip(index, expl):
                record = {"id": records[i]["id"], **e.to_dict()}
                if sink is None:
                    results[i] = record
                elif _id_key(records[i]["id"]) not in done:
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            if sink is not None:
                sink.flush()
    finally:
        if sink is not None:
            sink.close()
    if sink is None:
        for i in sorted(results):
            print(json.dumps(results[i], ensure_ascii=False))
        if args.html or args.png:
            ordered = [results[i] for i in sorted(results)]
            if args.html:
                from lrp_kernels.visualization import save_html

                save_html(ordered, args.html, title=f"lrp-kernels explain: {args.method}")
            if args.png:
                from lrp_kernels.visualization import plot_explanations

                plot_explanations(ordered, args.png)
    return finished
