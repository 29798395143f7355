"""Explicit float64 LRP reference for the Hugging Face sequence classifiers of every family.

This module is the arbiter for the single-backward (gradient × input) implementation: it
recomputes the forward pass in float64 from the model's weights and passes *relevance tensors*
down the network op by op, each rule written in relevance form as an explicit contribution matrix
("slow matrix form", as in zennit / Montavon et al. 2019). No autograd is used anywhere.

Rules (see ``docs/rules.md``):

- output: R_logits = one-hot(target) ⊙ logits;
- linear z = Wx + b: ε-rule (Bach et al. 2015), the bias absorbs its share;
- GELU, tanh, ReLU: identity rule (Achtibat et al. 2024, AttnLRP);
- residual add and embedding sum: proportional split (Montavon et al. 2019);
- LayerNorm with σ held constant (Ali et al. 2022): ε = 0 rule on the affine map;
- attention, mode ``"attnlrp"`` (Achtibat et al. 2024): uniform rule on the bilinear products
  P·V and Q·Kᵀ, first-order Taylor rule on the softmax;
- attention, mode ``"cp_lrp"`` (Ali et al. 2022): P constant, O = P·V linear in V.

The rules are the ``lrp_*`` functions; :class:`Network` runs a model's forward block by block
(linear, activation, norm, residual, self-attention, first token) and records per block how
relevance passes back; a family is one short function composing blocks under its parameter names
(:data:`FAMILIES`, keyed by ``model_type``).

Call::

    R_e, logits = explicit_lrp(model, input_ids, attention_mask, token_type_ids,
                               target, mode="attnlrp", eps=0.0)

``R_e`` [B, L, E] is the relevance at the embedding sum e = word + position (+ token type), the
input of the embedding LayerNorm (E = ``embedding_size`` for ELECTRA and ALBERT); ``logits`` [B, C].
Both are float64.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

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
_ACTIVATIONS = {
    "gelu": torch.nn.functional.gelu,
    "gelu_new": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "relu": torch.relu,
    "tanh": torch.tanh,
}


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, l, h = x.shape
    return x.view(b, l, heads, h // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, n, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, n * d)


class Network:
    """One float64 forward of a model's weights, block by block; every block records the function
    that passes relevance from its output back to its input, and :meth:`relevance` runs them in
    reverse. A residual block records its branch on a tape of its own (:meth:`residual`)."""

    def __init__(self, params: dict, heads: int, ln_eps: float, attention_mask: torch.Tensor, mode: str,
                 eps: float):
        self.p, self.heads, self.ln_eps, self.mode, self.eps = params, heads, ln_eps, mode, eps
        self.key_valid = (attention_mask != 0)[:, None, None, :]                    # [B, 1, 1, L]
        self.additive_mask = torch.zeros(self.key_valid.shape, dtype=torch.float64).masked_fill(
            ~self.key_valid, torch.finfo(torch.float64).min)
        self.backs = []

    def fork(self) -> "Network":
        """The same weights and mask, an empty tape."""
        other = copy.copy(self)
        other.backs = []
        return other

    def record(self, y: torch.Tensor, back) -> torch.Tensor:
        self.backs.append(back)
        return y

    def relevance(self, r: torch.Tensor) -> torch.Tensor:
        for back in reversed(self.backs):
            r = back(r)
        return r

    # ------------------------------------------------------------------ blocks
    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        z = self.linear_value(name, x)
        return self.record(z, lambda r: lrp_linear_eps(x, self.p[f"{name}.weight"], z, r, self.eps))

    def activation(self, fn: str, x: torch.Tensor) -> torch.Tensor:
        return self.record(_ACTIVATIONS[fn](x), lrp_identity)

    def layer_norm(self, name: str, x: torch.Tensor) -> torch.Tensor:
        y, sigma = self._layer_norm(name, x)
        return self.record(y, lambda r: lrp_layer_norm(x, self.p[f"{name}.weight"], sigma, y, r))

    def _layer_norm(self, name: str, x: torch.Tensor):
        mu = x.mean(dim=-1, keepdim=True)
        sigma = torch.sqrt(((x - mu) ** 2).mean(dim=-1, keepdim=True) + self.ln_eps)
        return self.p[f"{name}.weight"] * (x - mu) / sigma + self.p[f"{name}.bias"], sigma

    def first_token(self, h: torch.Tensor) -> torch.Tensor:
        def back(r):
            r_h = torch.zeros_like(h)
            r_h[:, 0] = r
            return r_h

        return self.record(h[:, 0], back)

    def residual(self, norm: str, x: torch.Tensor, branch) -> torch.Tensor:
        """``norm(branch(x) + x)``: relevance of the sum split proportionally between the branch
        (passed down its own tape) and the skip connection."""
        tape = self.fork()
        f = branch(tape, x)
        s = f + x
        y, sigma = self._layer_norm(norm, s)

        def back(r_y):
            r_s = lrp_layer_norm(s, self.p[f"{norm}.weight"], sigma, y, r_y)
            r_f, r_x = lrp_add_proportional([f, x], s, r_s)
            return r_x + tape.relevance(r_f)

        return self.record(y, back)

    def self_attention(self, names: tuple[str, str, str], x: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of x (before the output projection): Q, K, V by the ε-rule, P·V and
        Q·Kᵀ by :func:`lrp_attention_value_product` / :func:`lrp_softmax_taylor` /
        :func:`lrp_query_key_product`."""
        proj = {key: _split_heads(self.linear_value(name, x), self.heads) for key, name in zip("qkv", names)}
        scale = proj["q"].shape[-1] ** -0.5
        s = scale * proj["q"] @ proj["k"].transpose(-1, -2)
        probs = torch.softmax(s + self.additive_mask, dim=-1)
        o = probs @ proj["v"]

        def back(r_ctx):
            r_p, r_v = lrp_attention_value_product(probs, proj["v"], o, _split_heads(r_ctx, self.heads), self.mode)
            r_proj = {"v": r_v}
            if self.mode == "attnlrp":
                r_s = lrp_softmax_taylor(s, probs, r_p, self.key_valid)
                r_proj["q"], r_proj["k"] = lrp_query_key_product(proj["q"], proj["k"], s, r_s, scale, self.key_valid)
            r_x = torch.zeros_like(x)
            for key, name in zip("qkv", names):
                if key in r_proj:  # cp_lrp: Q and K get no relevance
                    z, r_z = _merge_heads(proj[key]), _merge_heads(r_proj[key])
                    r_x = r_x + lrp_linear_eps(x, self.p[f"{name}.weight"], z, r_z, self.eps)
            return r_x

        return self.record(_merge_heads(o), back)

    def linear_value(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """A linear's output without recording it (its rule is applied by the caller)."""
        return x @ self.p[f"{name}.weight"].T + self.p[f"{name}.bias"]

    def post_norm_layer(self, names: "LayerNames", prefix: str, act: str, x: torch.Tensor) -> torch.Tensor:
        """norm₁(out(attention(x)) + x), then norm₂(down(act(up(·))) + ·): one post-norm layer."""
        n = names.under(prefix)
        x = self.residual(n.attention_norm, x,
                          lambda t, h: t.linear(n.output, t.self_attention((n.query, n.key, n.value), h)))
        return self.residual(n.output_norm, x, lambda t, h: t.linear(n.down, t.activation(act, t.linear(n.up, h))))


@dataclass(frozen=True)
class LayerNames:
    """The parameter names of one post-norm layer's linears and norms (relative to the layer)."""

    query: str
    key: str
    value: str
    output: str
    attention_norm: str
    up: str
    down: str
    output_norm: str

    def under(self, prefix: str) -> "LayerNames":
        return LayerNames(*(prefix + getattr(self, f.name) for f in fields(self)))


BERT_LAYER = LayerNames("attention.self.query", "attention.self.key", "attention.self.value",
                        "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                        "output.dense", "output.LayerNorm")
DISTILBERT_LAYER = LayerNames("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                              "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm")
ALBERT_LAYER = LayerNames("attention.query", "attention.key", "attention.value", "attention.dense",
                          "attention.LayerNorm", "ffn", "ffn_output", "full_layer_layer_norm")


# ------------------------------------------------------------------------------ the families
def _embedding_sum(p: dict, prefix: str, input_ids, position_ids, token_type_ids) -> torch.Tensor:
    """word + position (+ token type, where the family has them), float64."""
    e = p[f"{prefix}.embeddings.word_embeddings.weight"][input_ids] + \
        p[f"{prefix}.embeddings.position_embeddings.weight"][position_ids]
    if f"{prefix}.embeddings.token_type_embeddings.weight" in p:
        e = e + p[f"{prefix}.embeddings.token_type_embeddings.weight"][token_type_ids]
    return e


def _roberta_positions(input_ids, pad: int) -> torch.Tensor:
    """transformers' ``create_position_ids_from_input_ids``: pad + 1, pad + 2, … over non-padding ids."""
    keep = (input_ids != pad).long()
    return torch.cumsum(keep, dim=1) * keep + pad


def _encoder(net: Network, h, config, prefix: str, names: LayerNames, act: str) -> torch.Tensor:
    for i in range(config.num_hidden_layers):
        h = net.post_norm_layer(names, f"{prefix}.{i}.", act, h)
    return h


def _bert_body(net, config, prefix, e):
    h = net.layer_norm(f"{prefix}.embeddings.LayerNorm", e)
    return net.first_token(_encoder(net, h, config, f"{prefix}.encoder.layer", BERT_LAYER, config.hidden_act))


def _bert(net, config, e):
    pooled = net.activation("tanh", net.linear("bert.pooler.dense", _bert_body(net, config, "bert", e)))
    return net.linear("classifier", pooled)


def _roberta(net, config, e):
    h = net.activation("tanh", net.linear("classifier.dense", _bert_body(net, config, "roberta", e)))
    return net.linear("classifier.out_proj", h)


def _distilbert(net, config, e):
    h = net.layer_norm("distilbert.embeddings.LayerNorm", e)
    h = _encoder(net, h, config, "distilbert.transformer.layer", DISTILBERT_LAYER, config.activation)
    h = net.activation("relu", net.linear("pre_classifier", net.first_token(h)))
    return net.linear("classifier", h)


def _electra(net, config, e):
    h = net.layer_norm("electra.embeddings.LayerNorm", e)
    if "electra.embeddings_project.weight" in net.p:
        h = net.linear("electra.embeddings_project", h)
    h = _encoder(net, h, config, "electra.encoder.layer", BERT_LAYER, config.hidden_act)
    h = net.activation("gelu", net.linear("classifier.dense", net.first_token(h)))
    return net.linear("classifier.out_proj", h)


def _albert(net, config, e):
    h = net.linear("albert.encoder.embedding_hidden_mapping_in", net.layer_norm("albert.embeddings.LayerNorm", e))
    groups, layers = config.num_hidden_groups, config.num_hidden_layers
    for i in range(layers):  # the same weights at every application of a group
        for j in range(config.inner_group_num):
            prefix = f"albert.encoder.albert_layer_groups.{int(i / (layers / groups))}.albert_layers.{j}."
            h = net.post_norm_layer(ALBERT_LAYER, prefix, config.hidden_act, h)
    pooled = net.activation("tanh", net.linear("albert.pooler", net.first_token(h)))
    return net.linear("classifier", pooled)


#: model_type -> (attribute of the encoder, RoBERTa-style positions, the network from the embedding sum)
FAMILIES = {
    "bert": ("bert", False, _bert),
    "roberta": ("roberta", True, _roberta),
    "xlm-roberta": ("roberta", True, _roberta),
    "camembert": ("roberta", True, _roberta),
    "distilbert": ("distilbert", False, _distilbert),
    "electra": ("electra", False, _electra),
    "albert": ("albert", False, _albert),
}


def _params(hf_model) -> dict[str, torch.Tensor]:
    """float64 copies of every parameter, keyed by the Hugging Face names."""
    return {name: t.detach().double().clone() for name, t in hf_model.state_dict().items()}


def _activation_name(config) -> str:
    return getattr(config, "hidden_act", None) or config.activation


def _check(hf_model, input_ids, mode, target) -> None:
    config = hf_model.config
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if config.model_type not in FAMILIES:
        raise ValueError(f"no explicit reference for model_type {config.model_type!r}; have {', '.join(FAMILIES)}")
    if _activation_name(config) not in ("gelu", "gelu_new", "relu"):
        raise ValueError("only the erf GELU ('gelu'), the tanh GELU ('gelu_new') and 'relu' are supported, "
                         f"got {_activation_name(config)!r}")
    if getattr(config, "is_decoder", False):
        raise ValueError("only encoder (bidirectional) models are supported")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
    if int(target.min()) < 0 or int(target.max()) >= config.num_labels:
        raise ValueError(f"target must be in [0, {config.num_labels}), got {target.tolist()}")


@torch.no_grad()
def explicit_lrp(hf_model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None, target: int | torch.Tensor = 0,
                 mode: str = "attnlrp", eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit layer-by-layer LRP of an eval-mode ``*ForSequenceClassification`` of a family in
    :data:`FAMILIES` (BERT, RoBERTa, XLM-R, CamemBERT, DistilBERT, ELECTRA, ALBERT).

    input_ids, attention_mask (1 keep / 0 pad), token_type_ids: [B, L] (None → all ones / zeros);
    target: int or [B] class indices; mode: "attnlrp" or "cp_lrp"; eps: ε of the linear ε-rule.
    Returns (relevance at the embedding sum [B, L, embedding width], logits [B, C]), both float64.
    """
    b, _ = input_ids.shape
    target = torch.as_tensor(target, dtype=torch.long).expand(b).clone()
    _check(hf_model, input_ids, mode, target)
    config = hf_model.config
    prefix, roberta_positions, network = FAMILIES[config.model_type]
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    positions = (_roberta_positions(input_ids, config.pad_token_id) if roberta_positions
                 else torch.arange(input_ids.shape[1]).expand_as(input_ids))
    p = _params(hf_model)
    e = _embedding_sum(p, prefix, input_ids, positions, token_type_ids)
    net = Network(p, config.num_attention_heads, getattr(config, "layer_norm_eps", 1e-12), attention_mask, mode, eps)
    logits = network(net, config, e)
    return net.relevance(lrp_output(logits, target)), logits


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
