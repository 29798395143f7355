"""``lrp-kernels explain`` of a causal language model: the next token, ``--continuation TEXT`` or
``--generate N`` (:meth:`~lrp_kernels.explainer.Explainer.explain` /
:meth:`~lrp_kernels.explainer.Explainer.explain_generation`).

The prompts come as every explain input does (TEXT arguments or ``--input``; ids from 1). Output:
JSON lines, one per prompt — ``id`` plus :meth:`~lrp_kernels.generation.GenerationExplanation.to_dict`
(``matrix`` [N][context]: row i the relevance of every earlier token for explained token i) — on
stdout (``--json`` or not a terminal; else a short readable summary) and in ``--output`` (written
once at the end: nothing to resume, an existing file is refused without ``--overwrite``);
``--html``: the generation view (choose a token: its relevance over the context; the N × context
matrix). Options of the classifier path that mean nothing here are refused with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lrp_kernels.errors import InputError

#: classifier options refused for a language model (dest, flag, given?)
_CLASSIFIER_ONLY = (("stride", "--stride", lambda v: v is not None), ("layers", "--layers", bool),
                    ("png", "--png", lambda v: v is not None), ("read_at", "--read-at", lambda v: v is not None),
                    ("stop_after_batches", "--stop-after-batches", lambda v: v is not None),
                    ("text_pair_column", "--text-pair-column", lambda v: v is not None),
                    ("checkpoint", "--checkpoint", bool))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("causal language models")
    group.add_argument("--generate", type=int, metavar="N", help="generate up to N tokens after each prompt "
                                                                 "(greedy) and explain every one of them")
    group.add_argument("--continuation", metavar="TEXT", help="explain every token of TEXT after each prompt "
                                                              "(default: the next token)")
    group.add_argument("--score", choices=("logit", "logprob"), default="logit",
                       help="explain each token's logit (default) or its log-probability in gradient form "
                            "(z - sum_j p_j z_j: see the README)")


def check_classifier(args: argparse.Namespace) -> None:
    """The language-model options given to a classifier: one line."""
    for option, given in (("--generate", args.generate is not None), ("--continuation", args.continuation is not None),
                          ("--score", args.score != "logit")):
        if given:
            raise InputError(f"{option} applies to causal language models (*ForCausalLM); {args.model} is a classifier")


def check(args: argparse.Namespace, methods: tuple[str, ...], records: list[dict]) -> None:
    """The options and inputs of a language model's run (before the model loads): one line for the first
    that does not apply."""
    for dest, option, given in _CLASSIFIER_ONLY:
        if given(getattr(args, dest)):
            raise InputError(f"{option} applies to classifiers; {args.model} is a causal language model")
    if len(methods) != 1:
        raise InputError("a language model is explained by one method per run: give --methods METHOD")
    if any(r.get("text_pair") is not None for r in records):
        raise InputError("a language model takes prompts, not text pairs")
    if args.generate is not None and args.generate < 1:
        raise InputError("--generate must be at least 1")
    if args.generate is not None and args.continuation is not None:
        raise InputError("give --generate N or --continuation TEXT, not both")
    if args.generate is not None and (args.target is not None or args.contrast is not None):
        raise InputError("--target and --contrast name the next token; with --generate the generated tokens are the "
                         "targets")
    if args.output is not None and Path(args.output).exists() and not args.overwrite:
        raise InputError(f"{args.output}: exists (a language model's output is written once; --overwrite replaces it)")


def run(args: argparse.Namespace, explainer, records: list[dict], methods: tuple[str, ...]) -> int:
    """Explain every prompt of ``records`` (:func:`check` passed); write the JSON lines, the summary and
    ``--html``."""
    prompts = [r["text"] for r in records]
    common = dict(method=methods[0], score=args.score, batch_size=args.batch_size)
    if args.generate is not None:
        results = explainer.explain_generation(prompts, args.generate, args.merge_subwords, **common)
    else:
        results = explainer.explain(prompts, target=_token(args.target), contrast=_token(args.contrast),
                                    continuation=args.continuation, merge_subwords=args.merge_subwords,
                                    methods=common["method"], score=args.score, batch_size=args.batch_size)
    lines = [json.dumps({"id": r["id"], **e.to_dict()}, ensure_ascii=False) for r, e in zip(records, results)]
    if args.output is not None:
        Path(args.output).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if args.json or not sys.stdout.isatty():
        print("\n".join(lines))
    else:
        print(_summary(records, results, args.top_k))
    if args.html:
        results.save_html(args.html, title=f"lrp-kernels explain: {methods[0]}", intro=_intro(args, len(records)))
    if args.output is not None or args.html:
        written = " and ".join(str(p) for p in (args.output, args.html) if p)
        print(f"wrote {len(results)} explanation{'s' if len(results) != 1 else ''} to {written}", file=sys.stderr)
    return 0


def _token(value: str | None):
    """A token given as an id or as its text (a one-token string, e.g. ' Paris'), as the Explainer takes it."""
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def _intro(args: argparse.Namespace, n: int) -> str:
    what = (f"up to {args.generate} generated tokens" if args.generate is not None
            else "the continuation's tokens" if args.continuation is not None else "the next token")
    return f"model {args.model}; {n} prompt{'s' if n != 1 else ''}; {what}, each explained by its {args.score}"


def _summary(records, results, top_k: int) -> str:
    """Per prompt: the explained tokens, each with its top-k context tokens."""
    out = []
    for record, e in zip(records, results):
        out.append(f"[{record['id']}] {e.prompt!r} -> {e.generated_text!r} ({e.kind}, {e.method}, {e.score})")
        for i, row in enumerate(e.matrix):
            top = sorted(range(e.positions[i]), key=lambda j: -abs(row[j]))[:top_k]
            listed = ", ".join(f"{e.tokens[j]!r} {row[j]:+.3f}" for j in top)
            out.append(f"  {e.generated_tokens[i]!r} ({e.explained[i]:.3f}): {listed}")
    return "\n".join(out)
