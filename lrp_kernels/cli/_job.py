"""The work of one ``explain`` run: :class:`Settings` (what every text is explained with, the
arguments of :meth:`~lrp_kernels.explainer.Explainer.explain`) and :class:`ExplainJob` (the records
cut into fixed, length-bucketed batches, the same on every run and rank).

Output records: one per (text, method), each the explanation (:meth:`Explanation.to_dict`) plus its
``id`` — with several methods a text's records follow each other in the order of ``--methods``. A
record is known by its id and method (:func:`~lrp_kernels.cli._jsonl.record_key`), so a resumed run
skips exactly the (text, method) pairs already written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from typing import Any

from lrp_kernels.cli._inputs import id_key
from lrp_kernels.cli._jsonl import RowCheck, record_key

TRUNCATION_WARNING = r".*tokens were truncated"  # the tokenizer's; ExplainJob.create words its own


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every text is explained with. ``target``: None (the predicted class), a class index or
    ``"all"``; ``contrast``: a class index or None; ``stride``: None (truncate long texts) or the
    tokens that consecutive windows share."""

    methods: tuple[str, ...]
    target: int | str | None = None
    contrast: int | None = None
    layers: bool = False
    stride: int | None = None
    merge_subwords: bool = False

    def explain_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`Explainer.explain` (besides the texts and batching)."""
        return {"methods": list(self.methods), "target": self.target, "contrast": self.contrast,
                "layers": self.layers, "stride": self.stride, "merge_subwords": self.merge_subwords}


@dataclasses.dataclass
class ExplainJob:
    """The records to explain, cut into fixed batches (the same on every run and rank), and how."""

    explainer: Any
    records: list[dict[str, Any]]
    batches: list[list[int]]
    settings: Settings
    batch_size: int
    rank: int = 0
    world: int = 1
    computed_from: dict[str, dict[str, Any]] | None = None  # per method, added to its records (file output)
    truncated: list[Any] = dataclasses.field(default_factory=list)  # ids of the texts cut at the maximum length

    @classmethod
    def create(cls, explainer, records: list[dict[str, Any]], batch_size: int, settings: Settings,
               **options) -> "ExplainJob":
        """Tokenize every record up front and bucket by length into batches of ``batch_size`` texts
        (a windowed text by its whole length); without a stride, the texts cut at the maximum
        length are noted (:meth:`run` warns about them once)."""
        texts, pairs = cls._texts(records, range(len(records)))
        truncated = []
        if settings.stride is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=TRUNCATION_WARNING)
                encodings = explainer.encoder.tokenize(texts, pairs)
            truncated = [records[i]["id"] for i, encoding in enumerate(encodings) if encoding.overflowing]
        else:
            encodings = [doc.full for doc in explainer.encoder.documents(texts, pairs, settings.stride)]
        batches = list(explainer.batches(encodings, batch_size, bucket=True))
        return cls(explainer, records, batches, settings, batch_size, truncated=truncated, **options)

    @staticmethod
    def _texts(records, index) -> tuple[list[str], list[str] | None]:
        texts = [records[i]["text"] for i in index]
        pairs = [records[i]["text_pair"] for i in index] if records[0]["text_pair"] is not None else None
        return texts, pairs

    @property
    def methods(self) -> tuple[str, ...]:
        return self.settings.methods

    def keys(self, i: int) -> list[str]:
        """The record keys of record ``i``: one per method."""
        return [record_key(self.records[i]["id"], method) for method in self.methods]

    def order(self) -> list[str]:
        """The record keys in output order: input order, then the order of the methods."""
        return [key for i in range(len(self.records)) for key in self.keys(i)]

    def pending(self, done) -> list[list[int]]:
        """This rank's batches (r, r+N, …) that hold a (text, method) not in ``done``."""
        return [b for b in self.batches[self.rank :: self.world] if any(k not in done for i in b for k in self.keys(i))]

    def explain_batch(self, index: list[int]) -> list[dict[str, Any]]:
        """The records of the texts ``index``, every method of each text in turn."""
        texts, pairs = self._texts(self.records, index)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TRUNCATION_WARNING)  # create() reported them
            explanations = self.explainer.explain(texts, pairs, batch_size=self.batch_size, bucket=False,
                                                  **self.settings.explain_kwargs())
        if any(e.contrast is not None and e.contrast == e.target for e in explanations):
            warnings.warn("some texts are predicted as the --contrast class: their scores are all 0 (give --target "
                          "to explain another class against it)", stacklevel=2)
        records = []
        for n, explanation in enumerate(explanations):  # text-major: text 0 by every method, text 1, …
            extra = {} if self.computed_from is None else {"computed_from": self.computed_from[explanation.method]}
            records.append({"id": self.records[index[n // len(self.methods)]]["id"], **explanation.to_dict(), **extra})
        return records

    def row_check(self) -> RowCheck:
        """What the rows of an existing output must match to be kept."""
        texts = {id_key(r["id"]): (r["text"], r["text_pair"]) for r in self.records}
        return RowCheck(self.computed_from, texts)

    def run(self, sink, stop_after: int | None = None, progress: bool = True) -> bool:
        """Explain the pending batches into ``sink``; False when stopped after ``stop_after`` batches."""
        pending = self.pending(sink.done)
        if self.truncated and pending and self.rank == 0:
            warnings.warn(f"{len(self.truncated)} text(s) longer than {self.explainer.encoder.max_length} tokens were "
                          f"truncated (first: id {json.dumps(self.truncated[0], ensure_ascii=False)}); --stride N "
                          "explains them whole, in windows", stacklevel=2)
        with contextlib.ExitStack() as stack:
            if progress and self.rank == 0 and pending:  # nothing to do: no bar
                from lrp_kernels.progress import progress_bar

                pending = stack.enter_context(progress_bar(pending, desc=f"explain ({', '.join(self.methods)})",
                                                           unit="batch"))
            for n, index in enumerate(pending):
                if stop_after is not None and n >= stop_after:
                    return False
                for record in self.explain_batch(index):
                    sink.add(record)
                sink.flush()
        return True

