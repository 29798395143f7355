r"""Several next tokens of a causal language model explained from ONE forward pass.

A causal LM's forward over a sequence serves every prefix of it: the logits at position t see the
tokens 0 … t only. The explanation of a continuation c_0 … c_{N−1} of a prompt of P tokens (or of a
generation) has N targets — target i is the logit of token c_i at position P + i − 1, the position
that predicts it — and needs ONE forward over prompt + continuation with its graph kept, then one
backward per target. Every rule here is linear in the seed given the forward (the ε-rule's ratios,
the norms' held σ or rms, the attention's held P or its Taylor rule are functions of the forward
only), so the backward of target i's seed alone is exactly what a separate call on the prefix gives;
causal attention makes row i exactly 0 at and after the position of c_i (the tokens the logit did not see).

**Cost.** 1 forward + N backwards, where a loop of :func:`~lrp_kernels.attribution.attribute` calls
costs N forwards + N backwards (on prefixes); an input-gradient backward costs about what the
forward costs (its GEMMs have the forward's shapes; no weight gradient), so the packed call takes
about ½ the loop's time, whatever N. The head (``lm_head``: the largest weight of a small LM) is
row-wise, so one backward through it serves every target (the tap ``head_input``); each target's own
backward starts below it. **Memory:** one forward's saved tensors whatever N, the logits at
the explained positions only ([N, vocab], never [L, vocab]) and one gradient at a time.

**Batches.** Targets of different rows are independent (a row's gradient depends on its own seed
only), so backward k seeds the k-th target of every row at once: max_b N_b backwards over the batch.
The plain-gradient methods (``gradient``, ``grad_x_input``) push ``chunk`` seeds through one vmapped
backward (``is_grads_batched``) where the pass allows it (not through causal attention: its kernel is an autograd Function without a vmap rule); the LRP rules' autograd Functions run one seed per backward (see
:mod:`lrp_kernels.attribution` on why they cannot be vmapped).

**What is explained** (``score``):

* ``"logit"`` — z_t, the logit of the target token (Gemma 2: after the final soft-cap);
* ``"logprob"`` — the log-probability in the gradient×input form. log p_t = z_t − logsumexp(z) has the
  gradient e_t − p w.r.t. the logits, so the seed is e_t − p with the softmax p **held constant**: the
  relevance explains **z_t − Σ_j p_j z_j** (the logit minus its softmax-weighted mean), which is
  log p_t + H(p) (H the entropy of the next-token distribution, in nats) — not log p_t itself. It is
  what CP-LRP with zero biases and ε = 0 conserves exactly (:attr:`TokenAttribution.explained`). For
  the plain-gradient methods the seed is exactly ∇ log p_t. With a ``contrast`` token the softmax
  cancels (log p_a − log p_b = z_a − z_b): both scores explain z_a − z_b.

Every method of :mod:`lrp_kernels.methods` works: gradient methods and integrated gradients as
above (IG: the path's steps batched, every target's backward over all steps), the attention methods
trace from each target's position (their scores do not depend on the token), the random control
draws per target. ``layers=True`` is not offered here (use :func:`~lrp_kernels.attribution.attribute`
for one target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from lrp_kernels.attribution import (_baseline, _Batch, _caller_positions, _check_inputs, _read_at, check_targets,
                                     frozen, midpoint_path)
from lrp_kernels.backends.registry import resolve
from lrp_kernels.errors import InputError
from lrp_kernels.layer_relevance import dot_relevance
from lrp_kernels.methods import Method, get_method
from lrp_kernels.models.loading import as_lrp_model
from lrp_kernels.rules import GRADIENT

#: what a next-token explanation explains (see the module docstring)
SCORES = ("logit", "logprob")
#: a ``targets`` entry that explains the token the model predicts there (the argmax of its logits)
PREDICTED = -2

__all__ = ["PREDICTED", "SCORES", "TokenAttribution", "attribute_tokens", "continuation_targets"]


@dataclass
class TokenAttribution:
    """The result of :func:`attribute_tokens`: M explained (row, position, token) targets, row-major.

    ``matrix`` [M, L] float32: row m is the relevance of every token of row ``rows[m]`` for target m
    (0 at padding, and — causal attention — at every position after ``positions[m]``). ``scores``
    [B, L]: per row, the explanation of the sum of its targets' explained quantities (the sum of its
    matrix rows; Gradient Sensitivity: the norm of the summed gradient). ``rows``, ``positions``,
    ``target`` [M] int64: where each target is read and its token; ``contrast`` [M] or None;
    ``logits`` [M, vocab] float32 at the explained positions; ``explained`` [M]: the explained
    quantity (``score``: the logit, z_t − Σ p z for ``logprob``; minus the contrast's logit);
    ``logprob`` [M]: log p(target) under the model (the log-softmax, whatever ``score``)."""

    matrix: torch.Tensor
    scores: torch.Tensor
    rows: torch.Tensor
    positions: torch.Tensor
    target: torch.Tensor
    logits: torch.Tensor
    explained: torch.Tensor
    logprob: torch.Tensor
    method: str
    score: str = "logit"
    read_at: str | None = None
    contrast: torch.Tensor | None = None
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None

    @property
    def conservation(self) -> torch.Tensor:
        """[M] Σ matrix row / explained quantity (1 = all of it reached the input)."""
        return self.matrix.sum(dim=-1) / self.explained


def continuation_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start) -> torch.Tensor:
    """[B, L] targets that explain every token of each row from position ``start`` (an int or one per
    row) to its last real token, each at the position before it: ``targets[b, t] = input_ids[b, t + 1]``
    for start_b − 1 ≤ t < last_b, −1 elsewhere."""
    batch, length = input_ids.shape
    start = torch.as_tensor(start, device=input_ids.device).reshape(-1).expand(batch)
    if (start < 1).any():
        raise InputError("a continuation starts after at least one token (the position that predicts it)")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device)
    columns = torch.arange(length, device=input_ids.device)
    follows = torch.zeros_like(input_ids, dtype=torch.bool)
    follows[:, :-1] = mask[:, 1:].bool() & (columns[None, 1:] >= start[:, None])
    targets = torch.full_like(input_ids, -1)
    targets[:, :-1] = torch.where(follows[:, :-1], input_ids[:, 1:], targets[:, :-1])
    return targets


@dataclass
class _Pairs:
    """The explained targets, row-major: row, position, token, rank among the row's targets, contrast."""

    rows: torch.Tensor
    positions: torch.Tensor
    target: torch.Tensor
    rank: torch.Tensor
    contrast: torch.Tensor | None

    @classmethod
    def of(cls, targets: torch.Tensor, mask: torch.Tensor, contrast, vocab: int) -> "_Pairs":
        if not torch.is_tensor(targets) or targets.shape != mask.shape:
            raise InputError(f"targets must be a [batch, seq] tensor of token ids (−1: nothing explained there) "
                             f"shaped as input_ids {tuple(mask.shape)}")
        chosen = (targets >= 0) | (targets == PREDICTED)
        if (chosen & ~mask.bool()).any():
            raise InputError("a target sits at a padding position (the attention mask is 0 there)")
        rows, positions = chosen.nonzero(as_tuple=True)
        if not len(rows):
            raise InputError("no target to explain (every entry of targets is −1)")
        target = targets[rows, positions]
        given = target >= 0
        target[given] = check_targets(target[given], int(given.sum()), vocab).to(targets.device)
        rank = chosen.long().cumsum(-1)[rows, positions] - 1
        if contrast is not None:
            contrast = check_targets(contrast, len(rows), vocab).to(targets.device)
        return cls(rows, positions, target, rank, contrast)

    def __len__(self) -> int:
        return len(self.rows)

    def repeat(self, copies: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, positions) of the pairs in ``copies`` stacked copies of a batch of ``batch`` rows."""
        offsets = torch.arange(copies, device=self.rows.device).repeat_interleave(len(self)) * batch
        return self.rows.repeat(copies) + offsets, self.positions.repeat(copies)


def _seeds(pairs: _Pairs, logits: torch.Tensor, score: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(seeds [M, vocab] in the logits' dtype, the explained quantity [M] float32); a :data:`PREDICTED`
    target becomes the argmax of its logits (in ``pairs``)."""
    z = logits.detach().float()
    predicted = pairs.target == PREDICTED
    if predicted.any():
        pairs.target = torch.where(predicted, z[: len(pairs)].argmax(dim=-1), pairs.target)
    seeds = F.one_hot(pairs.target, z.shape[-1]).float()
    if pairs.contrast is not None:
        seeds = seeds - F.one_hot(pairs.contrast, z.shape[-1]).float()
    elif score == "logprob":
        seeds = seeds - torch.softmax(z, dim=-1)
    return seeds.to(logits.dtype), (seeds * z).sum(dim=-1)


@dataclass
class _Run:
    """One packed computation: the model, its batch, the explained pairs and the method's settings."""

    spec: Method
    model: torch.nn.Module
    batch: _Batch
    pairs: _Pairs
    score: str
    backend: object
    eps: float
    read_at: str | None
    chunk: int
    ig_steps: int
    ig_baseline: object
    ig_batch_size: int
    random_seed: int
    summed_only: bool


def _forward(run: _Run, e: torch.Tensor, rules, copies: int = 1):
    """Logits [copies·M, vocab] at the explained positions of ``copies`` stacked copies of the batch (the
    pass kept for its taps: ``head_input``, the hidden states the head reads), from ``e`` [copies·B, L, H]."""
    taps = ("head_input",) + (("embedding_output",) if run.read_at == "embedding_output" else ())
    rows, positions = run.pairs.repeat(copies, len(run.batch.input_ids))
    mask = run.batch.attention_mask.repeat(copies, 1)
    return run.model.run(e, mask, rules, run.backend, taps=taps, read_index=positions, read_rows=rows)


def _backwards(run: _Run, logits, x, seeds, reduce: Callable, rules, vmappable: bool, head: torch.Tensor,
               copies: int = 1):
    """The matrix [M, L] (``reduce(gradient [copies·B, L, H], pair indices) -> [n, L]`` per backward) and the
    per-row scores of the summed seeds, from ``logits`` [copies·M, V] whose graph reaches ``x`` through
    ``head`` [copies·M, H], the hidden states the head reads (``vmappable``: the pass's
    :attr:`~lrp_kernels.models.blocks.Pass.vmappable` — seeds are vmapped in chunks only where no op of
    the pass ran through an autograd Function without a vmap rule).

    The head (``lm_head``, a soft-cap) maps row m of ``head`` to row m of ``logits`` alone, so ONE backward
    through it with every seed in its row gives each target's seed at the hidden state it reads — row m
    is exactly what target m's seed alone gives there. Each target's own backward then starts below the
    head and never reads the [vocab, hidden] matrix again (one GEMM for all targets instead of one
    matrix-vector product per target over the largest weight of the model)."""
    pairs, batch = run.pairs, len(run.batch.input_ids)
    (head_seeds,) = torch.autograd.grad(logits, head, seeds.repeat(copies, 1), retain_graph=True)
    head_seeds = head_seeds.view(copies, len(pairs), -1)
    matrix = torch.zeros(len(pairs), x.shape[1], dtype=torch.float32, device=x.device)
    plain = rules.is_plain and run.chunk > 1 and vmappable
    groups = [] if run.summed_only else [(pairs.rank == k).nonzero()[:, 0] for k in range(int(pairs.rank.max()) + 1)]
    if run.summed_only or run.spec.norm:  # the sum of the seeds, one backward (GS: the norm of its gradient)
        groups.append(torch.arange(len(pairs), device=x.device))
    for start in range(0, len(groups), run.chunk if plain else 1):
        chosen = groups[start : start + (run.chunk if plain else 1)]
        go = torch.zeros(len(chosen), *head.shape, dtype=head.dtype, device=head.device)
        for j, index in enumerate(chosen):
            go[j].view(copies, len(pairs), -1)[:, index] = head_seeds[:, index]
        last = start + len(chosen) >= len(groups)
        (grad,) = torch.autograd.grad(head, x, go if plain else go[0], retain_graph=not last,
                                      is_grads_batched=plain)
        grads = grad if plain else grad[None]
        for j, index in enumerate(chosen):
            if run.summed_only or (run.spec.norm and j + start == len(groups) - 1):
                scores = reduce(grads[j], torch.arange(batch, device=x.device), rows_are_pairs=False)
                return matrix, scores
            matrix[index] = reduce(grads[j], index)
    return matrix, None


def _row_sums(matrix: torch.Tensor, pairs: _Pairs, batch: int) -> torch.Tensor:
    return torch.zeros(batch, matrix.shape[1], dtype=matrix.dtype, device=matrix.device).index_add_(0, pairs.rows, matrix)


def _gradient_kind(run: _Run, e: torch.Tensor):
    """One forward under the method's rules with the graph kept; one backward per target rank."""
    rules, pairs = run.spec.rules(run.eps), run.pairs
    e = e.detach().requires_grad_(True)
    with torch.enable_grad():
        logits, p = _forward(run, e, rules)
        x = p.tapped["embedding_output"] if run.read_at == "embedding_output" else e
        seeds, explained = _seeds(pairs, logits, run.score)
        value = run.model.word_part(run.batch.input_ids) if run.read_at == "word_embeddings" else x.detach()

        def reduce(grad, index, rows_are_pairs=True):
            rows = pairs.rows[index] if rows_are_pairs else index
            # Σ x ⊙ g as attribute() sums it (float64 for a float64 model, rounded once)
            return grad[rows].float().norm(dim=-1) if run.spec.norm else dot_relevance(value[rows], grad[rows])

        matrix, summed = _backwards(run, logits, x, seeds, reduce, rules, p.vmappable, p.tapped["head_input"])
    return matrix, summed, logits.detach(), explained


def _ig_kind(run: _Run, e: torch.Tensor):
    """Integrated gradients: the midpoint path's steps batched in chunks; per chunk one forward of
    every step and one backward per target rank over all of them."""
    if run.ig_steps < 1:
        raise InputError(f"ig_steps must be >= 1, got {run.ig_steps}")
    batch = run.batch
    logits = run.model.run(e, batch.attention_mask, GRADIENT, None, read_index=run.pairs.positions,
                           read_rows=run.pairs.rows)[0]
    seeds, explained = _seeds(run.pairs, logits, run.score)
    base = _baseline(run.model, batch, run.ig_baseline).to(e.dtype).expand_as(e)
    delta = (e - base).float()
    matrix = torch.zeros(len(run.pairs), e.shape[1], dtype=torch.float32, device=e.device)
    summed = None
    for copies, path in midpoint_path(e, base, run.ig_steps, run.ig_batch_size):
        path = path.detach().requires_grad_(True)

        def reduce(grad, index, rows_are_pairs=True):
            rows = run.pairs.rows[index] if rows_are_pairs else index
            g = grad.float().view(copies, e.shape[0], *e.shape[1:]).sum(dim=0)
            return (delta[rows] * g[rows]).sum(dim=-1) / run.ig_steps

        with torch.enable_grad():
            step_logits, step_pass = _forward(run, path, GRADIENT, copies)
            part, part_sum = _backwards(run, step_logits, path, seeds, reduce, GRADIENT, step_pass.vmappable,
                                        step_pass.tapped["head_input"], copies)
        matrix += part
        if part_sum is not None:
            summed = part_sum if summed is None else summed + part_sum
    return matrix, summed, logits, explained


def _attention_kind(run: _Run, e: torch.Tensor):
    """The attention maps of one plain forward, traced from every target's position."""
    batch, pairs = run.batch, run.pairs
    logits, p = run.model.run(e, batch.attention_mask, GRADIENT, None, output_attentions=True,
                              read_index=pairs.positions, read_rows=pairs.rows)
    attentions = [a.float() for a in p.attentions]
    matrix = torch.stack([run.spec.from_attentions([a[pairs.rows[m]][None] for a in attentions],
                                                   pairs.positions[m : m + 1])[0] for m in range(len(pairs))])
    return matrix, None, logits, _seeds(pairs, logits, run.score)[1]


def _control_kind(run: _Run, e: torch.Tensor):
    logits = run.model.run(e, run.batch.attention_mask, GRADIENT, None, read_index=run.pairs.positions,
                           read_rows=run.pairs.rows)[0]
    generator = torch.Generator().manual_seed(run.random_seed)
    matrix = torch.rand(len(run.pairs), e.shape[1], generator=generator).to(e.device)
    seen = torch.arange(e.shape[1], device=e.device)[None] <= run.pairs.positions[:, None]  # what the logit saw
    return matrix * seen, None, logits, _seeds(run.pairs, logits, run.score)[1]


_KINDS = {"gradient": _gradient_kind, "integrated_gradients": _ig_kind, "attention": _attention_kind,
          "control": _control_kind}


def attribute_tokens(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    *,
    method: str = "attnlrp",
    score: str = "logit",
    contrast=None,
    eps: float = 1e-6,
    backend: str | None = None,
    read_at: str | None = None,
    chunk: int = 16,
    matrix: bool = True,
    ig_steps: int = 32,
    ig_baseline="pad",
    ig_batch_size: int = 256,
    seed: int = 0,
) -> TokenAttribution:
    """Explain several next tokens per row of a causal language model from one forward pass.

    ``model``: a :class:`~lrp_kernels.models.decoder.DecoderLM` or a ``transformers`` causal LM of a
    supported family. ``targets`` [B, L] int64: at position t, the token whose logit at t is explained
    (the next token: for a continuation ``targets[b, t] = input_ids[b, t + 1]``,
    :func:`continuation_targets`), :data:`PREDICTED` (−2) for the token the model predicts there, −1
    where nothing is; None: every real position but the last, each explaining the token that follows it. ``score``: ``"logit"`` or ``"logprob"`` (the module
    docstring says exactly what the latter explains). ``contrast``: None, a token id, or one per target
    (row-major order) — explain logit_target − logit_contrast. ``chunk``: targets per vmapped backward
    of the plain-gradient methods. ``matrix``: False computes only the per-row ``scores`` (one backward
    of the summed seeds; ``matrix`` is then zeros). Other keywords as for
    :func:`~lrp_kernels.attribution.attribute`.
    """
    spec = get_method(method)
    read_at = _read_at(spec, read_at)
    if score not in SCORES:
        raise InputError(f"unknown score {score!r}; valid: {', '.join(SCORES)}")
    if contrast is not None and not spec.depends_on_target:
        raise InputError(f"{spec.name} does not depend on the explained token: contrast applies to the gradient "
                         "and integrated-gradients methods")
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    model = as_lrp_model(model)
    if not model.config.language_model:
        raise InputError(f"{type(model).__name__} is not a causal language model: attribute_tokens explains "
                         "next tokens (pass a *ForCausalLM model)")
    with torch.inference_mode(False), frozen(model), torch.no_grad():
        batch = _check_inputs(model, input_ids, attention_mask, None)
        if targets is None:
            targets = continuation_targets(batch.input_ids, batch.attention_mask, 1)
        pairs = _Pairs.of(targets.to(batch.input_ids.device).long(), batch.attention_mask, contrast,
                          model.config.num_labels)
        run = _Run(spec, model, batch, pairs, score, resolve(backend, batch.input_ids.device), eps, read_at, chunk,
                   ig_steps, ig_baseline, ig_batch_size, seed, summed_only=not matrix and spec.kind != "attention")
        e = model.embed(batch.input_ids, attention_mask=batch.attention_mask)
        out, summed, logits, explained = _KINDS[spec.kind](run, e)
        out = _caller_positions(out, batch.attention_mask[pairs.rows], None)
        if summed is None:
            summed = _row_sums(out, pairs, len(batch.input_ids))
        summed = _caller_positions(summed, batch.attention_mask, None)
        logits = logits.float()
    return TokenAttribution(
        matrix=out, scores=summed, rows=pairs.rows, positions=pairs.positions, target=pairs.target, logits=logits,
        explained=explained, logprob=torch.log_softmax(logits, dim=-1).gather(1, pairs.target[:, None])[:, 0],
        method=spec.name, score=score, read_at=read_at, contrast=pairs.contrast, input_ids=input_ids.detach().cpu(),
        attention_mask=None if attention_mask is None else attention_mask.detach().cpu())
