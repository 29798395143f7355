"""Explicit float64 LRP for ModernBERT, EuroBERT, DeBERTa-v2/v3 and DeBERTa sequence classifiers.

Like :mod:`explicit_lrp` (whose rule functions it reuses) it recomputes the forward pass in float64
from the ``transformers`` model's weights and passes *relevance tensors* down op by op, every rule
written as an explicit contribution matrix; no autograd anywhere. The new rules:

- RMSNorm with 1/rms held constant (the ε = 0 rule of y = diag(γ/rms) x);
- gated MLP u = act(a) ⊙ b: uniform rule on the product (R_act = R_b = ½ R_u, Achtibat et al. 2024),
  identity on act, then the ε-rule of the linears that made a and b;
- rotary positions: the ε = 0 rule of the per-position rotation matrix R_t (a linear map);
- grouped K/V heads: the relevance of a shared head is the sum over the query heads that read it;
- sliding windows: the band is part of the (constant) mask;
- DeBERTa's scores S = scale·(c2c + c2p + p2c): proportional split of R_S over the three terms, the
  uniform rule on each bilinear term (½ to each factor); the relevance of the relative-position
  embeddings goes through their projection (ε-rule) and their LayerNorm (σ constant) to the table;
- mean pooling (and EuroBERT's "late" mean of per-token logits): the ε = 0 rule of the mean.

Call ``explicit_lrp_modern(hf_model, input_ids, attention_mask, target, mode, eps)`` →
``(R_e [B, L, H], R_positions [B], logits [B, C])``: relevance at the embedding sum (the token
embeddings for ModernBERT and EuroBERT), the relevance that reached the relative-position table
(zeros for families without one), and the logits; all float64. Padding is on the right.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from explicit_lrp import (lrp_add_proportional, lrp_attention_value_product, lrp_identity, lrp_layer_norm,
                          lrp_linear_eps, lrp_output, lrp_query_key_product, lrp_softmax_taylor, safe_div)

MODES = ("attnlrp", "cp_lrp")


# ------------------------------------------------------------------------------------ new rules
def lrp_linear_map(x: torch.Tensor, matrix: torch.Tensor, y: torch.Tensor, r_y: torch.Tensor) -> torch.Tensor:
    """ε = 0 rule of a bias-free linear map y_h = Σ_k M_hk x_k (rotary: M = R_t per position; RMSNorm:
    M = diag(γ/rms)): R_x_k = Σ_h x_k M_hk R_y_h / y_h. x, y, r_y [..., K]; matrix broadcastable to [..., H, K]."""
    contributions = x[..., None, :] * matrix
    return torch.einsum("...hk,...h->...k", contributions, safe_div(r_y, y))


def lrp_rms_norm(x, gamma, rms, y, r_y):
    """RMSNorm y = γ ⊙ x / rms with rms held constant: the ε = 0 rule of y = diag(γ/rms) x."""
    return lrp_linear_map(x, torch.diag_embed(gamma / rms), y, r_y)


def lrp_gated_product(r_u):
    """u = act(a) ⊙ b, uniform rule (Achtibat et al. 2024, Prop. 3.2): (R_act, R_b) = (½ R_u, ½ R_u)."""
    return 0.5 * r_u, 0.5 * r_u


def lrp_mean(terms, mask, mean, r_mean):
    """mean = Σ_t m_t x_t / Σ_t m_t (x_t: ``terms`` [B, L, K]): R_x_t = (m_t x_t / n) · R_mean / mean."""
    weights = mask[:, :, None] / mask.sum(dim=1)[:, None, None]
    return weights * terms * safe_div(r_mean, mean)[:, None, :]


def lrp_sum_groups(r, kv_heads: int):
    """Relevance of K/V heads read by several query heads [B, H, L, D]: the sum over the readers."""
    b, h, l, d = r.shape
    return r.view(b, kv_heads, h // kv_heads, l, d).sum(dim=2)


def lrp_relative_product(x, pos, onehot, term, r_term, scale, key_valid, transposed: bool):
    """Uniform rule for c2p_ij = Σ_d x_id pos_δ(i,j)d (``transposed``: p2c_ij = Σ_d x_jd pos_δ(i,j)d),
    ``term`` = scale·c2p: contributions c_ijd = scale x pos_δ normalized by ``term``. Returns
    (R_x [B, N, L, D], R_pos [B, N, R, D]). onehot [L, L, R] encodes δ."""
    gathered = torch.einsum("ijr,bnrd->bnijd", onehot, pos.expand(x.shape[0], -1, -1, -1))
    xs = x[:, :, None, :, :] if transposed else x[:, :, :, None, :]
    ratio = torch.where(key_valid, safe_div(r_term, term), torch.zeros_like(r_term))
    normalized = scale * xs * gathered * ratio[..., None]
    r_x = 0.5 * normalized.sum(dim=2 if transposed else 3)
    return r_x, 0.5 * torch.einsum("bnijd,ijr->bnrd", normalized, onehot)


# ------------------------------------------------------------------------------------ helpers
class Net:
    """float64 parameters of a transformers model by name, and the forward ops the rules need."""

    def __init__(self, hf_model):
        self.p = {name: t.detach().double().clone() for name, t in hf_model.state_dict().items()}
        self.config = hf_model.config

    def w(self, name):
        return self.p[f"{name}.weight"]

    def linear(self, name, x, rows=None, bias=None):
        """(W x + b, W) of the linear ``name`` (its ``rows`` only; ``bias`` the name of another bias)."""
        w, b = self.p[f"{name}.weight"], self.p.get(f"{name}.bias")
        if rows is not None:
            w, b = w[rows], None if b is None else b[rows]
        if bias is not None:
            b = self.p[bias]
        return x @ w.T + (0.0 if b is None else b), w

    def layer_norm(self, name, x, eps):
        mu = x.mean(dim=-1, keepdim=True)
        sigma = torch.sqrt(((x - mu) ** 2).mean(dim=-1, keepdim=True) + eps)
        return self.w(name) * (x - mu) / sigma + self.p.get(f"{name}.bias", 0.0), sigma

    def rms_norm(self, name, x, eps):
        rms = torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
        return self.w(name) * x / rms, rms


def split_heads(x, heads):
    b, l, h = x.shape
    return x.view(b, l, heads, h // heads).transpose(1, 2)


def merge_heads(x):
    b, n, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, n * d)


def rotation_matrices(length, dim, theta):
    """R_t [L, D, D]: (R_t x)_d = x_d cos θ_td + rotate_half(x)_d sin θ_td (transformers' default rope)."""
    # the angles in float32, as transformers computes them for every model dtype (they are the spec)
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    angles = torch.arange(length, dtype=torch.float)[:, None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    cos, sin = angles.cos().double(), angles.sin().double()
    half = dim // 2
    j = torch.zeros(dim, dim, dtype=torch.float64)
    j[torch.arange(half), torch.arange(half) + half] = -1.0
    j[torch.arange(half) + half, torch.arange(half)] = 1.0
    return torch.diag_embed(cos) + sin[:, :, None] * j


def keep_mask(attention_mask, window=None):
    """[B, 1, L, L] bool: keys that query i reads (a padded query row reads every unpadded key)."""
    key = attention_mask.bool()[:, None, None, :]
    if window is None:
        return key.expand(-1, -1, attention_mask.shape[1], -1)
    pos = torch.arange(attention_mask.shape[1])
    band = ((pos[:, None] - pos[None, :]).abs() <= window)[None, None]
    return key & (band | ~attention_mask.bool()[:, None, :, None])


def softmax_masked(s, keep):
    return torch.softmax(s.masked_fill(~keep, -torch.inf), dim=-1)


# ------------------------------------------------------------------ rotary / grouped attention
def attention_forward(net, h, projections, heads, kv_heads, rot, keep):
    """Self-attention of h with rotary (rot [L, D, D] or None) and grouped K/V; returns a cache."""
    c = {"h": h, "projections": projections, "heads": heads, "kv_heads": kv_heads, "rot": rot, "keep": keep}
    for key, (name, rows), n in zip(("q", "k", "v"), projections, (heads, kv_heads, kv_heads)):
        c[key + "_z"], c[key + "_w"] = net.linear(name, h, rows)
        c[key + "0"] = split_heads(c[key + "_z"], n)
    rotate = (lambda x: x) if rot is None else (lambda x: torch.einsum("lde,bnle->bnld", rot, x))
    c["q"], c["k_rot"] = rotate(c["q0"]), rotate(c["k0"])
    head_of = torch.arange(heads) // (heads // kv_heads)
    c["k"], c["v"] = c["k_rot"][:, head_of], c["v0"][:, head_of]
    c["scale"] = c["q"].shape[-1] ** -0.5
    c["s"] = c["scale"] * c["q"] @ c["k"].transpose(-1, -2)
    c["p"] = softmax_masked(c["s"], keep)
    c["o"] = c["p"] @ c["v"]
    c["ctx"] = merge_heads(c["o"])
    return c


def attention_backward(c, r_ctx, mode, eps):
    """Relevance at the attention input h from the relevance of its context."""
    r_o = split_heads(r_ctx, c["heads"])
    r_p, r_v = lrp_attention_value_product(c["p"], c["v"], c["o"], r_o, mode)
    r = {"v": lrp_sum_groups(r_v, c["kv_heads"])}
    if mode == "attnlrp":
        r_s = lrp_softmax_taylor(c["s"], c["p"], r_p, c["keep"])
        r_q, r_k = lrp_query_key_product(c["q"], c["k"], c["s"], r_s, c["scale"], c["keep"])
        r_k = lrp_sum_groups(r_k, c["kv_heads"])
        if c["rot"] is not None:  # back through the rotation, a linear map
            r_q = lrp_linear_map(c["q0"], c["rot"][None, None], c["q"], r_q)
            r_k = lrp_linear_map(c["k0"], c["rot"][None, None], c["k_rot"], r_k)
        r.update(q=r_q, k=r_k)
    r_h = torch.zeros_like(c["h"])
    for key, r_key in r.items():
        r_h = r_h + lrp_linear_eps(c["h"], c[key + "_w"], c[key + "_z"], merge_heads(r_key), eps)
    return r_h


def gated_forward(net, x, gate, up, act):
    """u = act(a) ⊙ b; ``gate`` and ``up``: (parameter name, rows or None) of the linears making a and b."""
    (a, w_a), (b, w_b) = net.linear(gate[0], x, gate[1]), net.linear(up[0], x, up[1])
    return {"x": x, "a": a, "b": b, "w_a": w_a, "w_b": w_b, "u": act(a) * b}


def gated_backward(c, r_u, eps):
    r_act, r_b = lrp_gated_product(r_u)
    r_a = lrp_identity(r_act)
    return lrp_linear_eps(c["x"], c["w_a"], c["a"], r_a, eps) + lrp_linear_eps(c["x"], c["w_b"], c["b"], r_b, eps)


def pool_backward(hidden, mask, pooling, r_pooled, pooled):
    """Relevance at the hidden states from the relevance of the first token or of the mean."""
    if pooling in ("cls", "bos"):
        r = torch.zeros_like(hidden)
        r[:, 0] = r_pooled
        return r
    return lrp_mean(hidden, mask.double(), pooled, r_pooled)


# ------------------------------------------------------------------------- pre-norm layers
def norm_with_rule(net, kind, name, x, eps):
    """(y, rule): a norm's output and its relevance rule R_y ↦ R_x (σ or rms held constant);
    ``name`` None: no norm (ModernBERT's first layer), the identity."""
    if name is None:
        return x, lambda r: r
    if kind == "rms":
        y, rms = net.rms_norm(name, x, eps)
        return y, lambda r: lrp_rms_norm(x, net.w(name), rms, y, r)
    y, sigma = net.layer_norm(name, x, eps)
    return y, lambda r: lrp_layer_norm(x, net.w(name), sigma, y, r)


def prenorm_forward(net, x, norms, attention, out_name, mlp, down_name):
    """x1 = x + Wo·attention(norm₁(x)), x_out = x1 + W_down·mlp(norm₂(x1)); returns the cache."""
    c = {"x_in": x}
    c["a_in"], c["attn_rule"] = norms[0](x)
    c["attn"] = attention(c["a_in"])
    c["a"], c["wo"] = net.linear(out_name, c["attn"]["ctx"])
    c["x1"] = x + c["a"]
    c["m"], c["mlp_rule"] = norms[1](c["x1"])
    c["mlp"] = mlp(c["m"])
    c["f"], c["wf"] = net.linear(down_name, c["mlp"]["u"])
    c["x_out"] = c["x1"] + c["f"]
    return c


def prenorm_backward(c, r_x, mode, eps):
    """Relevance at the layer input from the relevance at its output (residuals: proportional)."""
    r_x1, r_f = lrp_add_proportional([c["x1"], c["f"]], c["x_out"], r_x)
    r_m = gated_backward(c["mlp"], lrp_linear_eps(c["mlp"]["u"], c["wf"], c["f"], r_f, eps), eps)
    r_x1 = r_x1 + c["mlp_rule"](r_m)
    r_x, r_a = lrp_add_proportional([c["x_in"], c["a"]], c["x1"], r_x1)
    r_ain = attention_backward(c["attn"], lrp_linear_eps(c["attn"]["ctx"], c["wo"], c["a"], r_a, eps), mode, eps)
    return r_x + c["attn_rule"](r_ain)


# ------------------------------------------------------------------------------------ ModernBERT
def _modernbert_layout(cfg) -> tuple[list[str], dict[str, float]]:
    """(the kind of every layer, the rotary θ of each kind) from a transformers ModernBertConfig: transformers 5
    names them (``layer_types``, ``rope_parameters``); before, every ``global_attn_every_n_layers``-th layer
    (from 0) is global with ``global_rope_theta``, the others local with ``local_rope_theta``."""
    if getattr(cfg, "layer_types", None):
        return list(cfg.layer_types), {k: v["rope_theta"] for k, v in cfg.rope_parameters.items()}
    kinds = ["full_attention" if i % cfg.global_attn_every_n_layers == 0 else "sliding_attention"
             for i in range(cfg.num_hidden_layers)]
    return kinds, {"full_attention": cfg.global_rope_theta, "sliding_attention": cfg.local_rope_theta}


def _modernbert_layer(net, x, i, kind, ids, mask):
    cfg, pre = net.config, f"model.layers.{i}."
    hidden, inter, heads = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
    rot = rotation_matrices(ids.shape[1], hidden // heads, _modernbert_layout(cfg)[1][kind])
    keep = keep_mask(mask, cfg.local_attention // 2 if kind == "sliding_attention" else None)
    qkv = [(pre + "attn.Wqkv", slice(j * hidden, (j + 1) * hidden)) for j in range(3)]
    norms = (lambda h: norm_with_rule(net, "ln", None if i == 0 else pre + "attn_norm", h, cfg.norm_eps),
             lambda h: norm_with_rule(net, "ln", pre + "mlp_norm", h, cfg.norm_eps))
    wi = pre + "mlp.Wi"
    return prenorm_forward(net, x, norms, lambda h: attention_forward(net, h, qkv, heads, heads, rot, keep),
                           pre + "attn.Wo", lambda m: gated_forward(net, m, (wi, slice(0, inter)),
                                                                    (wi, slice(inter, 2 * inter)), F.gelu),
                           pre + "mlp.Wo")


def _modernbert(net, ids, mask, target, mode, eps):
    cfg = net.config
    e = net.w("model.embeddings.tok_embeddings")[ids]
    x, embedding_rule = norm_with_rule(net, "ln", "model.embeddings.norm", e, cfg.norm_eps)
    caches = []
    for i, kind in enumerate(_modernbert_layout(cfg)[0]):
        caches.append(_modernbert_layer(net, x, i, kind, ids, mask))
        x = caches[-1]["x_out"]
    hf, final_rule = norm_with_rule(net, "ln", "model.final_norm", x, cfg.norm_eps)
    pooled = hf[:, 0] if cfg.classifier_pooling == "cls" else (hf * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    d, w_d = net.linear("head.dense", pooled)
    n, head_rule = norm_with_rule(net, "ln", "head.norm", F.gelu(d), cfg.norm_eps)
    logits, w_c = net.linear("classifier", n)

    r_d = lrp_identity(head_rule(lrp_linear_eps(n, w_c, logits, lrp_output(logits, target), eps)))
    r_pooled = lrp_linear_eps(pooled, w_d, d, r_d, eps)
    r_x = final_rule(pool_backward(hf, mask, cfg.classifier_pooling, r_pooled, pooled))
    for c in reversed(caches):
        r_x = prenorm_backward(c, r_x, mode, eps)
    return embedding_rule(r_x), torch.zeros(ids.shape[0], dtype=torch.float64), logits


# ------------------------------------------------------------------------------------ EuroBERT
def _eurobert_head(net, hf, mask, pooling, target, eps):
    """Logits and the relevance at the final hidden states (bos / mean / late pooling)."""
    pooled = hf if pooling == "late" else (hf[:, 0] if pooling == "bos" else (hf * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
    d, w_d = net.linear("dense", pooled)
    g = F.gelu(d)
    z, w_c = net.linear("classifier", g)
    logits = (z * mask[..., None]).sum(1) / mask.sum(1, keepdim=True) if pooling == "late" else z
    r_logits = lrp_output(logits, target)
    r_z = lrp_mean(z, mask.double(), logits, r_logits) if pooling == "late" else r_logits
    r_pooled = lrp_linear_eps(pooled, w_d, d, lrp_identity(lrp_linear_eps(g, w_c, z, r_z, eps)), eps)
    return logits, (r_pooled if pooling == "late" else pool_backward(hf, mask, pooling, r_pooled, pooled))


def _eurobert_layer(net, x, i, rot, mask):
    cfg, pre = net.config, f"model.layers.{i}."
    projections = [(pre + f"self_attn.{n}_proj", None) for n in "qkv"]
    norms = (lambda h: norm_with_rule(net, "rms", pre + "input_layernorm", h, cfg.rms_norm_eps),
             lambda h: norm_with_rule(net, "rms", pre + "post_attention_layernorm", h, cfg.rms_norm_eps))
    attention = lambda h: attention_forward(net, h, projections, cfg.num_attention_heads, cfg.num_key_value_heads,  # noqa: E731
                                            rot, keep_mask(mask))
    mlp = lambda m: gated_forward(net, m, (pre + "mlp.gate_proj", None), (pre + "mlp.up_proj", None), F.silu)  # noqa: E731
    return prenorm_forward(net, x, norms, attention, pre + "self_attn.o_proj", mlp, pre + "mlp.down_proj")


def _eurobert(net, ids, mask, target, mode, eps):
    cfg = net.config
    rot = rotation_matrices(ids.shape[1], cfg.head_dim, cfg.rope_parameters["rope_theta"])
    x = net.w("model.embed_tokens")[ids]
    caches = []
    for i in range(cfg.num_hidden_layers):
        caches.append(_eurobert_layer(net, x, i, rot, mask))
        x = caches[-1]["x_out"]
    hf, final_rule = norm_with_rule(net, "rms", "model.norm", x, cfg.rms_norm_eps)
    logits, r_hf = _eurobert_head(net, hf, mask, cfg.classifier_pooling, target, eps)
    r_x = final_rule(r_hf)
    for c in reversed(caches):
        r_x = prenorm_backward(c, r_x, mode, eps)
    return r_x, torch.zeros(ids.shape[0], dtype=torch.float64), logits


# ------------------------------------------------------------------------------------ DeBERTa-v2
def _relative_onehot(cfg, length):
    """δ(i, j) as a one-hot [L, L, rows of the table] (transformers' own relative positions; DeBERTa
    (v1) reads the rows max_rel − span … max_rel + span − 1 with span = min(L, max_rel))."""
    buckets, max_rel = getattr(cfg, "position_buckets", -1), cfg.max_relative_positions
    if max_rel < 1:
        max_rel = cfg.max_position_embeddings
    dummy = torch.zeros(1, length, 1)
    if cfg.model_type == "deberta":
        from transformers.models.deberta.modeling_deberta import build_relative_position

        span = min(length, max_rel)
        rows = max_rel - span + (build_relative_position(dummy, dummy)[0] + span).clamp(0, 2 * span - 1)
        return F.one_hot(rows, 2 * max_rel).double()
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

    span = buckets if buckets > 0 else max_rel
    rel = build_relative_position(dummy, dummy, bucket_size=buckets, max_position=max_rel)[0]
    return F.one_hot((rel + span).clamp(0, 2 * span - 1), 2 * span).double()


def _deberta_projections(net, x, pre, cfg):
    """(name, rows, bias) of Q, K, V: three linears (v2), or DeBERTa's per-head interleaved in_proj rows
    with q_bias and v_bias (v1)."""
    if cfg.model_type != "deberta":
        return [(pre + n, None, None) for n in ("query_proj", "key_proj", "value_proj")]
    heads, dim = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    rows = torch.arange(3 * heads * dim).view(heads, 3, dim)
    biases = (pre + "q_bias", None, pre + "v_bias")
    return [(pre + "in_proj", rows[:, j].reshape(-1), biases[j]) for j in range(3)]


def _deberta_positions(net, c, pre, terms, cfg):
    """Forward of the projected position rows, per term: (z [1, R, H·D], weight, split [1, N, R, D])."""
    share = getattr(cfg, "share_att_key", False)
    names = {"c2p": "key_proj" if share else "pos_key_proj", "p2c": "query_proj" if share else "pos_query_proj"}
    if cfg.model_type == "deberta":
        names = {"c2p": "pos_proj", "p2c": "pos_q_proj"}
    out = {}
    for term in terms:
        z, w = net.linear(pre + "attention.self." + names[term], c["rel_y"])
        out[term] = (z, w, split_heads(z, cfg.num_attention_heads))
    return out


def _deberta_attention(net, x, rel, pre, cfg, keep, scale, terms):
    c = {"x": x, "rel_y": rel}
    for key, (name, rows, bias) in zip("qkv", _deberta_projections(net, x, pre + "attention.self.", cfg)):
        c[key + "_z"], c[key + "_w"] = net.linear(name, x, rows, bias)
        c[key] = split_heads(c[key + "_z"], cfg.num_attention_heads)
    c["pos"] = _deberta_positions(net, c, pre, terms, cfg)
    onehot = c["onehot"] = _relative_onehot(cfg, x.shape[1])
    c["t"] = {"c2c": scale * c["q"] @ c["k"].transpose(-1, -2)}
    if "c2p" in terms:
        c["t"]["c2p"] = scale * torch.einsum("bnid,nrd,ijr->bnij", c["q"], c["pos"]["c2p"][2][0], onehot)
    if "p2c" in terms:
        c["t"]["p2c"] = scale * torch.einsum("bnjd,nrd,ijr->bnij", c["k"], c["pos"]["p2c"][2][0], onehot)
    c["s"] = sum(c["t"].values())
    c["p"] = softmax_masked(c["s"], keep)
    c["o"] = c["p"] @ c["v"]
    c["ctx"], c["keep"], c["scale"] = merge_heads(c["o"]), keep, scale
    return c


def _deberta_attention_backward(c, r_ctx, mode, eps, heads):
    """(relevance at the layer input x, relevance at the normalized position rows [B, R, H])."""
    r_p, r_v = lrp_attention_value_product(c["p"], c["v"], c["o"], split_heads(r_ctx, heads), mode)
    r = {"v": r_v}
    r_rel = torch.zeros(r_ctx.shape[0], *c["rel_y"].shape[1:], dtype=torch.float64)
    if mode == "attnlrp":
        r_s = lrp_softmax_taylor(c["s"], c["p"], r_p, c["keep"])
        r_t = {name: t * safe_div(r_s, c["s"]) for name, t in c["t"].items()}  # proportional over the terms
        r["q"], r["k"] = lrp_query_key_product(c["q"], c["k"], c["t"]["c2c"], r_t["c2c"], c["scale"], c["keep"])
        for term, (x_key, transposed) in (("c2p", ("q", False)), ("p2c", ("k", True))):
            if term not in c["t"]:
                continue
            z, w, pos = c["pos"][term]
            r_x, r_pos = lrp_relative_product(c[x_key], pos, c["onehot"], c["t"][term], r_t[term], c["scale"],
                                              c["keep"], transposed)
            r[x_key] = r[x_key] + r_x
            rel_y = c["rel_y"].expand(r_ctx.shape[0], -1, -1)
            r_rel = r_rel + lrp_linear_eps(rel_y, w, z.expand_as(merge_heads(r_pos)), merge_heads(r_pos), eps)
    r_x = torch.zeros_like(c["x"])
    for key, r_key in r.items():
        r_x = r_x + lrp_linear_eps(c["x"], c[key + "_w"], c[key + "_z"], merge_heads(r_key), eps)
    return r_x, r_rel


def _deberta_embeddings(net, ids, mask, cfg):
    e = net.w("deberta.embeddings.word_embeddings")[ids]
    if getattr(cfg, "position_biased_input", True):
        e = e + net.w("deberta.embeddings.position_embeddings")[torch.arange(ids.shape[1])][None]
    if cfg.type_vocab_size > 0:
        e = e + net.w("deberta.embeddings.token_type_embeddings")[torch.zeros_like(ids)]
    return e


def _deberta(net, ids, mask, target, mode, eps):
    cfg = net.config
    ln_eps, heads = cfg.layer_norm_eps, cfg.num_attention_heads
    terms = [t for t in ("c2p", "p2c") if t in (cfg.pos_att_type or [])]
    scale = (cfg.hidden_size // heads * (1 + len(terms))) ** -0.5  # transformers counts them even without relative attention
    terms = terms if cfg.relative_attention else []
    e = _deberta_embeddings(net, ids, mask, cfg)
    h0, sigma0 = net.layer_norm("deberta.embeddings.LayerNorm", e, ln_eps)
    x = x0 = h0 * mask[..., None]
    table = net.w("deberta.encoder.rel_embeddings")[None]
    normed = "layer_norm" in (getattr(cfg, "norm_rel_ebd", None) or "none")
    rel, sigma_rel = net.layer_norm("deberta.encoder.LayerNorm", table, ln_eps) if normed else (table, None)
    keep, caches = keep_mask(mask), []
    for i in range(cfg.num_hidden_layers):
        pre, c = f"deberta.encoder.layer.{i}.", {"x_in": x}
        c["attn"] = _deberta_attention(net, x, rel, pre, cfg, keep, scale, terms)
        c["a"], c["wa"] = net.linear(pre + "attention.output.dense", c["attn"]["ctx"])
        c["r1"] = c["a"] + x
        c["x1"], c["sigma1"] = net.layer_norm(pre + "attention.output.LayerNorm", c["r1"], ln_eps)
        c["u"], c["wu"] = net.linear(pre + "intermediate.dense", c["x1"])
        c["g"] = F.gelu(c["u"])
        c["f"], c["wf"] = net.linear(pre + "output.dense", c["g"])
        c["r2"] = c["f"] + c["x1"]
        x, c["sigma2"] = net.layer_norm(pre + "output.LayerNorm", c["r2"], ln_eps)
        c["x_out"] = x
        caches.append(c)
    d, w_d = net.linear("pooler.dense", x[:, 0])
    g = F.gelu(d)
    logits, w_c = net.linear("classifier", g)

    r_d = lrp_identity(lrp_linear_eps(g, w_c, logits, lrp_output(logits, target), eps))
    r_x = torch.zeros_like(x)
    r_x[:, 0] = lrp_linear_eps(x[:, 0], w_d, d, r_d, eps)
    r_rel = torch.zeros(ids.shape[0], *rel.shape[1:], dtype=torch.float64)
    for i in reversed(range(len(caches))):
        c, pre = caches[i], f"deberta.encoder.layer.{i}."
        r_r2 = lrp_layer_norm(c["r2"], net.w(pre + "output.LayerNorm"), c["sigma2"], c["x_out"], r_x)
        r_f, r_x1 = lrp_add_proportional([c["f"], c["x1"]], c["r2"], r_r2)
        r_u = lrp_identity(lrp_linear_eps(c["g"], c["wf"], c["f"], r_f, eps))
        r_x1 = r_x1 + lrp_linear_eps(c["x1"], c["wu"], c["u"], r_u, eps)
        r_r1 = lrp_layer_norm(c["r1"], net.w(pre + "attention.output.LayerNorm"), c["sigma1"], c["x1"], r_x1)
        r_a, r_x = lrp_add_proportional([c["a"], c["x_in"]], c["r1"], r_r1)
        r_ctx = lrp_linear_eps(c["attn"]["ctx"], c["wa"], c["a"], r_a, eps)
        r_in, r_rel_layer = _deberta_attention_backward(c["attn"], r_ctx, mode, eps, heads)
        r_x, r_rel = r_x + r_in, r_rel + r_rel_layer
    r_h0 = h0 * mask[..., None] * safe_div(r_x, x0)  # × mask: the ε = 0 rule of a diagonal linear map
    r_e = lrp_layer_norm(e, net.w("deberta.embeddings.LayerNorm"), sigma0, h0, r_h0)
    if normed:
        batch = ids.shape[0]
        r_rel = lrp_layer_norm(table.expand(batch, -1, -1), net.w("deberta.encoder.LayerNorm"),
                               sigma_rel.expand(batch, -1, -1), rel.expand(batch, -1, -1), r_rel)
    return r_e, r_rel.sum(dim=(1, 2)), logits


_FAMILIES = {"modernbert": _modernbert, "eurobert": _eurobert, "deberta-v2": _deberta, "deberta": _deberta}


@torch.no_grad()
def explicit_lrp_modern(hf_model, input_ids, attention_mask=None, target=0, mode="attnlrp", eps=0.0):
    """Explicit LRP of a ModernBERT / EuroBERT / DeBERTa-v2 classifier (eval mode, right padding).

    Returns (relevance at the embedding sum [B, L, H], relevance of the relative-position table [B],
    logits [B, C]), float64."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    b = input_ids.shape[0]
    target = torch.as_tensor(target, dtype=torch.long).expand(b).clone()
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    family = _FAMILIES[hf_model.config.model_type]
    return family(Net(hf_model), input_ids, attention_mask.double(), target, mode, eps)
