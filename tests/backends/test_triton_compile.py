"""Ahead-of-time compilation of the Triton kernels for Ampere (sm_80) and Hopper (sm_90), no GPU needed.

Triton lowers a kernel to PTX and assembles it with the ptxas it ships, for any target, without a
device. That catches what the interpreter cannot: compiled-mode type and constexpr errors, tl.dot
shape rules, and shared memory beyond what a card has. The compilation runs in a child process
(this file run as a script) because the interpreter tests switch this process to interpreted kernels.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton", reason="triton is not installed (it is a test dependency: pip install -e .[test])")

# Shared memory per block on the smallest card of each generation: A100 (sm_80) 163 KiB,
# H100 (sm_90) 227 KiB. Consumer Ampere (sm_86, 99 KiB) is covered by the autotuner, which drops
# configs that do not fit.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}


def _jobs():
    """(name, kernel, pointer dtypes, float scalars, constexprs) for every kernel variant."""
    import lrp_kernels.backends.triton.activation as G
    import lrp_kernels.backends.triton.attention as A
    import lrp_kernels.backends.triton.layer_norm as LN
    import lrp_kernels.backends.triton.linear as LI

    t = "bf16"
    att = {n: f"*{t}" for n in ("q_ptr", "k_ptr", "v_ptr", "o_ptr", "g_ptr", "gk_ptr", "gv_ptr", "gq_ptr")}
    att.update({n: "*fp32" for n in ("mask_ptr", "m_ptr", "ls_ptr", "delta_ptr")})
    gemm = {"g_ptr": f"*{t}", "z_ptr": f"*{t}", "w_ptr": f"*{t}", "out_ptr": f"*{t}"}
    fp32_gemm = {k: "*fp32" for k in gemm}
    return [
        ("gelu_backward", G._gelu_backward_kernel, {"g_ptr": f"*{t}", "u_ptr": f"*{t}", "out_ptr": f"*{t}"},
         ("eps",), {"HAS_EPS": True, "APPROX_TANH": True}),
        ("layer_norm_forward", LN._layer_norm_forward_kernel,
         {"x_ptr": f"*{t}", "w_ptr": f"*{t}", "b_ptr": f"*{t}", "y_ptr": f"*{t}", "mean_ptr": "*fp32", "rstd_ptr": "*fp32"},
         ("eps",), {"HAS_WEIGHT": True, "HAS_BIAS": True, "BLOCK_H": 1024}),
        ("linear_backward gelu·eps bf16", LI._linear_backward_kernel, gemm, ("eps",),
         {"RULE": 3, "APPROX_TANH": False, "DOT_PRECISION": "ieee"}),
        ("linear_backward eps fp32", LI._linear_backward_kernel, fp32_gemm, ("eps",),
         {"RULE": 1, "APPROX_TANH": False, "DOT_PRECISION": "ieee"}),
        ("attention_forward D64", A._attention_forward_kernel, att, ("scale",),
         {"HAS_MASK": True, "DOT_PRECISION": "ieee", "BLOCK_D": 64}),
        ("attention_backward_dkdv D64", A._attention_backward_dkdv_kernel, att, ("scale", "qk_factor", "v_factor"),
         {"HAS_MASK": True, "COMPUTE_QK": True, "DOT_PRECISION": "ieee", "BLOCK_D": 64}),
        ("attention_backward_dq D32", A._attention_backward_dq_kernel, att, ("scale", "qk_factor"),
         {"HAS_MASK": True, "DOT_PRECISION": "ieee", "BLOCK_D": 32}),
    ]


def _main() -> None:
    """Child process: compile each job with the first config of each generation's list, print JSON."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import lrp_kernels.backends.triton._common as common

    assert not common.INTERPRETED
    for name, kernel, pointers, floats, consts in _jobs():
        fn = kernel
        while not isinstance(fn, triton.runtime.jit.JITFunction):
            fn = fn.fn
        for cc in (80, 90):
            config = _first_config(kernel.configs, cc, common, pointers)
            values = dict(consts, **config.kwargs)
            signature = {
                a: "constexpr" if a in values else pointers.get(a, "fp32" if a in floats else "i32") for a in fn.arg_names
            }
            src = ASTSource(fn, signature, constexprs={(fn.arg_names.index(k),): v for k, v in values.items()})
            try:
                compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32),
                                          options={"num_warps": config.num_warps, "num_stages": config.num_stages})
                row = {"name": name, "cc": cc, "ok": True, "shared": compiled.metadata.shared}
            except Exception as exc:  # reported to the parent test
                row = {"name": name, "cc": cc, "ok": False, "error": f"{type(exc).__name__}: {exc}"[-400:]}
            print(json.dumps(row), flush=True)


def _first_config(configs, cc, common, pointers):
    """The first config the autotuner keeps on compute capability ``cc`` (its generation's list;
    for the GEMM, the first whose estimated shared memory fits the card)."""
    import lrp_kernels.backends.triton.attention as A
    import lrp_kernels.backends.triton.layer_norm as LN
    import lrp_kernels.backends.triton.linear as LI

    hopper_ids = set()
    for table in (A._FORWARD, A._BACKWARD, A._DELTA, LI._GEMM, LN._ROWWISE, common.ELEMENTWISE):
        hopper_ids |= {id(c) for c in table["hopper"]}
    arch = [c for c in configs if (id(c) in hopper_ids) == (cc >= 90)]
    if "w_ptr" in pointers and "BLOCK_K" in arch[0].kwargs:
        element = 4 if pointers["w_ptr"] == "*fp32" else 2
        arch = [c for c in arch if LI.gemm_shared_bytes(c, element) <= SHARED_LIMIT[cc]] or arch
    return arch[0]


def test_every_kernel_compiles_for_ampere_and_hopper():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    try:
        from triton.backends.nvidia import compiler  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"triton has no NVIDIA backend here ({exc})")
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=170)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(rows) == 2 * len(_jobs())
    failed = [f"{r['name']} sm_{r['cc']}: {r['error']}" for r in rows if not r["ok"]]
    assert not failed, "\n".join(failed)
    for r in rows:
        assert r["shared"] <= SHARED_LIMIT[r["cc"]], f"{r['name']} sm_{r['cc']} needs {r['shared']} B of shared memory"


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
    _main()
