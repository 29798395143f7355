"""Side by side with LXT on decoder classifiers: its efficient AttnLRP and ours, same weights, same input.

    python benchmarks/compare_peers_decoders.py --lxt-python ../lxt-venv/bin/python   # both halves
    python benchmarks/compare_peers_decoders.py --lxt-python PY --rule cp_lrp          # CP-LRP instead

LXT 2.1 patches ``transformers`` 4.52 (its README: "Tested with transformers==4.52.4") and does not
run under ``transformers`` 5, where lrp-kernels' tests live — so the comparison has two halves, run by
two interpreters and joined by a directory of checkpoints:

``lxt`` (run by ``--lxt-python``: lxt 2.1, transformers 4.52, torchvision for lxt's import)
    builds seeded random small ``*ForSequenceClassification`` models — Llama, Qwen3, Gemma 3 and, as
    extras, Qwen2 and GPT-2 (hidden 64, 3 layers, grouped K/V heads where the family has them,
    every bias on where it has them, norm weights perturbed, SDPA attention) — saves each with
    ``save_pretrained``, computes the plain gradient × input at ``inputs_embeds`` on the unpatched
    model, then calls ``lxt.efficient.monkey_patch(modeling_<family>)`` (the documented use;
    ``--rule cp_lrp``: its ``cp_LRP`` patch map) and saves LXT's relevance, documented recipe:
    ``inputs_embeds = model.get_input_embeddings()(ids)`` with ``requires_grad``, one backward of the
    target logits, relevance = (inputs_embeds ⊙ grad).sum(-1) — and the same product at every
    decoder layer's input and at the final norm's output (hooks on the hidden states), float32
    and float64. transformers 4.52 has no Gemma 3 text classifier: the script builds the one of
    transformers 5 (``Gemma3TextForSequenceClassification``: ``Gemma3TextModel`` + a bias-free
    ``score`` read at the rightmost non-pad token) under the same parameter names.
``ours`` (this interpreter: lrp-kernels, any transformers)
    loads every checkpoint with :func:`lrp_kernels.load_pretrained`, explains the same targets with
    :func:`lrp_kernels.attribute` (``layers=True``) and compares: logits with transformers 4.52's,
    grad_x_input with the plain gradient × input there (the read-out points agree), and the
    relevance with LXT's — cosine, Pearson and max |ours − LXT| / max |ours| over the real tokens,
    at the read-out point and at every block's input — at ε = 0 (LXT's linears take the plain
    gradient: the ε = 0 rule) and at our default ε = 1e-6.

Read-out points: LXT scores ``inputs_embeds``. For Llama and Qwen that is the first block's input
(ours); for Gemma 3 too: ``get_input_embeddings()`` is the scaled embedding (× √hidden), and the
model does not scale ``inputs_embeds`` again. GPT-2's ``inputs_embeds`` are the token embeddings
without the positions: LXT's documented score is compared with ours at ``read_at="word_embeddings"``
(the token term of the first block's input), and LXT's gradient × the first block's input with ours.

The batch: two rows of 16 tokens, the second left-padded by 5 (``pad_token_id`` 0, the attention
mask passed to both; transformers reads the last column under ``inputs_embeds``, which is the
rightmost real token of a left-padded row); target: the predicted class of each row. SDPA, not
eager: transformers 4.52's eager attention softmaxes in float32, where a float64 model's mask value
finfo(float64).min becomes −inf, so the fully masked query rows of the padding are NaN and 0·NaN
spreads through the row (the float32 relevance of eager and SDPA agree to 2e-6).
``--dir`` keeps the checkpoints and LXT's tensors (default: a temporary directory).

Diagnosis in float64 (the lines after each family's figures): LXT's relevance again (1) with its
identity rule exact — it saves act(x)/(x + 1e-10), ours act(x)/x —, (2) also with transformers'
RMSNorms computing in the model's dtype — they cast x to float32 whatever the model's dtype (LXT's
patched norm keeps that cast), ours does not under an LRP rule — and, for ``--rule cp_lrp``, (3) also
with LXT's AttnLRP gated MLP in place of its CP-LRP one (its ``cp_gated_mlp_forward`` holds the gate
act(x W_gate) constant; ours, as documented — "as AttnLRP, attention probabilities held constant" —
keeps AttnLRP's ½/½ split of the product). When the remaining figure is 0 against LXT's value rounded
to float32 (ours are float32), the two apply the same rule to every op.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

FAMILIES = ("llama", "qwen3", "gemma3", "qwen2", "gpt2")
RULES = ("attnlrp", "cp_lrp")
DIMS = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=8,
            num_key_value_heads=4, max_position_embeddings=64, num_labels=3, pad_token_id=0, initializer_range=0.1)
LENGTH, PADS = 16, 5
DTYPES = (torch.float32, torch.float64)


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ------------------------------------------------------------------------------------ the LXT half
def _config(transformers, family: str):
    """The transformers 4.52 config of ``family``'s random model (4.x names: rope_theta, rope_scaling)."""
    if family == "llama":
        rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16}
        return transformers.LlamaConfig(**DIMS, attention_bias=True, mlp_bias=True, rope_theta=500.0, rope_scaling=rope)
    if family == "qwen3":
        return transformers.Qwen3Config(**DIMS, head_dim=16, attention_bias=True, use_sliding_window=False)
    if family == "qwen2":
        return transformers.Qwen2Config(**DIMS, use_sliding_window=False)
    if family == "gemma3":  # layers 0 and 2 slide (4 tokens), layer 1 is global
        return transformers.Gemma3TextConfig(**DIMS, head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
                                             sliding_window_pattern=2, rope_theta=1000.0, rope_local_base_freq=100.0,
                                             rope_scaling={"rope_type": "linear", "factor": 2.0})
    names = dict(hidden_size="n_embd", num_hidden_layers="n_layer", num_attention_heads="n_head",
                 max_position_embeddings="n_positions", intermediate_size="n_inner")
    return transformers.GPT2Config(**{names.get(k, k): v for k, v in DIMS.items() if k != "num_key_value_heads"},
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def _gemma3_classifier_class():
    """transformers 5's ``Gemma3TextForSequenceClassification`` (``GenericForSequenceClassification``),
    rebuilt on transformers 4.52's ``Gemma3TextModel``: a bias-free ``score`` at the rightmost token
    that is not ``pad_token_id`` (the last column under ``inputs_embeds``)."""
    from transformers.modeling_outputs import SequenceClassifierOutputWithPast
    from transformers.models.gemma3 import modeling_gemma3 as m

    class Gemma3TextForSequenceClassification(m.Gemma3PreTrainedModel):
        config_class = m.Gemma3TextConfig
        base_model_prefix = "model"

        def __init__(self, config):
            super().__init__(config)
            self.model = m.Gemma3TextModel(config)
            self.score = torch.nn.Linear(config.hidden_size, config.num_labels, bias=False)
            self.post_init()

        def get_input_embeddings(self):
            return self.model.embed_tokens

        def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                use_cache=False, **kwargs).last_hidden_state
            logits = self.score(hidden)
            if input_ids is None:
                last = torch.full((logits.shape[0],), logits.shape[1] - 1, device=logits.device)
            else:
                columns = torch.arange(input_ids.shape[-1], device=logits.device, dtype=torch.int32)
                last = (columns * (input_ids != self.config.pad_token_id).to(torch.int32)).argmax(-1)
            return SequenceClassifierOutputWithPast(logits=logits[torch.arange(len(logits)), last])

    return Gemma3TextForSequenceClassification


def build_hf(family: str, seed: int = 0):
    """A seeded random ``family`` classifier of transformers 4.52, eval mode, SDPA attention; every bias
    and norm weight moved by 0.2·N(0, 1) (transformers initializes them to 0 and 1)."""
    import transformers

    torch.manual_seed(seed)
    config = _config(transformers, family)
    config._attn_implementation = "sdpa"  # eager softmaxes in float32: a float64 model's pad rows would be NaN
    if family == "gemma3":
        model = _gemma3_classifier_class()(config)
    else:
        model = getattr(transformers, {"llama": "Llama", "qwen3": "Qwen3", "qwen2": "Qwen2", "gpt2": "GPT2"}[family]
                        + "ForSequenceClassification")(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or ".ln_" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


def make_inputs(vocab: int, seed: int = 1):
    """Two rows of LENGTH ids in [3, vocab); the second left-padded by PADS (id 0, mask 0)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, LENGTH), generator=g)
    mask = torch.ones_like(ids)
    ids[1, :PADS], mask[1, :PADS] = 0, 0
    return ids, mask


def _layers_and_final_norm(model):
    base = model.transformer if hasattr(model, "transformer") else model.model
    return (base.h, base.ln_f) if hasattr(base, "h") else (base.layers, base.norm)


def lxt_relevance(model, ids, mask, target, dtype):
    """LXT's documented recipe (``inputs_embeds`` with grad, backward of the target logits, x ⊙ grad)
    and the same product at every decoder layer's input and the final norm's output: (logits,
    relevance at inputs_embeds [B, L], at the points [P, B, L], x ⊙ grad at the first block's input)."""
    model = model.to(dtype)
    layers, final_norm = _layers_and_final_norm(model)
    points = []

    def keep(t):
        t.retain_grad()
        points.append(t)

    hooks = [layer.register_forward_pre_hook(lambda _m, args, kwargs: keep(args[0] if args else kwargs["hidden_states"]),
                                             with_kwargs=True) for layer in layers]
    hooks.append(final_norm.register_forward_hook(lambda _m, _a, out: keep(out)))
    try:
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(inputs_embeds=embeds, attention_mask=mask).logits
            logits.gather(1, target[:, None]).sum().backward()
    finally:
        for h in hooks:
            h.remove()
    at = torch.stack([(t * t.grad).sum(-1) for t in points]).detach()
    return logits.detach(), (embeds * embeds.grad).sum(-1).detach(), at, at[0]


def plain_gradient_x_input(model, ids, mask, target):
    """x ⊙ ∂ logit / ∂x at ``inputs_embeds`` (and at the first block's input) on the unpatched model."""
    _, at_embeds, at_points, first = lxt_relevance(model, ids, mask, target, torch.float32)
    return at_embeds, first


def patch(family: str, rule: str):
    """``lxt.efficient.monkey_patch`` of the family's modeling module: LXT's default map (AttnLRP) or
    its ``cp_LRP`` map."""
    from lxt.efficient import monkey_patch
    from lxt.efficient import models as lxt_models

    module = {"llama": lxt_models.llama, "qwen3": lxt_models.qwen3, "qwen2": lxt_models.qwen2,
              "gemma3": lxt_models.gemma3, "gpt2": lxt_models.gpt2}[family]
    modeling = getattr(module, f"modeling_{family}")
    monkey_patch(modeling, patch_map=module.cp_LRP if rule == "cp_lrp" else None, verbose=False)


def lxt_half(directory: Path, family: str, rule: str) -> None:
    """Save ``family``'s checkpoint and LXT's tensors under ``directory / family``."""
    import lxt
    import transformers

    out = directory / family
    model = build_hf(family)
    model.save_pretrained(out, safe_serialization=True)
    ids, mask = make_inputs(model.config.vocab_size)
    saved = dict(input_ids=ids, attention_mask=mask)
    for dtype in DTYPES:  # transformers' own logits, before any patch
        with torch.no_grad():
            saved[f"{_name(dtype)}_hf_logits"] = model.to(dtype)(input_ids=ids, attention_mask=mask).logits
    saved["target"] = target = saved["float32_hf_logits"].argmax(-1)
    saved["hf_gi_embeds"], saved["hf_gi_first"] = plain_gradient_x_input(model, ids, mask, target)
    patch(family, rule)
    for dtype in DTYPES:
        logits, at_embeds, at_points, _ = lxt_relevance(model, ids, mask, target, dtype)
        saved.update({f"{_name(dtype)}_logits": logits, f"{_name(dtype)}_relevance": at_embeds,
                      f"{_name(dtype)}_points": at_points})
    with _identity_rule_exact():  # diagnosis, float64: LXT's identity rule without its 1e-10 shift
        saved["exact_relevance"] = lxt_relevance(model, ids, mask, target, torch.float64)[1]
        with _norms_in_model_dtype(family):  # ... and its RMSNorms without their float32 cast
            _, saved["exact64_relevance"], saved["exact64_points"], _ = lxt_relevance(model, ids, mask, target,
                                                                                      torch.float64)
            if rule == "cp_lrp" and family != "gpt2":  # ... and the gated MLP under LXT's AttnLRP rule
                with _gated_mlp_as_attnlrp(family):
                    saved["uniform_gate64_relevance"] = lxt_relevance(model, ids, mask, target, torch.float64)[1]
    torch.save(saved, out / f"lxt_{rule}.pt")
    print(f"# {family}: saved to {out} (lxt {getattr(lxt, '__version__', '2.1')}, transformers "
          f"{transformers.__version__}, torch {torch.__version__})", flush=True)


@contextlib.contextmanager
def _norms_in_model_dtype(family: str):
    """transformers' RMSNorms (and LXT's patched Llama/Qwen one) compute in float32 whatever the
    model's dtype; inside this block they keep it (same rule: 1/rms held constant). GPT-2's
    LayerNorm has no cast."""
    from lxt.efficient.rules import stop_gradient

    def rms(self, x):  # LXT's rms_norm_forward without .to(float32)
        return self.weight * (x * stop_gradient(torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)))

    def gemma(self, x):  # Gemma3RMSNorm.forward without x.float() (γ = 1 + w stays float32, as ours); _norm: LXT's
        return self._norm(x) * (1.0 + self.weight.float())

    name = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma3": "Gemma3"}.get(family)
    if name is None:
        yield
        return
    import transformers

    norm = getattr(getattr(transformers.models, family), f"modeling_{family}").__dict__[f"{name}RMSNorm"]
    original = norm.forward
    norm.forward = gemma if family == "gemma3" else rms
    try:
        yield
    finally:
        norm.forward = original


@contextlib.contextmanager
def _gated_mlp_as_attnlrp(family: str):
    """LXT's ``cp_LRP`` map holds the gate act(x W_gate) constant (``cp_gated_mlp_forward``: all of the
    product's relevance to the up projection); inside this block the MLP takes LXT's AttnLRP forward
    (``gated_mlp_forward``: identity rule on the activation, ½ to each factor of the product)."""
    import transformers
    from lxt.efficient.patches import gated_mlp_forward

    name = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma3": "Gemma3"}[family]
    mlp = getattr(getattr(transformers.models, family), f"modeling_{family}").__dict__[f"{name}MLP"]
    original = mlp.forward
    mlp.forward = gated_mlp_forward
    try:
        yield
    finally:
        mlp.forward = original


@contextlib.contextmanager
def _identity_rule_exact():
    """LXT's identity rule saves act(x) / (x + 1e-10) (``identity_rule_implicit_fn``'s default
    ``epsilon``); inside this block it saves act(x) / x, the rule exactly."""
    from lxt.efficient.rules import identity_rule_implicit_fn

    defaults = identity_rule_implicit_fn.forward.__defaults__
    identity_rule_implicit_fn.forward.__defaults__ = (0.0,)
    try:
        yield
    finally:
        identity_rule_implicit_fn.forward.__defaults__ = defaults


# ------------------------------------------------------------------------------------ our half
def agreement(ours: torch.Tensor, theirs: torch.Tensor, valid: torch.Tensor) -> dict:
    """Cosine, Pearson and max |ours − theirs| / max |ours| over the real tokens (float64)."""
    a, b = ours.double()[valid], theirs.double()[valid]
    cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    pearson = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    return dict(cos=cos, pearson=pearson, rel=float((a - b).abs().max() / a.abs().max()))


def _fmt(stats: dict) -> str:
    return f"cos {stats['cos']:.9f}  r {stats['pearson']:.9f}  max rel {stats['rel']:.2e}"


def ours_half(directory: Path, family: str, rule: str, backend: str) -> list[list[str]]:
    """Compare our attribution of ``directory / family`` with LXT's saved tensors: table rows per dtype
    and ε; the figures per point printed as they come."""
    from lrp_kernels import attribute, load_pretrained

    lxt = torch.load(directory / family / f"lxt_{rule}.pt", weights_only=True)
    ids, mask, target = lxt["input_ids"], lxt["attention_mask"], lxt["target"]
    valid = mask.bool()
    read = "word_embeddings" if family == "gpt2" else None  # LXT's inputs_embeds (see the docstring)
    rows = []
    for dtype in DTYPES:
        name = _name(dtype)
        model = load_pretrained(directory / family, dtype=dtype)

        def run(method, **kw):
            return attribute(model, ids, mask, method=method, target=target, backend=backend, **kw)

        logits = run("grad_x_input").logits
        logit_diff = float((logits.double() - lxt[f"{name}_hf_logits"].double()).abs().max())
        if dtype == torch.float32:
            gi = run("grad_x_input", read_at=read)
            print(f"# {family}: grad_x_input vs plain autograd on transformers 4.52 at LXT's inputs_embeds: "
                  f"{_fmt(agreement(gi.scores, lxt['hf_gi_embeds'], valid))}")
        for eps in (0.0, 1e-6):
            ours = run(rule, layers=True, read_at=read, eps=eps)
            theirs = lxt[f"{name}_relevance"]
            stats = agreement(ours.scores, theirs, valid)
            pads = float(max(ours.scores[~valid].abs().max(), theirs[~valid].abs().max()))
            rows.append([family, name, f"eps={eps:g}", f"{logit_diff:.1e}", f"{stats['cos']:.9f}",
                         f"{stats['pearson']:.9f}", f"{stats['rel']:.2e}", f"{pads:.0e}"])
            if eps == 0:
                _points(family, name, ours, lxt[f"{name}_points"], valid)
                if family == "gpt2":  # LXT's x ⊙ grad at the first block's input vs ours there
                    whole = run(rule, eps=eps)
                    print(f"#   gpt2 {name} at the first block's input (token + position): "
                          f"{_fmt(agreement(whole.scores, lxt[f'{name}_points'][0], valid))}")
                if dtype == torch.float64:
                    print(f"#   {family} float64, LXT's identity rule without its 1e-10 shift: "
                          f"{_fmt(agreement(ours.scores, lxt['exact_relevance'], valid))}")
                    exact = lxt["exact64_relevance"]
                    print(f"#   {family} float64, ... and transformers' RMSNorms without their float32 cast: "
                          f"{_fmt(agreement(ours.scores, exact, valid))}; vs that rounded to float32 as ours "
                          f"is: max rel {agreement(ours.scores, exact.float(), valid)['rel']:.2e}")
                    _points(family, name + " (no fp32 casts)", ours, lxt["exact64_points"], valid)
                    if "uniform_gate64_relevance" in lxt:
                        uniform = lxt["uniform_gate64_relevance"]
                        print(f"#   {family} float64, ... and LXT's cp_lrp with its AttnLRP gated-MLP rule (½ to "
                              f"each factor): {_fmt(agreement(ours.scores, uniform, valid))}; vs that rounded to "
                              f"float32: max rel {agreement(ours.scores, uniform.float(), valid)['rel']:.2e}")
    return rows


def _points(family, dtype_name, ours, theirs_points, valid):
    """Per-token agreement at every block's input and the final norm's output (ours: ``layers=True``)."""
    layers = ours.layers
    names = [p for p in layers.points if p.startswith("layer.")] + ["encoder_output"]
    for k, point in enumerate(names):
        mine = layers.relevance[:, layers.points.index(point)]
        keep = valid if point != "encoder_output" else mine.abs() > 0  # the head reads one token per row
        stats = agreement(mine, theirs_points[k], keep)
        total = float(mine[valid].sum()), float(theirs_points[k][valid].sum())
        print(f"#   {family} {dtype_name} {point:15s} {_fmt(stats)}   Σ ours {total[0]:+.6f}  Σ lxt {total[1]:+.6f}")


# ------------------------------------------------------------------------------------ driver
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=("both", "lxt", "ours"), default="both",
                        help="both (default: runs the lxt half with --lxt-python), or one half")
    parser.add_argument("--lxt-python", default=os.environ.get("LXT_PYTHON"),
                        help="the interpreter with lxt 2.1 and transformers 4.52 (or $LXT_PYTHON)")
    parser.add_argument("--dir", help="where the checkpoints and LXT's tensors go (default: a temporary directory)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--rule", choices=RULES, default="attnlrp")
    parser.add_argument("--backend", default="torch", help="our backend (default torch)")
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    if set(families) - set(FAMILIES):
        parser.error(f"unknown families {sorted(set(families) - set(FAMILIES))}; valid: {', '.join(FAMILIES)}")
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(args.dir or scratch)
        if args.half == "lxt":
            for family in families:
                lxt_half(directory, family, args.rule)
            return 0
        if args.half == "both":
            if not args.lxt_python:
                parser.error("--lxt-python (or $LXT_PYTHON) is needed to run the lxt half")
            for family in families:  # one process per family: LXT's patches stay in it
                subprocess.run([args.lxt_python, __file__, "--half", "lxt", "--dir", str(directory), "--families",
                                family, "--rule", args.rule], check=True)
        _report(directory, families, args)
    return 0


def _report(directory: Path, families, args) -> None:
    from lrp_kernels.benchmarking import format_table

    rows = []
    for family in families:
        rows += ours_half(directory, family, args.rule, args.backend)
    print(f"\n# {args.rule}: ours vs LXT 2.1 at LXT's read-out point (GPT-2: ours at word_embeddings), real tokens "
          f"of a 2 × {LENGTH} batch (row 2 left-padded by {PADS}); backend {args.backend}")
    print(format_table(["family", "dtype", "ours", "logits Δ vs tf 4.52", "cosine", "Pearson", "max rel diff",
                        "max |pad|"], rows))


if __name__ == "__main__":
    sys.exit(main())
