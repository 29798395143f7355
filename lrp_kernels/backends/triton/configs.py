"""The configs of every Triton kernel, per GPU generation, dtype and block size — first the default.

Chosen from the ahead-of-time compilation of every candidate for sm_80 and sm_90 with Triton 3.6
(the version on the lent H100/H200 image) and 3.9 (``python -m lrp_kernels.backends.triton.aot``):
a 16-bit config is listed for a (generation, element size, BLOCK_D) only if it compiles there with
no register spills under both versions and within the generation's shared memory (``tests/backends/test_triton_compile.py`` asserts both for
every entry, and that every head dim up to ``MAX_HEAD_DIM`` keeps at least one config). The first
entry is what runs without tuning (``LRP_KERNELS_TRITON_AUTOTUNE=0``); the others are tuned among.
``shared_bytes`` estimates are upper bounds of what the compiler allocates (checked by the same
test), used to drop configs on cards with less shared memory (sm_86/sm_89: 99 KiB).

float32 has its own, smaller tiles: IEEE float32 ``tl.dot`` runs on FMA units with the operands in
registers (no tensor cores), so the 16-bit tiles spill there (14–115 KB of spill traffic per thread
before). They are spill-free with Triton 3.6; with 3.9 the head-dim-128 backward still spills
(8–1236 B). ``auto`` sends float32 to cuBLAS/SDPA, not here.
"""

from __future__ import annotations

import triton

from ._launch import Configs


def _cfg(meta: dict, stages: int, warps: int) -> triton.Config:
    return triton.Config(meta, num_stages=stages, num_warps=warps)


def _blocks(bm: int, bn: int, stages: int, warps: int) -> triton.Config:
    return _cfg({"BLOCK_M": bm, "BLOCK_N": bn}, stages, warps)


def _element_bytes(named: dict, pointer: str) -> int:
    return named[pointer].element_size()


# ------------------------------------------------------------------------------ attention
# (generation, element bytes) -> BLOCK_D -> [(BLOCK_M, BLOCK_N, stages, warps)]. The 16-bit lists
# serve bfloat16 and float16 alike (same registers and shared memory in every compiled config).
_FORWARD = {
    ("hopper", 2): {
        16: [(128, 64, 3, 4), (128, 128, 3, 8)],
        32: [(128, 64, 3, 4), (128, 128, 3, 8)],
        64: [(128, 64, 3, 8), (128, 128, 3, 8)],
        128: [(128, 64, 3, 8), (64, 64, 3, 4)],
        256: [(64, 64, 2, 8), (128, 64, 2, 8)],
    },
    ("ampere", 2): {
        16: [(128, 64, 3, 8), (64, 64, 3, 4)],
        32: [(128, 64, 3, 8), (64, 64, 3, 4)],
        64: [(128, 64, 3, 8), (64, 64, 3, 4)],
        128: [(128, 64, 3, 8), (64, 32, 2, 4)],  # the second fits 99 KiB (sm_86/sm_89)
        256: [(64, 64, 2, 8), (64, 32, 2, 8)],
    },
}
# dQ: BLOCK_M queries per program, BLOCK_N keys per step
_DQ = {
    ("hopper", 2): {
        16: [(64, 128, 3, 8), (64, 64, 3, 4)],
        32: [(64, 128, 3, 8), (64, 64, 3, 4)],
        64: [(64, 128, 3, 8), (128, 64, 2, 8)],
        128: [(128, 64, 2, 8), (64, 64, 3, 4)],
        256: [(32, 64, 2, 8), (32, 32, 2, 8)],
    },
    ("ampere", 2): {
        16: [(32, 64, 3, 4), (32, 32, 2, 4)],
        32: [(32, 64, 3, 4), (32, 32, 2, 4)],
        64: [(32, 64, 3, 4), (32, 32, 2, 4)],
        128: [(64, 64, 2, 8), (32, 32, 2, 4)],
        256: [(32, 64, 2, 8), (32, 32, 2, 4)],
    },
}
# dK/dV: BLOCK_M queries per step, BLOCK_N keys per program
_DKDV = {
    ("hopper", 2): {
        16: [(64, 128, 3, 8), (64, 64, 3, 4)],
        32: [(64, 128, 3, 8), (64, 64, 3, 4)],
        64: [(64, 128, 3, 8), (32, 128, 2, 8)],
        128: [(32, 64, 2, 8), (32, 32, 2, 4)],
        256: [(32, 32, 2, 8), (16, 32, 2, 8)],
    },
    ("ampere", 2): {
        16: [(32, 64, 3, 4), (32, 128, 2, 8)],
        32: [(32, 64, 3, 4), (32, 128, 2, 8)],
        64: [(32, 128, 2, 8), (32, 64, 3, 4)],
        128: [(32, 64, 2, 8), (32, 32, 2, 4)],
        256: [(32, 32, 2, 8), (16, 32, 2, 8)],
    },
}
# float32 (IEEE dot on the FMA units, operands in registers): small tiles; head dim 256 has no
# spill-free config and runs the torch reference (``attention.runs_reference``)
_F32 = {16: [(32, 32, 2, 4), (16, 32, 2, 4)], 32: [(32, 32, 2, 4), (16, 32, 2, 4)],
        64: [(32, 32, 2, 4), (16, 32, 2, 4)], 128: [(16, 16, 2, 4), (32, 16, 2, 4)]}
_F32_BACKWARD = {d: [(16, 32, 2, 4), (16, 16, 2, 4)] for d in (16, 32, 64, 128)}
for _gen in ("hopper", "ampere"):
    _FORWARD[(_gen, 4)] = _F32
    _DQ[(_gen, 4)] = _F32_BACKWARD
    _DKDV[(_gen, 4)] = _F32_BACKWARD


#: rotary positions on load (``ROTARY``): the head dims whose kernels compile without spills on
#: Hopper with the tables' configs (``aot``, bfloat16, Triton 3.9: D64 at most 28 B in one dK/dV
#: config; D128 spills 0.2–1.4 KB and needs more shared memory than sm_90 has). On Ampere every
#: listed config spills with rotary (D64 dK/dV: 0.3–9 KB), so there it is the torch reference's.
_ROTARY_HEAD_DIMS = {"hopper": (16, 32, 64), "ampere": ()}


#: causal launches (``CAUSAL``, with or without a window: a decoder's, 4 query heads per K/V head):
#: where a plain config spills with the causal loop (``aot --only causal``, Triton 3.9, bfloat16 and
#: float16 alike: 4–60 B per thread), these lists replace the plain ones; every other entry is the
#: plain table's, spill-free for causal launches too. float32 causal launches: the plain tables.
_CAUSAL_FORWARD = {
    ("hopper", 2): {256: [(64, 64, 2, 8)]},
    ("ampere", 2): {128: [(64, 32, 2, 8), (64, 64, 2, 4)], 256: [(64, 32, 2, 8)]},
}
_CAUSAL_DQ: dict = {}
_CAUSAL_DKDV = {
    ("hopper", 2): {64: [(32, 128, 2, 8)], 128: [(32, 64, 2, 8)]},
    ("ampere", 2): {32: [(32, 64, 3, 4)], 64: [(16, 128, 2, 8), (16, 64, 3, 4)]},
}


def _attention_table(table, causal_table):
    def configs(gen: str, named: dict) -> list:
        if named.get("ROTARY") and named["BLOCK_D"] not in _ROTARY_HEAD_DIMS[gen]:
            return []
        key = (gen, _element_bytes(named, "q_ptr"))
        rows = table.get(key, {}).get(named["BLOCK_D"], [])
        if named.get("CAUSAL"):
            rows = causal_table.get(key, {}).get(named["BLOCK_D"], rows)
        return [_blocks(*row) for row in rows]

    return configs


def _attention_shared(stream: str, resident: str, residents: int):
    """Upper bound of an attention kernel's shared memory: per pipeline stage two streamed tiles
    (K and V, or Q and g_O) of ``stream`` rows (two stages at least), the ``residents`` tiles of
    ``resident`` rows the program keeps (Q; Q and g_O; K and V), with rotary positions the cos and
    sin tiles of the streamed rows per stage, and 2 KiB of barriers and scratch. Equal to what Triton
    3.6 allocates on sm_90 up to those 2 KiB; above it on sm_80. A causal launch on Hopper stages one
    [BLOCK_M, BLOCK_N] tile more through shared memory for the wgmma (the probabilities behind the
    masked/unmasked branch: measured 2.4–6.3 KB above the plain estimate with Triton 3.9; none on
    sm_80), counted in the input dtype."""
    def estimate(config: triton.Config, named: dict, gen: str = "hopper") -> int:
        kw = config.kwargs
        rows = max(config.num_stages, 2) * 2 * kw[stream] + residents * kw[resident]
        extra = 0
        if named.get("ROTARY"):  # cos and sin of the streamed rows in their dtype (measured: all stages but one)
            extra = max(config.num_stages, 2) * 2 * kw[stream] * named["BLOCK_D"] * _element_bytes(named, "cos_ptr")
        if named.get("CAUSAL") and gen == "hopper":
            extra += kw["BLOCK_M"] * kw["BLOCK_N"] * _element_bytes(named, "q_ptr")
        return _element_bytes(named, "q_ptr") * named["BLOCK_D"] * rows + extra + 2048

    return estimate


ATTENTION_FORWARD = Configs(_attention_table(_FORWARD, _CAUSAL_FORWARD), _blocks(32, 16, 1, 1),
                            _attention_shared("BLOCK_N", "BLOCK_M", 1))
ATTENTION_DQ = Configs(_attention_table(_DQ, _CAUSAL_DQ), _blocks(16, 32, 1, 1), _attention_shared("BLOCK_N", "BLOCK_M", 2))
ATTENTION_DKDV = Configs(_attention_table(_DKDV, _CAUSAL_DKDV), _blocks(16, 32, 1, 1),
                         _attention_shared("BLOCK_M", "BLOCK_N", 2))

# ------------------------------------------------------------------------------ element-wise, row-wise
# ELEMENTWISE: GELU forward / backward, the ε-ratio, the gated MLP's forward and backward (memory-bound,
# one flat block of BLOCK elements per program; the gated backward, 3 loads and 2 stores an element,
# stays spill-free at BLOCK 4096 / 8 warps: ≤ 94 registers, sm_80 and sm_90, every dtype).
# ROWWISE: LayerNorm's and RMSNorm's forwards and the norms' shared backward (one row per program).
_ELEMENTWISE = {
    "hopper": [({"BLOCK": 2048}, 1, 4), ({"BLOCK": 4096}, 1, 8)],
    "ampere": [({"BLOCK": 1024}, 1, 4), ({"BLOCK": 2048}, 1, 8)],
}
ELEMENTWISE = Configs(lambda gen, named: [_cfg(*row) for row in _ELEMENTWISE[gen]], _cfg({"BLOCK": 256}, 1, 1))


def _rowwise(gen: str, named: dict) -> list:
    """One row per program: warps by row length (a row of 1024 is 8 elements per thread at 4 warps;
    at 4096 float32, 4 warps spill on sm_80; at 8192 float32, LayerNorm's forward at 8 warps spills
    8 B there, so 16 warps first; up to ``_norm.MAX_ROW`` = 16384 16 warps hold ≤ 86 registers)."""
    block = named["BLOCK_H"]
    warps = [4, 8] if block <= 2048 else [8, 16] if block <= 4096 else [16, 8]
    return [_cfg({}, 1, w) for w in warps]


ROWWISE = Configs(_rowwise, _cfg({}, 1, 1))
