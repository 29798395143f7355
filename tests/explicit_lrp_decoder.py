"""Explicit float64 LRP for decoder sequence classifiers: Llama (and Mistral, Qwen2), Gemma 2, GPT-2.

Like :mod:`explicit_lrp` and :mod:`explicit_lrp_modern` (whose rule functions it reuses) it recomputes
the forward pass in float64 from the ``transformers`` model's weights and passes *relevance tensors*
down op by op, every rule written as an explicit contribution matrix; no autograd anywhere. Written
from the rule table of the decoders (``lrp-rules.md``):

- causal (and causal sliding-window) attention: the mask is a constant; a padded query row reads the
  keys j ≤ i of its band (it carries no relevance);
- soft-capped scores S' = c·tanh(S/c) (Gemma 2): the identity rule R_S = R_S', then the uniform rule on
  Q·Kᵀ;
- Gemma's RMSNorm γ = 1 + w (the RMSNorm rule with that γ), sandwich norms (a norm on each branch before
  its residual add), the embedding scale (a constant: the read-out point is after it);
- GPT-2: LayerNorm with β (σ constant, β absorbs), Conv1D weights ([in, out]: transposed here), biases,
  the MLP up → tanh GELU (identity rule) → down, learned positions (part of the read-out point e);
- last-token pooling: the selection of the hidden state at t_b, the rightmost non-pad token (the ε = 0
  rule of a selection: R goes to t_b only).

Call ``explicit_lrp_decoder(hf_model, input_ids, attention_mask, target, mode, eps)`` →
``(R_e [B, L, H], logits [B, C])``, float64, e the input of the first block (both paddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from explicit_lrp import (lrp_add_proportional, lrp_attention_value_product, lrp_identity, lrp_linear_eps,
                          lrp_output, lrp_query_key_product, lrp_softmax_taylor, safe_div)
from explicit_lrp_modern import lrp_linear_map, lrp_sum_groups, merge_heads, norm_with_rule, split_heads

MODES = ("attnlrp", "cp_lrp")


class DecoderNet:
    """float64 parameters by name (GPT-2's Conv1D weights transposed to [out, in]) and the config."""

    def __init__(self, hf_model):
        self.config = hf_model.config
        self.gpt2 = self.config.model_type == "gpt2"
        self.p = {}
        for name, t in hf_model.state_dict().items():
            t = t.detach().double().clone()
            if self.gpt2 and name.endswith("weight") and any(k in name for k in ("c_attn", "c_proj", "c_fc")):
                t = t.T.contiguous()
            self.p[name] = t
        self.base = hf_model.base_model
        self.prefix = "transformer." if self.gpt2 else "model."

    def w(self, name):
        return self.p[f"{name}.weight"]

    def linear(self, name, x, rows=None):
        w, b = self.p[f"{name}.weight"], self.p.get(f"{name}.bias")
        if rows is not None:
            w, b = w[rows], None if b is None else b[rows]
        return x @ w.T + (0.0 if b is None else b), w

    def layer_norm(self, name, x, eps):
        mu = x.mean(dim=-1, keepdim=True)
        sigma = torch.sqrt(((x - mu) ** 2).mean(dim=-1, keepdim=True) + eps)
        return self.w(name) * (x - mu) / sigma + self.p[f"{name}.bias"], sigma

    def rms_norm(self, name, x, eps):
        """RMSNorm; Gemma's weight is stored as the difference from 1 (γ = 1 + w)."""
        gamma = self.w(name) + (1.0 if self.config.model_type.startswith("gemma") else 0.0)
        rms = torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
        return gamma * x / rms, rms

    def norm(self, name, x):
        """(y, rule R_y ↦ R_x) of the norm ``name`` (σ or rms held constant)."""
        if self.gpt2:
            return norm_with_rule(self, "ln", name, x, self.config.layer_norm_epsilon)
        y, rms = self.rms_norm(name, x, self.config.rms_norm_eps)
        gamma = self.w(name) + (1.0 if self.config.model_type.startswith("gemma") else 0.0)
        return y, lambda r: lrp_linear_map(x, torch.diag_embed(gamma / rms), y, r)


# ---------------------------------------------------------------------------------------- masks, rotary
def causal_keep(mask, window=None):
    """[B, 1, L, L] bool: the keys query i reads — j ≤ i (and i − j ≤ window) among the unpadded keys;
    a padded query row reads every key j ≤ i of its band instead (no row is empty)."""
    length = mask.shape[1]
    pos = torch.arange(length)
    band = pos[:, None] >= pos[None, :]
    if window is not None:
        band &= (pos[:, None] - pos[None, :]) <= window
    key = mask.bool()[:, None, None, :]
    padded_row = ~mask.bool()[:, None, :, None]
    return band[None, None] & (key | padded_row)


def rotations(inv_freq, length):
    """R_t [L, D, D] from inverse frequencies (the transformers model's own buffer): the rotary map."""
    angles = torch.arange(length, dtype=torch.float)[:, None] * inv_freq.float()[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    cos, sin = angles.cos().double(), angles.sin().double()
    dim = cos.shape[-1]
    half = dim // 2
    j = torch.zeros(dim, dim, dtype=torch.float64)
    j[torch.arange(half), torch.arange(half) + half] = -1.0
    j[torch.arange(half) + half, torch.arange(half)] = 1.0
    return torch.diag_embed(cos) + sin[:, :, None] * j


# ---------------------------------------------------------------------------------------- attention
def attention_forward(net, h, projections, heads, kv_heads, rot, keep, scale, softcap):
    """Causal attention of h: projections (name, rows) for q, k, v; rotary R_t (or None); soft-cap."""
    c = {"h": h, "heads": heads, "kv_heads": kv_heads, "rot": rot, "keep": keep, "scale": scale}
    for key, (name, rows), n in zip("qkv", projections, (heads, kv_heads, kv_heads)):
        c[key + "_z"], c[key + "_w"] = net.linear(name, h, rows)
        c[key + "0"] = split_heads(c[key + "_z"], n)
    rotate = (lambda x: x) if rot is None else (lambda x: torch.einsum("lde,bnle->bnld", rot, x))
    c["q"], c["k_rot"] = rotate(c["q0"]), rotate(c["k0"])
    head_of = torch.arange(heads) // (heads // kv_heads)
    c["k"], c["v"] = c["k_rot"][:, head_of], c["v0"][:, head_of]
    c["s"] = scale * c["q"] @ c["k"].transpose(-1, -2)
    c["s_cap"] = c["s"] if softcap is None else softcap * torch.tanh(c["s"] / softcap)
    c["p"] = torch.softmax(c["s_cap"].masked_fill(~keep, -torch.inf), dim=-1)
    c["o"] = c["p"] @ c["v"]
    c["ctx"] = merge_heads(c["o"])
    return c


def attention_backward(c, r_ctx, mode, eps):
    """Relevance at the attention input h: P·V, the softmax, the cap (identity), Q·Kᵀ, the rotation,
    the shared K/V heads, the projections."""
    r_p, r_v = lrp_attention_value_product(c["p"], c["v"], c["o"], split_heads(r_ctx, c["heads"]), mode)
    r = {"v": lrp_sum_groups(r_v, c["kv_heads"])}
    if mode == "attnlrp":
        r_cap = lrp_softmax_taylor(c["s_cap"], c["p"], r_p, c["keep"])
        r_s = lrp_identity(r_cap)  # the soft-cap: an element-wise monotone map
        r_q, r_k = lrp_query_key_product(c["q"], c["k"], c["s"], r_s, c["scale"], c["keep"])
        r_k = lrp_sum_groups(r_k, c["kv_heads"])
        if c["rot"] is not None:
            r_q = lrp_linear_map(c["q0"], c["rot"][None, None], c["q"], r_q)
            r_k = lrp_linear_map(c["k0"], c["rot"][None, None], c["k_rot"], r_k)
        r.update(q=r_q, k=r_k)
    r_h = torch.zeros_like(c["h"])
    for key, r_key in r.items():
        r_h = r_h + lrp_linear_eps(c["h"], c[key + "_w"], c[key + "_z"], merge_heads(r_key), eps)
    return r_h


# ---------------------------------------------------------------------------------------- layers
def _branch(net, x, norm_in, body, norm_out):
    """y = x + norm_out(body(norm_in(x))) (norm_out None: no sandwich norm); returns (y, backward)."""
    h, rule_in = net.norm(norm_in, x)
    out, body_back = body(h)
    f, rule_out = (out, lambda r: r) if norm_out is None else net.norm(norm_out, out)
    y = x + f

    def back(r_y):
        r_x, r_f = lrp_add_proportional([x, f], y, r_y)
        return r_x + rule_in(body_back(rule_out(r_f)))

    return y, back


def _layer_kinds(cfg) -> list[str]:
    """Full or sliding attention per layer of a transformers config: ``layer_types`` (transformers 4.53+);
    before, as the 4.x modeling files chose: Gemma 2's even layers, Qwen2's from ``max_window_layers`` on
    with ``use_sliding_window``, every layer when ``sliding_window`` is set for Mistral and Phi-3 (which
    ignore ``layer_types`` in every release)."""
    n, window = cfg.num_hidden_layers, getattr(cfg, "sliding_window", None)
    if cfg.model_type in ("mistral", "phi3"):
        return ["full_attention" if window is None else "sliding_attention"] * n
    if getattr(cfg, "layer_types", None):
        return list(cfg.layer_types)
    if cfg.model_type == "gemma2":
        return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
    if cfg.model_type == "qwen2" and getattr(cfg, "use_sliding_window", False) and window is not None:
        return ["sliding_attention" if i >= cfg.max_window_layers else "full_attention" for i in range(n)]
    return ["full_attention"] * n


def _attention_body(net, pre, i, mask, mode, eps):
    cfg = net.config
    if net.gpt2:
        hidden, heads = cfg.n_embd, cfg.n_head
        qkv = [(pre + "attn.c_attn", slice(j * hidden, (j + 1) * hidden)) for j in range(3)]
        rot, kv, window, softcap = None, heads, None, None
        scale = (hidden // heads) ** -0.5
        out_name = pre + "attn.c_proj"
    else:
        heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
        qkv = [(pre + f"self_attn.{n}_proj", None) for n in "qkv"]
        kind = _layer_kinds(cfg)[i]
        window = cfg.sliding_window - 1 if kind == "sliding_attention" and cfg.sliding_window else None
        rotary = net.base.rotary_emb
        inv_freq = getattr(rotary, f"{kind}_inv_freq", None) if hasattr(rotary, f"{kind}_inv_freq") else rotary.inv_freq
        rot = rotations(inv_freq, mask.shape[1])
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        scale = (getattr(cfg, "query_pre_attn_scalar", None) or head_dim) ** -0.5
        softcap = getattr(cfg, "attn_logit_softcapping", None) if cfg.model_type == "gemma2" else None
        out_name = pre + "self_attn.o_proj"
    keep = causal_keep(mask, window)

    def body(h):
        c = attention_forward(net, h, qkv, heads, kv, rot, keep, scale, softcap)
        a, w_o = net.linear(out_name, c["ctx"])
        return a, lambda r_a: attention_backward(c, lrp_linear_eps(c["ctx"], w_o, a, r_a, eps), mode, eps)

    return body


def _mlp_body(net, pre, eps):
    def gated(h):
        (a, w_a), (b, w_b) = net.linear(pre + "mlp.gate_proj", h), net.linear(pre + "mlp.up_proj", h)
        act = F.gelu(a, approximate="tanh") if net.config.model_type.startswith("gemma") else F.silu(a)
        u = act * b
        d, w_d = net.linear(pre + "mlp.down_proj", u)

        def back(r_d):
            r_u = lrp_linear_eps(u, w_d, d, r_d, eps)
            r_act, r_b = 0.5 * r_u, 0.5 * r_u  # uniform rule on the product, identity on the activation
            return lrp_linear_eps(h, w_a, a, lrp_identity(r_act), eps) + lrp_linear_eps(h, w_b, b, r_b, eps)

        return d, back

    def plain(h):  # GPT-2: c_fc → tanh GELU → c_proj
        (a, w_a) = net.linear(pre + "mlp.c_fc", h)
        g = F.gelu(a, approximate="tanh")
        d, w_d = net.linear(pre + "mlp.c_proj", g)
        return d, lambda r_d: lrp_linear_eps(h, w_a, a, lrp_identity(lrp_linear_eps(g, w_d, d, r_d, eps)), eps)

    return plain if net.gpt2 else gated


def _layer(net, x, i, mask, mode, eps):
    if net.gpt2:
        pre = f"transformer.h.{i}."
        norms = (pre + "ln_1", None, pre + "ln_2", None)
    else:
        pre = f"model.layers.{i}."
        sandwich = net.config.model_type.startswith("gemma")
        norms = ((pre + "input_layernorm", pre + "post_attention_layernorm", pre + "pre_feedforward_layernorm",
                  pre + "post_feedforward_layernorm") if sandwich else
                 (pre + "input_layernorm", None, pre + "post_attention_layernorm", None))
    x1, back_attn = _branch(net, x, norms[0], _attention_body(net, pre, i, mask, mode, eps), norms[1])
    x2, back_mlp = _branch(net, x1, norms[2], _mlp_body(net, pre, eps), norms[3])
    return x2, lambda r: back_attn(back_mlp(r))


def _read_index(ids, pad):
    positions = torch.arange(ids.shape[1])
    return (positions * (ids != pad)).argmax(-1)


@torch.no_grad()
def explicit_lrp_decoder(hf_model, input_ids, attention_mask=None, target=0, mode="attnlrp", eps=0.0):
    """Explicit LRP of a Llama / Mistral / Qwen2 / Gemma 2 / GPT-2 sequence classifier (eval mode, any
    padding). Returns (relevance at the first block's input [B, L, H], logits [B, C]), float64."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    net = DecoderNet(hf_model)
    cfg = net.config
    batch, length = input_ids.shape
    target = torch.as_tensor(target, dtype=torch.long).expand(batch).clone()
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    if net.gpt2:
        x = net.w("transformer.wte")[input_ids] + net.w("transformer.wpe")[torch.arange(length)][None]
    else:
        x = net.w("model.embed_tokens")[input_ids]
        if cfg.model_type.startswith("gemma"):  # × √hidden as transformers rounds it (float32 here)
            x = x * torch.tensor(cfg.hidden_size ** 0.5, dtype=torch.float32).double()
    backs = []
    for i in range(cfg.num_hidden_layers):
        x, back = _layer(net, x, i, mask, mode, eps)
        backs.append(back)
    hf, final_rule = net.norm(net.prefix + ("ln_f" if net.gpt2 else "norm"), x)
    rows, index = torch.arange(batch), _read_index(input_ids, cfg.pad_token_id)
    pooled = hf[rows, index]
    logits, w_s = net.linear("score", pooled)
    r_hf = torch.zeros_like(hf)
    r_hf[rows, index] = lrp_linear_eps(pooled, w_s, logits, lrp_output(logits, target), eps)
    r = final_rule(r_hf)
    for back in reversed(backs):
        r = back(r)
    return r, logits


__all__ = ["causal_keep", "explicit_lrp_decoder", "safe_div"]
