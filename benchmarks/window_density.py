"""Relevance density per window of a long document: the tokenizer's overflow windows (the last one
short) against the windows the package cuts now (every one full-length, the last ending at the
text's end). A window carries 1/#windows of the document's logit whatever its length, so a short
last window spread its share over few tokens: the mean |relevance| per token of its tokens jumped.

The text: the first 722 words of the bundled SST-2 dev sentences, concatenated; the model: MiniLM-L6
with a seeded head (``--model DIR``: a fine-tuned checkpoint, e.g. the demo's). Prints, per cut, the
windows' lengths and the mean |relevance| per token of the tokens only the last window holds, only
another window holds, and two windows hold (those carry two windows' shares: about twice). With
``--html PREFIX`` also writes ``PREFIX_before.html`` and ``PREFIX_now.html``.

    PYTHONPATH=. python benchmarks/window_density.py [--model DIR] [--stride 8] [--max-length 128]
"""

import argparse
import csv
import statistics

import lrp_kernels.tokenization as tokenization
from lrp_kernels import Explainer, Explanations
from lrp_kernels.data import bundled_sst2_dir
from lrp_kernels.options import resolve_model_path


def document(words: int = 722) -> str:
    rows = list(csv.reader(open(bundled_sst2_dir() / "dev.tsv", encoding="utf-8"), delimiter="\t"))[1:]
    text = []
    for row in rows:
        text += row[0].split()
        if len(text) >= words:
            break
    return " ".join(text[:words])


def density(explainer, text: str, stride: int):
    """(explanation, window lengths, {region: (mean |R| per token, tokens)}) with the current cut."""
    doc = explainer.encoder.documents([text], stride=stride)[0]
    e = explainer.explain(text, stride=stride)[0]
    cover = [[] for _ in e.tokens]
    for w, positions in enumerate(doc.positions):
        for p in positions:
            cover[p].append(w)
    last = len(doc.windows) - 1
    regions = {"last window alone": [i for i, c in enumerate(cover) if c == [last]],
               "another window alone": [i for i, c in enumerate(cover) if len(c) == 1 and c[0] != last],
               "two windows": [i for i, c in enumerate(cover) if len(c) > 1]}
    means = {}
    for name, index in regions.items():
        values = [abs(e.scores[i]) for i in index if not e.special[i]]
        means[name] = (statistics.mean(values) if values else float("nan"), len(values))
    return e, [len(w.ids) for w in doc.windows], means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--method", default="attnlrp")
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--html", metavar="PREFIX")
    args = parser.parse_args()
    explainer = Explainer.from_pretrained(resolve_model_path(args.model), method=args.method,
                                          max_length=args.max_length)
    text = document()
    now = tokenization.even_windows
    cuts = {"before": lambda full, first, count: [first, *first.overflowing], "now": now}
    for name, cut in cuts.items():
        tokenization.even_windows = cut
        try:
            e, lengths, means = density(explainer, text, args.stride)
        finally:
            tokenization.even_windows = now
        ratio = means["last window alone"][0] / means["another window alone"][0]
        print(f"{name}: {len(e.tokens)} tokens, windows of {lengths} tokens; mean |relevance| per token: "
              + ", ".join(f"{k} {v:.3g} ({n} tokens)" for k, (v, n) in means.items())
              + f"; last / another: {ratio:.2f}")
        if args.html:
            Explanations([e]).save_html(f"{args.html}_{name}.html")


if __name__ == "__main__":
    main()
