"""Evaluating attributions: word deletion, AOPC, ABPC, word rank, method agreement, cross-dataset.

:func:`run_study` is ``lrp-kernels evaluate``; the metric functions work on :class:`Item` lists
and any forward function, so they can be used (and tested) on their own.
"""

from lrp_kernels.evaluation.items import Item, attribute_items, batched_logits, make_items, model_forward
from lrp_kernels.evaluation.perturbation import (
    ABPCResult,
    AOPCResult,
    DeletionResult,
    REPLACEMENTS,
    abpc,
    aopc,
    deletion_subset,
    ranked_positions,
    replacement_token_id,
    word_deletion,
)
from lrp_kernels.evaluation.ranking import (
    cross_model_correlation,
    mean_word_scores,
    method_agreement,
    spearman,
    word_rank,
    word_rank_correlation,
)
from lrp_kernels.evaluation.study import METRICS, StudyConfig, run_study

__all__ = [
    "ABPCResult",
    "AOPCResult",
    "DeletionResult",
    "Item",
    "METRICS",
    "REPLACEMENTS",
    "StudyConfig",
    "abpc",
    "aopc",
    "attribute_items",
    "batched_logits",
    "cross_model_correlation",
    "deletion_subset",
    "make_items",
    "mean_word_scores",
    "method_agreement",
    "model_forward",
    "ranked_positions",
    "replacement_token_id",
    "run_study",
    "spearman",
    "word_deletion",
    "word_rank",
    "word_rank_correlation",
]
