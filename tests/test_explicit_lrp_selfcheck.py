"""Self-checks of the explicit float64 LRP reference (tests/explicit_lrp.py).

The reference is checked against (a) exact conservation where the rules conserve and (b) an
independent gradient × input computation: the Hugging Face model itself, in float64, with its
linears, LayerNorms, activations and attention replaced by autograd Functions whose backward
returns the modified gradient g of docs/rules.md, relevance = e ⊙ g at the
embedding sum e (Arras et al. 2025, the gradient × input form of LRP).
"""

import copy

import pytest
import torch
from torch import nn
try:  # the attention and mask registries of recent transformers (the self-check swaps attention through them)
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
except ImportError as exc:
    pytest.skip(f"this transformers has no attention registry to swap through: {exc}", allow_module_level=True)

from explicit_lrp import explicit_lrp, make_random_bert, safe_div, stabilize
from model_factory import zero_biases


# ---------------------------------------------------------------- independent g-form backward
class _EpsLinear(torch.autograd.Function):
    """z = Wx + b; backward g_x = Wᵀ(g_z ⊙ z / stab(z)) (ε-rule, Bach et al. 2015)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        z = nn.functional.linear(x, weight, bias)
        ctx.save_for_backward(weight, z)
        ctx.eps = eps
        return z

    @staticmethod
    def backward(ctx, g_z):
        weight, z = ctx.saved_tensors
        return (g_z * safe_div(z, stabilize(z, ctx.eps))) @ weight, None, None, None


class _ConstSigmaLayerNorm(torch.autograd.Function):
    """LayerNorm; backward g_x = (γ⊙g_y − mean(γ⊙g_y))/σ with σ from the forward (Ali et al. 2022)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, ln_eps):
        mu = x.mean(-1, keepdim=True)
        sigma = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + ln_eps)
        ctx.save_for_backward(gamma, sigma)
        return gamma * (x - mu) / sigma + beta

    @staticmethod
    def backward(ctx, g_y):
        gamma, sigma = ctx.saved_tensors
        scaled = gamma * g_y
        return (scaled - scaled.mean(-1, keepdim=True)) / sigma, None, None, None


class _IdentityRuleAct(torch.autograd.Function):
    """y = f(x); backward g_x = g_y ⊙ f(x)/x (identity rule, Achtibat et al. 2024)."""

    @staticmethod
    def forward(ctx, x, fn):
        y = fn(x)
        ctx.save_for_backward(safe_div(y, x))
        return y

    @staticmethod
    def backward(ctx, g_y):
        (ratio,) = ctx.saved_tensors
        return g_y * ratio, None


class _HalfGrad(torch.autograd.Function):
    """Identity forward, gradient × ½ (the uniform rule on a bilinear product, Achtibat et al. 2024)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return 0.5 * g


class _GLinear(nn.Module):
    def __init__(self, linear: nn.Linear, eps: float):
        super().__init__()
        self.linear, self.eps = linear, eps

    def forward(self, x):
        return _EpsLinear.apply(x, self.linear.weight, self.linear.bias, self.eps)


class _GLayerNorm(nn.Module):
    def __init__(self, ln: nn.LayerNorm):
        super().__init__()
        self.ln = ln

    def forward(self, x):
        return _ConstSigmaLayerNorm.apply(x, self.ln.weight, self.ln.bias, self.ln.eps)


class _GAct(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return _IdentityRuleAct.apply(x, self.fn)


def _gform_attention(mode):
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if mode == "attnlrp":
            query, key = _HalfGrad.apply(query), _HalfGrad.apply(key)
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = torch.softmax(scores, dim=-1)
        probs = _HalfGrad.apply(probs) if mode == "attnlrp" else probs.detach()
        value = _HalfGrad.apply(value) if mode == "attnlrp" else value
        return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs

    return attention


for _mode in ("attnlrp", "cp_lrp"):
    AttentionInterface.register(f"lrp_gform_{_mode}", _gform_attention(_mode))
    AttentionMaskInterface.register(f"lrp_gform_{_mode}", ALL_MASK_ATTENTION_FUNCTIONS["eager"])


def gform_lrp(hf_model, input_ids, attention_mask, token_type_ids, target, mode, eps):
    """Relevance at the embedding sum as e ⊙ g, g from one autograd backward of the patched model."""
    model = copy.deepcopy(hf_model).double().eval()
    for param in model.parameters():
        param.requires_grad_(False)
    model.config._attn_implementation = f"lrp_gform_{mode}"
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, _GLinear(child, eps))
            elif isinstance(child, nn.LayerNorm):
                setattr(parent, name, _GLayerNorm(child))
    for layer in model.bert.encoder.layer:
        layer.intermediate.intermediate_act_fn = _GAct(nn.functional.gelu)
    model.bert.pooler.activation = _GAct(torch.tanh)
    captured = {}

    def make_leaf(module, args):
        captured["e"] = args[0].detach().requires_grad_(True)
        return (captured["e"],)

    model.bert.embeddings.LayerNorm.register_forward_pre_hook(make_leaf)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
    seed = nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype)
    (g_e,) = torch.autograd.grad(logits, captured["e"], grad_outputs=seed)
    return captured["e"].detach() * g_e, logits.detach()


# ------------------------------------------------------------------------------------ inputs
def padded_batch(vocab=50, lengths=(9, 5), seed=1):
    """Two examples of different lengths; the shorter is right-padded (mask 0, id 0); token types
    switch to 1 in the second half of each example (sentence-pair style)."""
    generator = torch.Generator().manual_seed(seed)
    l = max(lengths)
    input_ids = torch.randint(1, vocab, (len(lengths), l), generator=generator)
    attention_mask = torch.zeros(len(lengths), l, dtype=torch.long)
    token_type_ids = torch.zeros(len(lengths), l, dtype=torch.long)
    for b, n in enumerate(lengths):
        attention_mask[b, :n] = 1
        input_ids[b, n:] = 0
        token_type_ids[b, n // 2:n] = 1
    return input_ids, attention_mask, token_type_ids


CONFIGS = [  # (layers, hidden, heads, intermediate): the task's default and an odd-sized one
    dict(num_layers=2, hidden=32, heads=4, intermediate=64),
    dict(num_layers=3, hidden=20, heads=5, intermediate=36),
]


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("config", CONFIGS)
def test_logits_match_hugging_face(config):
    model = make_random_bert(seed=0, **config)
    input_ids, attention_mask, token_type_ids = padded_batch()
    _, logits = explicit_lrp(model, input_ids, attention_mask, token_type_ids, 0, "attnlrp", 0.0)
    with torch.no_grad():
        expected = copy.deepcopy(model).double()(input_ids=input_ids, attention_mask=attention_mask,
                                                 token_type_ids=token_type_ids).logits
    # float64 forward of the same weights, same op order except the embedding sum: 1e-12.
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("lengths", [(9, 5), (7,), (6, 6)])
def test_cp_lrp_conserves_exactly_without_biases(config, lengths):
    model = zero_biases(make_random_bert(seed=2, **config))
    input_ids, attention_mask, token_type_ids = padded_batch(lengths=lengths)
    target = torch.arange(len(lengths)) % 3
    r_e, logits = explicit_lrp(model, input_ids, attention_mask, token_type_ids, target, "cp_lrp", 0.0)
    target_logit = logits.gather(1, target[:, None])[:, 0]
    # every cp_lrp rule conserves when ε = 0 and no bias takes a share: float64 rounding only.
    torch.testing.assert_close(r_e.sum(dim=(1, 2)), target_logit, rtol=1e-10, atol=0.0)


def test_biases_and_softmax_rule_break_conservation():
    """The same conservation check is not trivially true: biases (cp_lrp) and the softmax rule's
    dropped Taylor remainder (attnlrp, bias-free) both move Σ R_e away from the logit."""
    model = make_random_bert(seed=2)
    input_ids, attention_mask, token_type_ids = padded_batch()
    target = torch.tensor([0, 1])
    for m, mode in ((model, "cp_lrp"), (zero_biases(model), "attnlrp")):
        r_e, logits = explicit_lrp(m, input_ids, attention_mask, token_type_ids, target, mode, 0.0)
        gap = (r_e.sum(dim=(1, 2)) - logits.gather(1, target[:, None])[:, 0]).abs()
        assert (gap > 1e-6 * logits.abs().max()).all(), (mode, gap)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("mode", ["attnlrp", "cp_lrp"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_explicit_equals_gradient_times_input(config, mode, eps):
    model = make_random_bert(seed=3, **config)
    input_ids, attention_mask, token_type_ids = padded_batch()
    target = torch.tensor([2, 1])
    r_explicit, logits = explicit_lrp(model, input_ids, attention_mask, token_type_ids, target, mode, eps)
    r_gform, logits_gform = gform_lrp(model, input_ids, attention_mask, token_type_ids, target, mode, eps)
    # two float64 evaluations of the same products in a different order: rounding ~1e-15, 1e-8 rel.
    scale = r_gform.abs().max()
    torch.testing.assert_close(r_explicit, r_gform, rtol=1e-8, atol=1e-8 * scale)
    torch.testing.assert_close(logits, logits_gform, rtol=1e-12, atol=1e-12)
    assert r_explicit.abs().sum() > 0


@pytest.mark.parametrize("mode", ["attnlrp", "cp_lrp"])
def test_padded_positions_get_exactly_zero(mode):
    model = make_random_bert(seed=4)
    input_ids, attention_mask, token_type_ids = padded_batch(lengths=(9, 4))
    r_e, _ = explicit_lrp(model, input_ids, attention_mask, token_type_ids, 1, mode, 0.0)
    pad = attention_mask == 0
    assert torch.equal(r_e[pad], torch.zeros_like(r_e[pad]))
    assert (r_e[~pad].abs().sum(-1) > 0).all()


def test_padding_does_not_change_relevance():
    """A padded example gets the relevance it gets alone (the mask removes padding exactly)."""
    model = make_random_bert(seed=5)
    input_ids, attention_mask, token_type_ids = padded_batch(lengths=(9, 5))
    r_batch, _ = explicit_lrp(model, input_ids, attention_mask, token_type_ids, 0, "attnlrp", 0.0)
    r_alone, _ = explicit_lrp(model, input_ids[1:, :5], attention_mask[1:, :5], token_type_ids[1:, :5],
                              0, "attnlrp", 0.0)
    # masked keys add exp(finfo.min) = 0 to the softmax sums; only summation order differs.
    torch.testing.assert_close(r_batch[1:, :5], r_alone, rtol=1e-10, atol=1e-12)


def test_bad_mode_and_activation_are_rejected():
    model = make_random_bert(seed=0)
    input_ids, attention_mask, token_type_ids = padded_batch()
    with pytest.raises(ValueError, match="mode must be one of"):
        explicit_lrp(model, input_ids, attention_mask, token_type_ids, 0, "lrp_epsilon", 0.0)
    with pytest.raises(ValueError, match="target must be in"):
        explicit_lrp(model, input_ids, attention_mask, token_type_ids, 3, "cp_lrp", 0.0)
    model.config.hidden_act = "silu"
    with pytest.raises(ValueError, match="only the erf GELU"):
        explicit_lrp(model, input_ids, attention_mask, token_type_ids, 0, "cp_lrp", 0.0)
