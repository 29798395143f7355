"""Correctness figures per model family, computed as the tests compute them — for a closing note.

Per family (and ModernBERT / EuroBERT variant), on the tests' own seeded random classifiers, batches
and targets (imported from the test modules, not copied):

1. logit parity: max |Δ| of our float32 logits vs transformers', eager and sdpa attention
   (``test_logits_equal_transformers``; DeBERTa has no sdpa in transformers: "—");
2. GI / GS vs plain autograd on the unmodified transformers model (``hf_gradient_at``): max |Δ| over
   the three read-out points / max |reference| over them (one scale for all points: at the embedding
   norm's input GI is 0 per token, LayerNorm's scale invariance, and its reference rounding noise);
   "GI/GS tol" is the largest |Δ| / (1e-5 + 1e-4 |reference|), the tests' ``assert_close(rtol=1e-4,
   atol=1e-5)`` (≤ 1 passes);
3. CP-LRP conservation, every bias zeroed, ε = 0: max |(Σ scores + position relevance) / target logit
   − 1|, float32 and the same model ``.double()``. attribute() returns float32 scores, so the float64
   figure is float32 rounding of the scores, amplified where they cancel to a small target logit
   (ALBERT's first example: logit −0.015, Σ|scores| 0.85, 5e-6); x ⊙ g summed in float64 conserves
   to ~1e-14 on the same models;
4. the explicit float64 LRP reference (``tests/explicit_lrp.py``, ``tests/explicit_lrp_modern.py``):
   max |ours − explicit| / max |explicit| of the token scores, attnlrp and cp_lrp at ε = 0 and at the
   test's ε > 0 (1e-2 for the BERT-like families, 0.1 for families II); where the test checks them,
   the relevance tensor x ⊙ g (families I, 1e-10) and DeBERTa's position relevance (1e-6), the
   largest over the four runs.

Setups ("source" column): ``I`` = tests/families/test_families_i.py; ``II`` =
tests/families/test_families_ii.py (GI/GS for the base variants only, as there); ``core`` = BERT and
RoBERTa: parity as tests/test_models.py, GI/GS as tests/test_read_out.py, conservation and explicit
for BERT as tests/test_attribution.py (``make_random_bert``); RoBERTa has no conservation or explicit
test of its own, so it gets the families-I setup there (``core+I``). It reports, it never asserts;
the last lines list any figure outside the tests' tolerance.

    PYTHONPATH=. python benchmarks/family_figures.py [--families bert eurobert ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "families")]

import torch  # noqa: E402
import transformers  # noqa: E402

import test_attribution as core_lrp  # noqa: E402  (the tests' setups, imported rather than copied)
import test_families_i as fam1  # noqa: E402
import test_families_ii as fam2  # noqa: E402
import test_models as core_parity  # noqa: E402
import test_read_out as core_read_out  # noqa: E402
from explicit_lrp import explicit_lrp, make_random_bert  # noqa: E402
from explicit_lrp_modern import explicit_lrp_modern  # noqa: E402
from lrp_kernels import attribute  # noqa: E402
from lrp_kernels.methods import READ_OUT_POINTS  # noqa: E402
from lrp_kernels.models import from_hf  # noqa: E402
from lrp_kernels.rules import lrp_rules  # noqa: E402
from model_factory import hf_gradient_at, make_hf, zero_biases  # noqa: E402

#: the tests' tolerances, figure -> bound (GI/GS: the assert_close ratio, ≤ 1)
TOLERANCES = {"parity_eager": 1e-5, "parity_sdpa": 1e-5, "gi_gs_tol": 1.0, "conservation_fp32": 1e-4,
              "conservation_fp64": 1e-4, "xg": 1e-10, "positions": 1e-6}
EXPLICIT_TOL = 1e-6
METHODS = ("attnlrp", "cp_lrp")


def rel(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


# ------------------------------------------------------------------------------------ setups
class FamilyI:
    """tests/families/test_families_i.py: a case is (hf, ids, mask, types, target)."""

    source, eps = "I", 1e-2
    explicit_tensor = True  # the test compares x ⊙ g with the explicit relevance tensor

    def __init__(self, kind: str):
        self.kind = kind

    def parity_case(self, attn):
        hf = make_hf(self.kind, attn_implementation=attn)
        return (hf, *fam1.batch(hf))

    def lrp_case(self):
        hf = make_hf(self.kind, initializer_range=fam1.INIT)
        return (hf, *fam1.batch(hf), fam1.TARGET)

    gi_case = conservation_case = explicit_case = lrp_case

    def explicit(self, hf64, ids, mask, types, target, method, eps):
        relevance, _ = explicit_lrp(hf64, ids, mask, types, target=target, mode=method, eps=eps)
        return relevance, relevance.sum(-1), None


class FamilyII:
    """tests/families/test_families_ii.py (no token types; GI/GS for the base variants only)."""

    source, eps, explicit_tensor = "II", 0.1, False

    def __init__(self, variant: str):
        self.kind = variant

    def parity_case(self, attn):
        if attn == "sdpa" and self.kind.startswith("deberta"):
            return None  # no sdpa implementation in transformers
        return (fam2._hf(self.kind, attn_implementation=attn), *fam2._batch(), None)

    def lrp_case(self):
        return (fam2._hf(self.kind), *fam2._batch(), None, fam2.TARGET)

    conservation_case = explicit_case = lrp_case

    def gi_case(self):
        return self.lrp_case() if self.kind in fam2.KINDS else None

    def explicit(self, hf64, ids, mask, types, target, method, eps):
        relevance, positions, _ = explicit_lrp_modern(hf64, ids, mask, target, method, eps)
        return None, relevance.sum(-1) * mask, positions if self.kind.startswith("deberta") else None


class Core(FamilyI):
    """BERT / RoBERTa: test_models (parity), test_read_out (GI/GS), test_attribution (BERT's LRP)."""

    source = "core"
    explicit_tensor = False

    def __init__(self, kind: str):
        super().__init__(kind)
        if kind != "bert":  # no LRP test of its own: the families-I setup, x ⊙ g included
            self.source, self.explicit_tensor = "core+I", True
            self.conservation_case = self.explicit_case = super().lrp_case

    def parity_case(self, attn):
        hf = make_hf(self.kind, attn_implementation=attn)
        ids, mask = core_parity.padded_batch(hf.config.pad_token_id)
        types = torch.zeros_like(ids)
        if self.kind == "bert":
            types[:, 4:] = 1
        return hf, ids, mask, types

    def gi_case(self):
        hf = make_hf(self.kind, initializer_range=core_read_out.INIT)
        return (hf, *core_read_out._batch(hf), None, torch.tensor([2, 0, 1]))

    def conservation_case(self):
        return (make_random_bert(seed=0), *core_lrp.padded([10, 6]), None)

    def explicit_case(self):
        return (make_random_bert(seed=0), *core_lrp.padded([9, 5, 7]), torch.tensor([0, 2, 1]))


ROWS = {**{k: Core(k) for k in ("bert", "roberta")},
        **{k: FamilyI(k) for k in fam1.KINDS},
        **{v: FamilyII(v) for v in fam2.VARIANTS}}


# ------------------------------------------------------------------------------------ figures
def parity(setup) -> dict:
    out = {}
    for attn in ("eager", "sdpa"):
        case = setup.parity_case(attn)
        if case is None:
            out[f"parity_{attn}"] = None
            continue
        hf, ids, mask, types = case
        with torch.no_grad():
            expected = hf(**fam1.hf_inputs(ids, mask, types)).logits
            out[f"parity_{attn}"] = (from_hf(hf)(ids, mask, types) - expected).abs().max().item()
    return out


def gi_gs(setup) -> dict:
    """max |Δ| / max |reference|, both over all read-out points (per point, GI at the norm's input is
    0 per token — LayerNorm's scale invariance — and the reference there is rounding noise)."""
    case = setup.gi_case()
    if case is None:
        return {"gi": None, "gs": None, "gi_gs_tol": None}
    hf, ids, mask, types, target = case
    extra = {} if types is None else {"token_type_ids": types}
    delta, scale, tol = {"gi": 0.0, "gs": 0.0}, {"gi": 0.0, "gs": 0.0}, 0.0
    for point in READ_OUT_POINTS:
        x, grad = hf_gradient_at(hf, ids, mask, target, point, **extra)
        for key, method, reference in (("gi", "grad_x_input", (x * grad).sum(-1) * mask),
                                       ("gs", "gradient", grad.norm(dim=-1) * mask)):
            ours = attribute(hf, ids, mask, types, method=method, target=target, read_at=point).scores
            delta[key] = max(delta[key], (ours - reference).abs().max().item())
            scale[key] = max(scale[key], reference.abs().max().item())
            tol = max(tol, ((ours - reference).abs() / (1e-5 + 1e-4 * reference.abs())).max().item())
    return {"gi": delta["gi"] / scale["gi"], "gs": delta["gs"] / scale["gs"], "gi_gs_tol": tol}


def conservation(setup) -> dict:
    hf, ids, mask, types, target = setup.conservation_case()
    hf = zero_biases(hf)
    out = {}
    for name, model in (("conservation_fp32", hf), ("conservation_fp64", copy.deepcopy(hf).double())):
        ratio = attribute(model, ids, mask, types, method="cp_lrp", eps=0.0, target=target).conservation
        out[name] = (ratio.double() - 1).abs().max().item()
    return out


def relevance_tensor_error(hf64, ids, mask, types, target, method, eps, relevance) -> float:
    """max |x ⊙ g − explicit relevance| / max |explicit| (the check of test_lrp_equals_explicit_float64_lrp)."""
    model = from_hf(hf64)
    e = model.embed(ids, types).detach().requires_grad_(True)
    out, _ = model.run(e, mask, lrp_rules(method, eps))
    (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), e)
    return rel((e * g).detach(), relevance)


def explicit(setup) -> dict:
    hf, ids, mask, types, target = setup.explicit_case()
    hf64 = copy.deepcopy(hf).double()
    out = {"eps": setup.eps, "xg": None, "positions": None}
    for method in METHODS:
        for eps in (0.0, setup.eps):
            ours = attribute(hf64, ids, mask, types, method=method, target=target, eps=eps, backend="torch")
            relevance, expected, positions = setup.explicit(hf64, ids, mask, types, target, method, eps)
            out[f"{method}_eps{'0' if eps == 0 else '+'}"] = rel(ours.scores, expected)
            if setup.explicit_tensor:
                xg = relevance_tensor_error(hf64, ids, mask, types, target, method, eps, relevance)
                out["xg"] = max(out["xg"] or 0.0, xg)
            if positions is not None:
                scale = max(expected.abs().max(), positions.abs().max())
                error = ((ours.position_relevance.double() - positions).abs().max() / scale).item()
                out["positions"] = max(out["positions"] or 0.0, error)
    return out


def figures(name: str) -> dict:
    setup = ROWS[name]
    start = time.perf_counter()
    row = {"source": setup.source, **parity(setup), **gi_gs(setup), **conservation(setup), **explicit(setup)}
    row["seconds"] = time.perf_counter() - start
    return row


# ------------------------------------------------------------------------------------ report
COLUMNS = [("source", "source"), ("parity_eager", "parity eager"), ("parity_sdpa", "parity sdpa"),
           ("gi", "GI rel"), ("gs", "GS rel"), ("gi_gs_tol", "GI/GS tol"), ("conservation_fp32", "cons fp32"),
           ("conservation_fp64", "cons fp64"), ("attnlrp_eps0", "attnlrp ε=0"), ("attnlrp_eps+", "attnlrp ε>0"),
           ("cp_lrp_eps0", "cp_lrp ε=0"), ("cp_lrp_eps+", "cp_lrp ε>0"), ("eps", "ε>0"), ("xg", "x⊙g"),
           ("positions", "positions")]


def cell(value) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else f"{value:.1e}"


def markdown(headers, rows) -> str:
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def out_of_tolerance(results: dict) -> list[str]:
    bad = []
    for name, row in results.items():
        bounds = {**TOLERANCES, **{k: EXPLICIT_TOL for k in row if k.startswith(METHODS)}}
        bad += [f"{name} {key} = {row[key]:.2e} > {bound:g}" for key, bound in bounds.items()
                if row.get(key) is not None and not row[key] <= bound]
    return bad


def selected(families) -> list[str]:
    if not families:
        return list(ROWS)
    names = [n for n in ROWS if any(n == f or n.startswith(f + "-") for f in families)]
    unknown = [f for f in families if not any(n == f or n.startswith(f + "-") for n in ROWS)]
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {', '.join(ROWS)}")
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", help="rows to run; a family name selects its variants too "
                        f"(default: all of {', '.join(ROWS)})")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    command = " ".join(["python", *sys.argv]) if argv is None else " ".join(argv)
    print(f"`{command}`\n\ntorch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} thread(s)\n", flush=True)
    results = {}
    for name in selected(args.families):
        results[name] = figures(name)
        print(f"{name}: {results[name]['seconds']:.1f} s", file=sys.stderr, flush=True)
    table = [[name, *(cell(row[key]) for key, _ in COLUMNS)] for name, row in results.items()]
    print(markdown(["family", *(header for _, header in COLUMNS)], table))
    bad = out_of_tolerance(results)
    print("\nall figures within the tests' tolerances" if not bad else "\nOUT OF TOLERANCE:\n" + "\n".join(bad))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": command, "torch": torch.__version__, "transformers": transformers.__version__,
                       "tolerances": {**TOLERANCES, "explicit": EXPLICIT_TOL}, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
