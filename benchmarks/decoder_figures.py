"""Correctness figures of the decoder families, computed as ``tests/families/test_decoders.py`` computes
them (its models, batches and targets, imported, not copied) — for a closing note.

Per family: (1) logit parity, max |Δ| of our float32 logits vs transformers' over eager and sdpa
attention and right- and left-padded batches (Gemma 2: eager only, transformers has no sdpa for it);
(2) GI and GS vs plain autograd on the transformers model at the first block's input (left padding):
max |Δ| / max |reference|; (3) CP-LRP with every bias zeroed and ε = 0: max |Σ scores / logit − 1|;
(4) attnlrp and cp_lrp vs the explicit float64 LRP (``tests/explicit_lrp_decoder.py``; the families
it covers), ε = 0.1, both paddings: max |ours − explicit| / max |explicit|; (5) bf16 weights vs float32:
max |Δ logits| / max |logit| (ours, and transformers' own bf16 forward for comparison), AttnLRP
max |Δ score| / max |score| and the correlation of the scores.

    PYTHONPATH=. python benchmarks/decoder_figures.py [--families llama gpt2 ...]

It reports, it never asserts.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "families")]

import torch  # noqa: E402

import test_decoders as setup  # noqa: E402  (the tests' models, batches and targets)
from explicit_lrp_decoder import explicit_lrp_decoder  # noqa: E402
from lrp_kernels import attribute  # noqa: E402
from lrp_kernels.benchmarking import format_table  # noqa: E402
from lrp_kernels.models import from_hf  # noqa: E402
from model_factory import DECODERS, decoder_gradient, zero_biases  # noqa: E402

T = setup.TARGET


def parity(kind: str) -> float:
    worst = 0.0
    for attn in ("eager",) if kind == "gemma2" else ("eager", "sdpa"):
        hf = setup._hf(kind, attn_implementation=attn)
        for batch in setup.BATCHES.values():
            ids, mask = batch()
            with torch.no_grad():
                diff = from_hf(hf)(ids, mask) - hf(input_ids=ids, attention_mask=mask).logits
            worst = max(worst, diff.abs().max().item())
    return worst


def gradients(hf, ids, mask) -> tuple[float, float]:
    e, grad, _ = decoder_gradient(hf, ids, mask, T)
    errors = []
    for method, expected in (("grad_x_input", (e * grad).sum(-1)), ("gradient", grad.norm(dim=-1))):
        got = attribute(hf, ids, mask, method=method, target=T).scores
        expected = expected * mask
        errors.append(((got - expected).abs().max() / expected.abs().max()).item())
    return errors[0], errors[1]


#: the families the explicit float64 decoder LRP covers
EXPLICIT = ("llama", "mistral", "qwen2", "gemma2", "gpt2")


def explicit(hf) -> float:
    hf64, worst = copy.deepcopy(hf).double(), 0.0
    for method in ("attnlrp", "cp_lrp"):
        for batch in setup.BATCHES.values():
            ids, mask = batch()
            ours = attribute(hf64, ids, mask, method=method, target=T, eps=0.1, backend="torch").scores.double()
            expected = explicit_lrp_decoder(hf64, ids, mask, T, method, 0.1)[0].sum(-1) * mask
            worst = max(worst, ((ours - expected).abs().max() / expected.abs().max()).item())
    return worst


def bf16(hf, ids, mask) -> tuple[float, float, float, float]:
    reference = attribute(hf, ids, mask, method="attnlrp", target=T)
    half = copy.deepcopy(hf).to(torch.bfloat16)
    ours = attribute(half, ids, mask, method="attnlrp", target=T)
    with torch.no_grad():
        theirs = half(input_ids=ids, attention_mask=mask).logits.float()
    scale = reference.logits.abs().max()
    corr = torch.corrcoef(torch.stack([ours.scores.flatten(), reference.scores.flatten()]))[0, 1].item()
    return ((ours.logits - reference.logits).abs().max() / scale).item(), \
        ((theirs - reference.logits).abs().max() / scale).item(), \
        ((ours.scores - reference.scores).abs().max() / reference.scores.abs().max()).item(), corr


def row(kind: str) -> list[str]:
    hf = setup._hf(kind)
    ids, mask = setup._left()
    gi, gs = gradients(hf, ids, mask)
    conservation = attribute(zero_biases(hf), ids, mask, method="cp_lrp", eps=0.0, target=T).conservation
    expl = explicit(hf) if kind in EXPLICIT else None
    logits, hf_logits, scores, corr = bf16(hf, ids, mask)
    return [kind, f"{parity(kind):.1e}", f"{gi:.1e}", f"{gs:.1e}", f"{(conservation - 1).abs().max().item():.1e}",
            "—" if expl is None else f"{expl:.1e}", f"{logits:.1e}", f"{hf_logits:.1e}", f"{scores:.1e}", f"{corr:.4f}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    args = parser.parse_args(argv)
    headers = ["family", "parity |Δ|", "GI rel", "GS rel", "CP-LRP |cons−1|", "explicit f64 rel", "bf16 logits",
               "hf bf16 logits", "bf16 attnlrp", "bf16 corr"]
    print(format_table(headers, [row(kind) for kind in args.families]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
