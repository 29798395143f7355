"""A long IMDb-like document explained end to end in overlapping windows.

    python benchmarks/long_document.py [--model DIR] [--sentences 60] [--stride 128] [--out long_document/]

The document is the first ``--sentences`` SST-2 dev sentences joined (the copy inside the package), far
longer than the model's 512 positions. It is explained with ``stride`` (windows of the model's
length sharing that many tokens), ``target="all"`` and ``layers=True``; the script prints the
number of windows, the document's prediction (the mean of its windows' logits), the total relevance
against the explained logit, and writes ``document.html`` and ``document.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from lrp_kernels import Explainer
from lrp_kernels.data import bundled_sst2_dir

SST2 = bundled_sst2_dir() / "dev.tsv"  # GLUE's SST-2 dev set, shipped in the package


def main() -> None:
    from layer_table import default_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--sentences", type=int, default=60)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--method", default="attnlrp")
    parser.add_argument("--out", default="long_document")
    args = parser.parse_args()
    path, what = (args.model, args.model) if args.model else default_model()
    rows = SST2.read_text(encoding="utf-8").splitlines()[1 : 1 + args.sentences]
    document = " ".join(row.split("\t")[0].strip() for row in rows)
    explainer = Explainer.from_pretrained(path, method=args.method, num_labels=2)
    start = time.perf_counter()
    result = explainer.explain(document, stride=args.stride, target="all", layers=True, merge_subwords=True)
    seconds = time.perf_counter() - start
    e = result[0]
    out = Path(args.out)
    result.save_html(out / "document.html", title="a long document in windows")
    result.save_png(out / "document.png", width=14.0)
    print(f"model: {what}; {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"{len(document)} characters, {len(e.tokens) - 2} words, "
          f"{e.windows} windows of {explainer.encoder.max_length} tokens sharing {args.stride}; {seconds:.1f} s")
    print(f"predicted {e.label_name} (p = {e.probability:.3f}); Σ relevance {e.total:.4f} of the explained logit "
          f"{e.target_logit:.4f} (conservation {e.conservation:.4f})")
    print(f"wrote {out / 'document.html'} and {out / 'document.png'}")


if __name__ == "__main__":
    main()
