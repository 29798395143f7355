"""The shared block layer the model families are built from.

:class:`Pass` is what one forward needs besides the weights — the rule set, the resolved backend,
the masks — and applies the right op (plain or LRP rule) for every linear, norm, activation and
attention; a family's forward calls only these. The functions below compose them into the blocks
several families share (multi-head self-attention, the post-norm residual, the feed-forward), and
the modules are the Hugging Face-named containers of the BERT-style families (BERT, RoBERTa,
XLM-R, CamemBERT, ELECTRA): their parameter names are exactly what ``transformers`` saves.

Taps: a family calls ``p.tap(name, x)`` at the points a method may read relevance from
(``embedding_output`` after the embedding norm — a family without one taps its token embeddings
there —, ``layer.<i>`` at the input of block i); the pass keeps the tensors that were asked for, so
that one backward yields the gradient at each of them.

Position relevance: relevance that leaves the tokens for an input shared by the whole batch (DeBERTa's
relative-position embeddings) is collected when the tap :data:`POSITIONS` is asked for:
``p.positions(x, share)`` hands the op a per-example view of x and records ``share``, such that the
relevance of example b is ``Σ share ⊙ g_b`` (g the gradient at the view; see :func:`input_share`).

Ledger (relevance per layer): with a :class:`Ledger`, ``tap`` also records ``layer.<i>`` and
``encoder_output`` as the points between stages, and every linear, norm, activation and attention
records its inputs and output, each input as its own view (so that its gradient is the part that
flowed through this op alone). Σ output·g − Σ input·g of an op is what its rule absorbs (biases
and ε, the norm's β, the softmax rule); the accounting itself is in :mod:`lrp_kernels.layer_relevance`.
Without a ledger nothing changes (the GELU stays fused into its linear).
The gated MLP is recorded as one op of kind ``bias`` under the LRP rules (its product and
activation rules are conservative; its two linears' biases and ε are what it absorbs); under the
plain rules as its linears, its activation and the product act(a)·b, an ``activation`` op that
absorbs −R (x·g counts a product's relevance in both factors). DeBERTa's disentangled attention
is recorded as ``softmax``, which then also holds the relevance that leaves for the relative
positions (reported separately as ``position_relevance``); ops whose output does not require grad
(the position table's) are not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import functools

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from lrp_kernels.backends.contract import Backend
from lrp_kernels.models.config import ModelConfig
from lrp_kernels.ops._backend import or_reference
from lrp_kernels.ops.activation import lrp_activation
from lrp_kernels.ops.attention import (additive_mask, apply_rotary, dense_mask, lrp_attention, repeat_kv,
                                       lrp_disentangled_attention, relative_scores)
from lrp_kernels.ops.gated_mlp import lrp_gated_mlp
from lrp_kernels.ops.layer_norm import lrp_layer_norm
from lrp_kernels.ops.linear import FUSED_ACTIVATIONS, lrp_linear
from lrp_kernels.ops.rms_norm import lrp_rms_norm
from lrp_kernels.rules import GRADIENT, Rules

#: the tap that asks a pass to collect position relevance (:meth:`Pass.positions`)
POSITIONS = "position_relevance"

_PLAIN_ACT = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
    "relu": torch.relu,
    "silu": F.silu,
}


class RMSNorm(nn.Module):
    """``weight · x/rms(x)`` (Llama / EuroBERT: statistics in float32, cast back, then scaled); with an
    ``offset`` (Gemma: 1) ``(offset + weight) · x/rms(x)``, all in float32 and cast back once, the
    weight stored as the difference from ``offset`` (initialized to 0)."""

    def __init__(self, size: int, eps: float = 1e-6, offset: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size) if offset else torch.ones(size))
        self.eps, self.offset = eps, offset

    def gain(self) -> torch.Tensor:
        """γ of ``γ · x/rms(x)``: the weight, or ``offset + weight`` in float32."""
        return self.weight if not self.offset else self.weight.float() + self.offset

    def forward(self, x):
        xf = x.float()
        normalized = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (normalized * self.gain()).to(x.dtype)
        return self.weight * normalized.to(x.dtype)


class Conv1D(nn.Module):
    """GPT-2's linear layer: ``x @ weight + bias`` with ``weight`` stored [in, out] (transformers'
    ``pytorch_utils.Conv1D``, the names it saves). The pass reads it as a linear through
    :func:`linear_params` (a transposed view, no copy)."""

    def __init__(self, n_out: int, n_in: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))


def linear_params(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight [out, in], bias) of an ``nn.Linear`` or a :class:`Conv1D`."""
    if isinstance(layer, Conv1D):
        return layer.weight.t(), layer.bias
    return layer.weight, layer.bias


@dataclass
class Ledger:
    """What one forward records for relevance per layer: the points (name, tensor) in forward order
    and the ops ``(stage, kind, inputs, output)``; an op's stage is the index of the last point
    recorded before it. Point names: ``layer.<i>`` and ``encoder_output`` (``POINTS``)."""

    POINTS = ("layer.", "encoder_output")

    points: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    #: the op kinds recorded (None: every kind, and the points); a partial ledger (``{"softmax"}``: the
    #: account of :func:`lrp_kernels.attribute`) records those ops alone and no points
    kinds: frozenset | None = None

    def op(self, kind: str, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        self.ops.append((len(self.points) - 1, kind, inputs, output))
        return output

    def records(self, kind: str | None = None) -> bool:
        """Whether ops of ``kind`` are recorded (None: whether the points are, i.e. the full ledger)."""
        return self.kinds is None or (kind is not None and kind in self.kinds)


@dataclass
class Pass:
    """One forward pass: rules, backend, masks, and what it records (attention maps, taps)."""

    rules: Rules
    backend: Backend | None  # the resolved backend of the LRP ops (None: the torch reference)
    mask: torch.Tensor | None  # additive float32 [B, L], for the LRP attention op
    plain_mask: torch.Tensor | None  # additive [B, 1, 1, L] in the model dtype, for the plain path
    token_mask: torch.Tensor | None = None  # the 0/1 attention mask [B, L] (pooling, DeBERTa's embeddings)
    record_attentions: bool = False
    tap_names: frozenset = frozenset()
    attentions: list = field(default_factory=list)
    tapped: dict[str, torch.Tensor] = field(default_factory=dict)
    #: (per-example view, share) of every shared input whose relevance is reported (:meth:`positions`)
    position_terms: list = field(default_factory=list)
    _window_masks: dict = field(default_factory=dict)
    ledger: Ledger | None = None
    #: [B] int64, the position whose hidden state the head reads per example, where that depends on
    #: the ids (decoders: :meth:`~lrp_kernels.models.base.EncoderClassifier.read_index`); else None
    read_index: torch.Tensor | None = None
    #: [M] int64, the row of each position of ``read_index`` [M] when a decoder head reads M (row,
    #: position) pairs (several per row); None: one per row, row b at ``read_index[b]``
    read_rows: torch.Tensor | None = None
    #: whether the backward of this pass can be vmapped (``is_grads_batched``): False once an op ran
    #: through an autograd Function of ``lrp_kernels.ops`` (they have no vmap rule)
    vmappable: bool = True
    #: recompute each layer's forward during the backward (:meth:`layer`)
    checkpoint: bool = False

    @classmethod
    def create(cls, like: torch.Tensor, attention_mask=None, rules: Rules = GRADIENT, backend: Backend | None = None,
               output_attentions: bool = False, taps=(), ledger: Ledger | None = None,
               read_index: torch.Tensor | None = None, read_rows: torch.Tensor | None = None,
               checkpoint: bool = False) -> "Pass":
        """A pass over a batch like ``like`` ([B, L, …], the model dtype) with a 0/1 ``attention_mask``
        (and the head's ``read_index``, with ``read_rows`` when it reads several positions per row);
        ``checkpoint``: see :meth:`layer`."""
        if output_attentions and not rules.is_plain:
            raise ValueError("output_attentions needs the plain gradient rules")
        if checkpoint and ledger is not None:
            raise ValueError("checkpoint does not combine with a ledger (relevance per layer)")
        if backend is not None and not isinstance(backend, Backend):
            raise TypeError(f"backend must be a resolved lrp_kernels.backends.Backend, got {type(backend).__name__}")
        plain_mask = None
        if attention_mask is not None:
            plain_mask = torch.zeros(attention_mask.shape, dtype=like.dtype, device=like.device)
            plain_mask = plain_mask.masked_fill(~attention_mask.bool(), torch.finfo(like.dtype).min)[:, None, None, :]
        mask = None if rules.is_plain else additive_mask(attention_mask)
        return cls(rules, backend, mask, plain_mask, attention_mask, output_attentions, frozenset(taps), ledger=ledger,
                   read_index=read_index, read_rows=read_rows, checkpoint=checkpoint)

    @property
    def batch_size(self) -> int | None:
        return None if self.token_mask is None else self.token_mask.shape[0]

    def layer(self, module: nn.Module, x: torch.Tensor, *args) -> torch.Tensor:
        """``module(x, self, *args)``: one block of the model. With ``checkpoint`` (and grad enabled)
        its forward runs again during the backward (``torch.utils.checkpoint``, non-reentrant): the
        pass keeps the block's input instead of every activation inside it. The recomputation runs the
        same kernels on the same inputs, so the gradients are the same."""
        if self.checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(module, x, self, *args, use_reentrant=False)
        return module(x, self, *args)

    def tap(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Keep ``x`` under ``name`` when it was asked for (and as a ledger point); return it unchanged."""
        if name in self.tap_names:
            self.tapped[name] = x
        if self.ledger is not None and self.ledger.records() and name.startswith(Ledger.POINTS):
            self.ledger.points.append((name, x))
        return x

    def _records(self, kind: str) -> bool:
        return self.ledger is not None and self.ledger.records(kind)

    def _own(self, x: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """With a ledger that records ops of ``kind`` (None: the full ledger), a view of ``x`` whose
        gradient is what flows through one op; else ``x``."""
        return x.view_as(x) if self.ledger is not None and self.ledger.records(kind) else x

    def _record(self, kind: str, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        """With a ledger that records ``kind``, record the op (one whose output does not depend on the
        input — DeBERTa's position rows — carries none of its relevance and is left out); return ``output``."""
        if not self._records(kind) or not output.requires_grad:
            return output
        return self.ledger.op(kind, inputs, output)

    def positions(self, x: torch.Tensor, share) -> torch.Tensor:
        """``x`` [1, …], an input shared by the batch, as the op should read it: when position relevance
        is asked for (the tap :data:`POSITIONS`), a per-example view that requires grad, recorded with
        ``share`` (a callable giving the factor of its gradient, called only then); else ``x``."""
        if POSITIONS not in self.tap_names or self.batch_size is None:
            return x
        view = x.detach().expand(self.batch_size, *x.shape[1:]).requires_grad_(True)
        self.position_terms.append((view, share()))
        return view

    def linear(self, x, layer: nn.Linear, activation: str | None = None, ratio_by_consumer: bool = False):
        """``activation(layer(x))``: the ε-rule (fused with a GELU's identity rule) or the plain op.
        ``ratio_by_consumer``: the op that reads the output applies this linear's ε-ratio in its
        backward (:meth:`attention_input_eps`), so the linear itself is plain."""
        eps = None if ratio_by_consumer else self.rules.linear_eps
        weight, bias = linear_params(layer)
        if (eps is not None and activation in FUSED_ACTIVATIONS and self.rules.activation == "identity"
                and not (self._records("bias") or self._records("activation"))):
            return lrp_linear(x, weight, bias, eps, activation, self.backend)
        x = self._own(x, "bias")
        if eps is None:
            z = F.linear(x, weight, bias)
        else:
            z = lrp_linear(x, weight, bias, eps, None, self.backend)
        z = self._record("bias", (x,), z)
        return z if activation is None else self.activation(z, activation)

    def activation(self, x, fn: str):
        x = self._own(x, "activation")
        if self.rules.activation == "identity":
            return self._record("activation", (x,), lrp_activation(x, fn, self.backend))
        return self._record("activation", (x,), _PLAIN_ACT[fn](x))

    def gated_mlp(self, x, layer: nn.Linear, fn: str, up: nn.Linear | None = None):
        """``act(a) ⊙ b`` with a, b = the halves of ``layer(x)`` (``up`` None) or ``layer(x)``, ``up(x)``."""
        eps = self.rules.linear_eps
        up_weight, up_bias = (None, None) if up is None else linear_params(up)
        if eps is not None and self.rules.activation == "identity":
            x = self._own(x, "bias")
            u = lrp_gated_mlp(x, *linear_params(layer), fn, eps, self.backend, up_weight, up_bias)
            return self._record("bias", (x,), u)
        a = self.linear(x, layer)
        a, b = a.chunk(2, dim=-1) if up is None else (a, self.linear(x, up))
        h, b = self._own(self.activation(a, fn), "activation"), self._own(b, "activation")
        return self._record("activation", (h, b), h * b)  # the gate: x·g counts R(h·b) in h and in b

    def norm(self, x, norm: nn.Module):
        """A LayerNorm (with or without bias) or :class:`RMSNorm`: its rule (σ / rms constant) or the plain op."""
        x = self._own(x, "norm")
        if self.rules.layer_norm != "identity":
            y = norm(x)
        elif isinstance(norm, RMSNorm):  # (an offset's γ is float32: cast back once, as the plain norm does)
            y = lrp_rms_norm(x, norm.gain(), norm.eps, self.backend).to(x.dtype)
        else:
            y = lrp_layer_norm(x, norm.weight, norm.bias, norm.eps, self.backend)
        return self._record("norm", (x,), y)

    def _plain_mask(self, window, length, causal, like):
        """The recorded attention maps' additive mask in the model dtype: per key, or dense [B, 1, L, L]
        with a ``window`` or ``causal`` (the maps are [L, L] by nature; built once per pass and
        pattern, on ``like``'s device)."""
        if window is None and not causal:
            return self.plain_mask
        if (window, causal) not in self._window_masks:
            dense = dense_mask(self._key_mask(), window, length, like.device, causal)
            dtype = self.plain_mask.dtype if self.plain_mask is not None else like.dtype
            if torch.finfo(dtype).max < torch.finfo(torch.float32).max:  # float16: keep it finite
                dense = dense.clamp(min=torch.finfo(dtype).min)
            self._window_masks[window, causal] = dense.to(dtype)
        return self._window_masks[window, causal]

    def _key_mask(self) -> torch.Tensor | None:
        """The additive float32 key mask [B, L] of the attention op (made once per pass)."""
        if self.mask is None and self.token_mask is not None:
            self.mask = additive_mask(self.token_mask)
        return self.mask

    def attention_input_eps(self) -> float:
        """The ε of the q/k/v projections when the LRP attention applies their ratio in its backward
        (fused into the kernels that write g_q, g_k, g_v); 0 when the projections apply it — always
        with a ledger, whose per-op books keep a linear's ε share with the linear."""
        eps = self.rules.linear_eps
        return eps if eps and self.rules.attention != "grad" and self.ledger is None else 0.0

    def attention(self, q, k, v, scale: float, window: int | None = None, rotary=None, input_eps: float = 0.0,
                  causal: bool = False, softcap: float | None = None):
        """Attention over [B, H, L, D] heads (k, v may have fewer: grouped) under the rule set's
        attention rule, with an optional sliding ``window``, ``rotary=(cos, sin)``, ``causal``
        masking and scores soft-capped at ``softcap`` (``input_eps``: :meth:`attention_input_eps`
        when the projections left their ratio to it)."""
        if self._records("softmax"):
            q, k, v = (self._own(t, "softmax") for t in (q, k, v))
            out = self._attention(q, k, v, scale, window, rotary, input_eps, causal, softcap)
            return self._record("softmax", (q, k, v), out)
        return self._attention(q, k, v, scale, window, rotary, input_eps, causal, softcap)

    def _attention(self, q, k, v, scale: float, window: int | None, rotary, input_eps: float, causal: bool,
                   softcap: float | None):
        if self.rules.attention != "grad":
            return lrp_attention(q, k, v, self.mask, scale, self.rules.attention, self.backend, window=window,
                                 rotary=rotary, input_eps=input_eps, causal=causal, softcap=softcap)
        if input_eps:
            raise ValueError("input_eps needs an LRP attention rule")
        if self.record_attentions or softcap is not None:
            q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
            k, v = repeat_kv(k, q.shape[1]), repeat_kv(v, q.shape[1])
            mask = self._plain_mask(window, q.shape[-2], causal, q)  # dense: attention maps are [L, L] anyway
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale
            if softcap is not None:  # transformers' eager order: scale, cap, then the mask
                scores = softcap * torch.tanh(scores / softcap)
            return self._recorded(scores, mask, v)
        if window is None and not causal:  # a per-key mask: SDPA's fused kernels, no [L, L] tensor
            q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.plain_mask, scale=scale,
                                                  enable_gqa=k.shape[1] != q.shape[1])
        # a window or causal attention: the op's "grad" mode (blocked kernels, or the reference's
        # chunked path), where SDPA would need the dense [L, L] mask
        self.vmappable = False
        return lrp_attention(q, k, v, self._key_mask(), scale, "grad", self.backend, window=window, rotary=rotary,
                             causal=causal)

    def _recorded(self, scores, mask, v):
        """softmax(scores + mask)·v (in float32, as transformers' eager attention), P recorded when asked."""
        probs = torch.softmax((scores + (mask if mask is not None else 0.0)).float(), dim=-1).to(v.dtype)
        if self.record_attentions:
            self.attentions.append(probs)
        return torch.matmul(probs, v)

    def disentangled_attention(self, q, k, v, pos_key, pos_query, rel_index, scale: float):
        """DeBERTa's attention (:func:`~lrp_kernels.ops.attention.lrp_disentangled_attention`)."""
        if self._records("softmax"):
            q, k, v = (self._own(t, "softmax") for t in (q, k, v))
            out = self._disentangled(q, k, v, pos_key, pos_query, rel_index, scale)
            return self._record("softmax", (q, k, v), out)
        return self._disentangled(q, k, v, pos_key, pos_query, rel_index, scale)

    def _disentangled(self, q, k, v, pos_key, pos_query, rel_index, scale: float):
        if self.rules.attention != "grad":
            return lrp_disentangled_attention(q, k, v, pos_key, pos_query, rel_index, self.mask, scale,
                                              self.rules.attention, self.backend)
        scores = torch.matmul(q, k.transpose(-1, -2))
        relative = relative_scores(q, k, pos_key, pos_query, rel_index)
        scores = (scores if relative is None else scores + relative) * scale
        if self.record_attentions:
            return self._recorded(scores, self.plain_mask, v)
        return torch.matmul(torch.softmax(scores + (self.plain_mask if self.plain_mask is not None else 0.0), -1), v)


# ---------------------------------------------------------------------------------- functional blocks
def input_share(p: Pass, z: torch.Tensor, layer: nn.Linear, norm: nn.Module | None = None) -> torch.Tensor:
    """For z = layer(norm(x)) under the rules: the factor s with Σ_x R_x = Σ_z s ⊙ g_z, g_z z's gradient.

    The ε-rule of the layer passes (z − b)·z/(z + ε·sign z) ⊙ g_z down; the norm held constant passes
    what does not belong to its bias β: W·β is subtracted too (and nothing of it, by scale invariance,
    under the plain gradient — then x's relevance is 0 and the share is taken at the norm's output)."""
    weight, bias = linear_params(layer)
    content = z if bias is None else z - bias
    if norm is not None and getattr(norm, "bias", None) is not None and p.rules.layer_norm == "identity":
        content = content - F.linear(norm.bias, weight)
    eps = p.rules.linear_eps
    return content if not eps else or_reference(p.backend).linear.eps_ratio(content, z, eps)


def mean_pool(p: Pass, hidden: torch.Tensor) -> torch.Tensor:
    """Σ_t m_t h_t / Σ_t m_t over unpadded tokens: linear (the count is a constant), its rule its gradient."""
    if p.token_mask is None:
        return hidden.mean(dim=1)
    mask = p.token_mask
    return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)


def rotary_tables(length: int, dim: int, theta: float, like: torch.Tensor, inv_freq: torch.Tensor | None = None,
                  positions: torch.Tensor | None = None):
    """``(cos, sin)`` [1, L, D] of rotary positions 0 … L−1 — or [B, L, D] of ``positions`` [B, L] —
    (transformers' default rope of ``theta``, or the given inverse frequencies [D/2]; computed in
    float32, returned in ``like``'s dtype).

    Positions 0 … L−1 are computed once per (length, dim, θ or frequencies, device, dtype) — the
    frequencies come from the host, so a forward on a GPU would otherwise wait for its queue — and kept
    in a small LRU cache (:func:`_rotary_cached`, 16 entries); each call returns copies, so nothing a
    caller does to them reaches the cache (a copy of [1, L, D] costs far less than one layer). Given
    ``positions`` (left-padded rows of a language model) the tables are computed for them, uncached."""
    freqs = None if inv_freq is None else tuple(inv_freq.detach().cpu().float().tolist())
    if positions is not None:
        inv = _inverse_frequencies(dim, float(theta), freqs).to(like.device)
        angles = positions.to(like.device)[..., None].float() * inv
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos().to(like.dtype), emb.sin().to(like.dtype)
    cos, sin = _rotary_cached(length, dim, float(theta), like.device, like.dtype, freqs)
    return cos.clone(), sin.clone()


def _inverse_frequencies(dim: int, theta: float, freqs: tuple | None) -> torch.Tensor:
    if freqs is None:
        return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    return torch.tensor(freqs, dtype=torch.float)


@functools.lru_cache(maxsize=16)
def _rotary_cached(length: int, dim: int, theta: float, device: torch.device, dtype: torch.dtype,
                   freqs: tuple | None = None):
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, whatever mode the first call ran in
        inv_freq = _inverse_frequencies(dim, theta, freqs)
        positions = torch.arange(length, device=device)[None, :, None].float() * inv_freq.to(device)
        emb = torch.cat((positions, positions), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, H·D] -> [B, H, L, D]."""
    batch, length, _ = x.shape
    return x.view(batch, length, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H·D]."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


def self_attention(p: Pass, x, query: nn.Linear, key: nn.Linear, value: nn.Linear, heads: int):
    """Multi-head self-attention of ``x`` [B, L, hidden] (before the output projection); under an LRP
    attention rule the ε-ratio of the projections is applied by the attention's backward."""
    eps = p.attention_input_eps()
    q, k, v = (split_heads(p.linear(x, lin, ratio_by_consumer=eps > 0), heads) for lin in (query, key, value))
    return merge_heads(p.attention(q, k, v, q.shape[-1] ** -0.5, input_eps=eps))


def post_norm(p: Pass, x, residual, norm: nn.LayerNorm):
    """``norm(x + residual)``: the residual connection of a post-norm (BERT-style) block."""
    return p.norm(x + residual, norm)


def attention_sublayer(p: Pass, x, query: nn.Linear, key: nn.Linear, value: nn.Linear, output: nn.Linear,
                       norm: nn.LayerNorm, heads: int):
    """``norm(output(self_attention(x)) + x)``: the attention half of a post-norm layer (BERT, DistilBERT,
    ALBERT — each names the four linears and the norm its own way)."""
    return post_norm(p, p.linear(self_attention(p, x, query, key, value, heads), output), x, norm)


def feed_forward_sublayer(p: Pass, x, up: nn.Linear, down: nn.Linear, norm: nn.LayerNorm, act: str):
    """``norm(down(act(up(x))) + x)``: the feed-forward half of a post-norm layer."""
    return post_norm(p, p.linear(p.linear(x, up, act), down), x, norm)


# ---------------------------------------------------------------------------------- BERT-style modules
class Embeddings(nn.Module):
    """``word (+ position) (+ token type)`` then LayerNorm, of width ``size`` (ELECTRA/ALBERT: embedding_size)."""

    def __init__(self, config: ModelConfig, size: int | None = None, token_types: bool = True, positions: bool = True):
        super().__init__()
        size = size or config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, size)
        if positions:
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, size)
        if token_types:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, size)
        self.LayerNorm = nn.LayerNorm(size, eps=config.layer_norm_eps)

    def sum(self, input_ids, position_ids, token_type_ids=None):
        """The embedding sum e, [B, L, size]."""
        e = self.word_embeddings(input_ids)
        if hasattr(self, "position_embeddings"):
            e = e + self.position_embeddings(position_ids)
        if hasattr(self, "token_type_embeddings"):
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            e = e + self.token_type_embeddings(token_type_ids)
        return e

    def normalize(self, p: Pass, e):
        """The embedding norm; its output is the read-out point ``embedding_output``."""
        return p.tap("embedding_output", p.norm(e, self.LayerNorm))


class _SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)


class DenseLayerNorm(nn.Module):
    def __init__(self, n_in: int, n_out: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        self.LayerNorm = nn.LayerNorm(n_out, eps=eps)


class AttentionModules(nn.Module):
    """BERT's ``attention.self`` (q/k/v, or the given ``self_attention`` module class) and
    ``attention.output`` (dense + LayerNorm) parameters, as the checkpoints name them."""

    def __init__(self, config: ModelConfig, self_attention: type[nn.Module] = _SelfAttention):
        super().__init__()
        self.self = self_attention(config)
        self.output = DenseLayerNorm(config.hidden_size, config.hidden_size, config.layer_norm_eps)


class Intermediate(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)


class EncoderLayer(nn.Module):
    """A post-norm BERT layer: attention → dense → add & norm → dense, act → dense → add & norm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads, self.act = config.num_attention_heads, config.activation
        self.attention = AttentionModules(config)
        self.intermediate = Intermediate(config)
        self.output = DenseLayerNorm(config.intermediate_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, x, p: Pass):
        sa, out = self.attention.self, self.attention.output
        x = attention_sublayer(p, x, sa.query, sa.key, sa.value, out.dense, out.LayerNorm, self.heads)
        return feed_forward_sublayer(p, x, self.intermediate.dense, self.output.dense, self.output.LayerNorm, self.act)


class Encoder(nn.Module):
    """``num_hidden_layers`` layers applied in turn; the input of layer i is the tap ``layer.<i>``."""

    def __init__(self, config: ModelConfig, layer: type[nn.Module] = EncoderLayer):
        super().__init__()
        self.layer = nn.ModuleList(layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x, p: Pass):
        return run_layers(p, self.layer, x)


def run_layers(p: Pass, layers, x, *args):
    """``x`` through ``layers`` in turn (``layer(x, p, *args)``); the input of layer i is the tap ``layer.<i>``."""
    for i, layer in enumerate(layers):
        x = p.layer(layer, p.tap(f"layer.{i}", x), *args)
    return x


class Pooler(nn.Module):
    """BERT's pooler: dense → tanh on the first token (DeBERTa's ContextPooler: dense → its ``act``)."""

    def __init__(self, config: ModelConfig, act: str = "tanh"):
        super().__init__()
        self.act = act
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, first: torch.Tensor, p: Pass):
        return p.linear(first, self.dense, self.act)


class ClassificationHead(nn.Module):
    """dense → ``act`` → out_proj on the first token (RoBERTa: tanh; ELECTRA: GELU)."""

    def __init__(self, config: ModelConfig, act: str):
        super().__init__()
        self.act = act
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, first: torch.Tensor, p: Pass):
        return p.linear(p.linear(first, self.dense, self.act), self.out_proj)
