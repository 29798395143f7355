"""Explicit float64 LRP reference for a Hugging Face ``BertForSequenceClassification``.

This module is the arbiter for the single-backward (gradient × input) implementation: it
recomputes the forward pass in float64 from the model's weights and passes *relevance tensors*
down the network op by op, each rule written in relevance form as an explicit contribution matrix
("slow matrix form", as in zennit / Montavon et al. 2019). No autograd is used anywhere.

Rules (see ``../shared/design/lrp-rules.md``):

- output: R_logits = one-hot(target) ⊙ logits;
- linear z = Wx + b: ε-rule (Bach et al. 2015), the bias absorbs its share;
- GELU, tanh: identity rule (Achtibat et al. 2024, AttnLRP);
- residual add and embedding sum: proportional split (Montavon et al. 2019);
- LayerNorm with σ held constant (Ali et al. 2022): ε = 0 rule on the affine map;
- attention, mode ``"attnlrp"`` (Achtibat et al. 2024): uniform rule on the bilinear products
  P·V and Q·Kᵀ, first-order Taylor rule on the softmax;
- attention, mode ``"cp_lrp"`` (Ali et al. 2022): P constant, O = P·V linear in V.

Call::

    R_e, logits = explicit_lrp(model, input_ids, attention_mask, token_type_ids,
                               target, mode="attnlrp", eps=0.0)

``R_e`` [B, L, H] is the relevance at the embedding sum e = word + position + token type (the
input of the embedding LayerNorm); ``logits`` [B, C]. Both are float64.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification

MODES = ("attnlrp", "cp_lrp")


# ----------------------------------------------------------------------------------- helpers
def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """The project's single stabilizer z + ε·sign(z) with sign(0) = 1 (Bach et al. 2015)."""
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, with 0 where den == 0 (an exactly-zero activation carries no relevance)."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


# ------------------------------------------------------------------------------------- rules
def lrp_output(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Initial relevance R = one-hot(target) ⊙ logits (Bach et al. 2015): the explained score."""
    one_hot = torch.nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype)
    return one_hot * logits


def lrp_linear_eps(x: torch.Tensor, weight: torch.Tensor, z: torch.Tensor, r_z: torch.Tensor,
                   eps: float) -> torch.Tensor:
    """ε-rule for z = Wx + b (Bach et al. 2015; Montavon et al. 2019, Eq. 2.4 of the overview).

    R_x_i = Σ_j c_ji R_z_j / (z_j + ε·sign z_j) with the contribution matrix c_ji = x_i W_ji; the
    bias (and ε) absorb the rest. x: [..., I], weight: [J, I], z and r_z: [..., J].
    """
    contributions = torch.einsum("...i,ji->...ji", x, weight)
    return torch.einsum("...ji,...j->...i", contributions, safe_div(r_z, stabilize(z, eps)))


def lrp_identity(r_out: torch.Tensor) -> torch.Tensor:
    """Identity rule for elementwise activations (GELU, tanh): R_in = R_out (Achtibat et al. 2024,
    AttnLRP, Sec. 3.3.1: the rule for elementwise non-linearities of one input)."""
    return r_out


def lrp_add_proportional(terms: list[torch.Tensor], z: torch.Tensor,
                         r_z: torch.Tensor) -> list[torch.Tensor]:
    """Proportional split for z = Σ_k a_k (residual add, embedding sum): R_a_k = a_k / z ⊙ R_z
    (ε = 0 rule with identity weights; Montavon et al. 2019, Achtibat et al. 2024 Sec. 3.3.1)."""
    ratio = safe_div(r_z, z)
    return [a * ratio for a in terms]


def lrp_layer_norm(x: torch.Tensor, gamma: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor,
                   r_y: torch.Tensor) -> torch.Tensor:
    """LayerNorm y = γ⊙(x − μ)/σ + β with σ held constant (Ali et al. 2022, CP-LRP; Achtibat et
    al. 2024 use the same identity-on-1/σ treatment).

    With σ fixed, y = M x + β with M_hk = γ_h (δ_hk − 1/H) / σ; the ε = 0 rule gives
    R_x_k = Σ_h x_k M_hk R_y_h / y_h (β absorbs its share). x, y, r_y: [..., H]; sigma: [..., 1].
    """
    hidden = x.shape[-1]
    centering = torch.eye(hidden, dtype=x.dtype) - 1.0 / hidden            # [H(h), H(k)]
    matrix = gamma[:, None] * centering / sigma[..., None]                 # [..., H(h), H(k)]
    contributions = x[..., None, :] * matrix                                # c_hk = x_k M_hk
    return torch.einsum("...hk,...h->...k", contributions, safe_div(r_y, y))


def lrp_attention_value_product(p: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                                r_o: torch.Tensor, mode: str) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Relevance through O = P V (per head: O_id = Σ_j P_ij V_jd). p: [B, N, L, L]; v, o, r_o:
    [B, N, L, D]. Contributions c_ijd = P_ij V_jd, normalized by O_id.

    - "attnlrp" (Achtibat et al. 2024, Prop. 3.2, uniform rule for a bilinear product):
      R_P_ij = ½ Σ_d c_ijd R_O_id / O_id, R_V_jd = ½ Σ_i c_ijd R_O_id / O_id.
    - "cp_lrp" (Ali et al. 2022): P is a constant, O is linear in V:
      R_V_jd = Σ_i c_ijd R_O_id / O_id, and P gets nothing (returned as None).
    """
    contributions = torch.einsum("bnij,bnjd->bnijd", p, v)
    normalized = contributions * safe_div(r_o, o)[:, :, :, None, :]       # c_ijd R_O_id / O_id
    if mode == "cp_lrp":
        return None, normalized.sum(dim=2)
    return 0.5 * normalized.sum(dim=4), 0.5 * normalized.sum(dim=2)


def lrp_softmax_taylor(s: torch.Tensor, p: torch.Tensor, r_p: torch.Tensor,
                       key_valid: torch.Tensor) -> torch.Tensor:
    """First-order Taylor rule for P = softmax(S) over the last axis (Achtibat et al. 2024, AttnLRP,
    Prop. 3.1): R_S_ij = S_ij (R_P_ij − P_ij Σ_j' R_P_ij'). s is the unmasked score scale·QKᵀ;
    masked keys (key_valid False) get exactly 0. Shapes [B, N, L, L]; key_valid [B, 1, 1, L]."""
    r_s = s * (r_p - p * r_p.sum(dim=-1, keepdim=True))
    return torch.where(key_valid, r_s, torch.zeros_like(r_s))


def lrp_query_key_product(q: torch.Tensor, k: torch.Tensor, s: torch.Tensor, r_s: torch.Tensor,
                          scale: float, key_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform rule for the bilinear score S_ij = scale Σ_d Q_id K_jd (Achtibat et al. 2024,
    Prop. 3.2): contributions c_ijd = scale Q_id K_jd, normalized by S_ij;
    R_Q_id = ½ Σ_j c_ijd R_S_ij / S_ij, R_K_jd = ½ Σ_i c_ijd R_S_ij / S_ij, over unmasked j only
    (the additive mask is 0 there). q, k: [B, N, L, D]; s, r_s: [B, N, L, L]."""
    contributions = scale * torch.einsum("bnid,bnjd->bnijd", q, k)
    ratio = torch.where(key_valid, safe_div(r_s, s), torch.zeros_like(r_s))
    normalized = contributions * ratio[..., None]
    return 0.5 * normalized.sum(dim=3), 0.5 * normalized.sum(dim=2)


# ------------------------------------------------------------------------------ the network
def _params(hf_model: BertForSequenceClassification) -> dict[str, torch.Tensor]:
    """float64 copies of every parameter, keyed by the Hugging Face names."""
    return {name: t.detach().double().clone() for name, t in hf_model.state_dict().items()}


def _linear(p: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _layer_norm(p: dict, name: str, x: torch.Tensor, eps: float):
    mu = x.mean(dim=-1, keepdim=True)
    sigma = torch.sqrt(((x - mu) ** 2).mean(dim=-1, keepdim=True) + eps)
    y = p[f"{name}.weight"] * (x - mu) / sigma + p[f"{name}.bias"]
    return y, sigma


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, l, h = x.shape
    return x.view(b, l, heads, h // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, n, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, n * d)


def _check(hf_model, input_ids, mode, target) -> None:
    config = hf_model.config
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if config.hidden_act != "gelu":
        raise ValueError(f"only the erf GELU ('gelu') is supported, got hidden_act={config.hidden_act!r}")
    if getattr(config, "is_decoder", False):
        raise ValueError("only encoder (bidirectional) BERT is supported")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
    if int(target.min()) < 0 or int(target.max()) >= config.num_labels:
        raise ValueError(f"target must be in [0, {config.num_labels}), got {target.tolist()}")


@torch.no_grad()
def explicit_lrp(hf_model: BertForSequenceClassification, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None,
                 target: int | torch.Tensor = 0, mode: str = "attnlrp",
                 eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit layer-by-layer LRP of ``hf_model`` (eval-mode BertForSequenceClassification).

    input_ids, attention_mask (1 keep / 0 pad), token_type_ids: [B, L] (None → all ones / zeros);
    target: int or [B] class indices; mode: "attnlrp" or "cp_lrp"; eps: ε of the linear ε-rule.
    Returns (relevance at the embedding sum [B, L, H], logits [B, C]), both float64.
    """
    b, l = input_ids.shape
    target = torch.as_tensor(target, dtype=torch.long).expand(b).clone()
    _check(hf_model, input_ids, mode, target)
    config = hf_model.config
    p = _params(hf_model)
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads
    scale = head_dim ** -0.5
    ln_eps = config.layer_norm_eps
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    key_valid = (attention_mask != 0)[:, None, None, :]                        # [B, 1, 1, L]
    additive_mask = torch.zeros(key_valid.shape, dtype=torch.float64).masked_fill(
        ~key_valid, torch.finfo(torch.float64).min)

    # ---- forward, caching what the rules need
    position_ids = torch.arange(l)
    e = (p["bert.embeddings.word_embeddings.weight"][input_ids]
         + p["bert.embeddings.position_embeddings.weight"][position_ids][None]
         + p["bert.embeddings.token_type_embeddings.weight"][token_type_ids])
    h, sigma_emb = _layer_norm(p, "bert.embeddings.LayerNorm", e, ln_eps)
    embedding_out = h
    caches = []
    for i in range(config.num_hidden_layers):
        pre = f"bert.encoder.layer.{i}."
        c = {"h_in": h}
        for proj in ("query", "key", "value"):
            c[proj] = _split_heads(_linear(p, pre + "attention.self." + proj, h), heads)
        c["s"] = scale * c["query"] @ c["key"].transpose(-1, -2)
        c["p"] = torch.softmax(c["s"] + additive_mask, dim=-1)
        c["o"] = c["p"] @ c["value"]
        c["ctx"] = _merge_heads(c["o"])
        c["a"] = _linear(p, pre + "attention.output.dense", c["ctx"])
        c["r1"] = c["a"] + h
        c["h_att"], c["sigma1"] = _layer_norm(p, pre + "attention.output.LayerNorm", c["r1"], ln_eps)
        c["u"] = _linear(p, pre + "intermediate.dense", c["h_att"])
        c["g"] = torch.nn.functional.gelu(c["u"])
        c["f"] = _linear(p, pre + "output.dense", c["g"])
        c["r2"] = c["f"] + c["h_att"]
        h, c["sigma2"] = _layer_norm(p, pre + "output.LayerNorm", c["r2"], ln_eps)
        c["h_out"] = h
        caches.append(c)
    cls = h[:, 0]
    pooler_z = _linear(p, "bert.pooler.dense", cls)
    pooled = torch.tanh(pooler_z)
    logits = _linear(p, "classifier", pooled)

    # ---- relevance, passed down op by op
    r_logits = lrp_output(logits, target)
    r_pooled = lrp_linear_eps(pooled, p["classifier.weight"], logits, r_logits, eps)
    r_pooler_z = lrp_identity(r_pooled)
    r_cls = lrp_linear_eps(cls, p["bert.pooler.dense.weight"], pooler_z, r_pooler_z, eps)
    r_h = torch.zeros_like(h)
    r_h[:, 0] = r_cls
    for i in reversed(range(config.num_hidden_layers)):
        pre = f"bert.encoder.layer.{i}."
        c = caches[i]
        r_r2 = lrp_layer_norm(c["r2"], p[pre + "output.LayerNorm.weight"], c["sigma2"], c["h_out"], r_h)
        r_f, r_h_att = lrp_add_proportional([c["f"], c["h_att"]], c["r2"], r_r2)
        r_g = lrp_linear_eps(c["g"], p[pre + "output.dense.weight"], c["f"], r_f, eps)
        r_u = lrp_identity(r_g)
        r_h_att = r_h_att + lrp_linear_eps(c["h_att"], p[pre + "intermediate.dense.weight"], c["u"], r_u, eps)
        r_r1 = lrp_layer_norm(c["r1"], p[pre + "attention.output.LayerNorm.weight"], c["sigma1"],
                              c["h_att"], r_h_att)
        r_a, r_h_in = lrp_add_proportional([c["a"], c["h_in"]], c["r1"], r_r1)
        r_ctx = lrp_linear_eps(c["ctx"], p[pre + "attention.output.dense.weight"], c["a"], r_a, eps)
        r_o = _split_heads(r_ctx, heads)
        r_p, r_value = lrp_attention_value_product(c["p"], c["value"], c["o"], r_o, mode)
        r_proj = {"value": r_value}
        if mode == "attnlrp":
            r_s = lrp_softmax_taylor(c["s"], c["p"], r_p, key_valid)
            r_proj["query"], r_proj["key"] = lrp_query_key_product(c["query"], c["key"], c["s"], r_s,
                                                                   scale, key_valid)
        for proj, r in r_proj.items():
            name = pre + "attention.self." + proj
            z = _merge_heads(c[proj])
            r_h_in = r_h_in + lrp_linear_eps(c["h_in"], p[name + ".weight"], z, _merge_heads(r), eps)
        r_h = r_h_in
    r_e = lrp_layer_norm(e, p["bert.embeddings.LayerNorm.weight"], sigma_emb, embedding_out, r_h)
    return r_e, logits


# ------------------------------------------------------------------------- a test model
def make_random_bert(seed: int = 0, num_layers: int = 2, hidden: int = 32, heads: int = 4,
                     intermediate: int = 64, vocab: int = 50, num_labels: int = 3,
                     max_positions: int = 16, type_vocab: int = 2) -> BertForSequenceClassification:
    """A small eval-mode BertForSequenceClassification (float32) whose every parameter — biases and
    LayerNorm β included — is random and O(1)-scaled, so that no rule is tested on zeros."""
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=num_layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=max_positions, type_vocab_size=type_vocab,
                        num_labels=num_labels, hidden_act="gelu", hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attn_implementation="eager")
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("LayerNorm.weight"):
                param.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                param.copy_(0.1 * noise)
            elif "embeddings" in name:
                param.copy_(noise)
            else:
                param.copy_(noise / param.shape[-1] ** 0.5)
    return model
