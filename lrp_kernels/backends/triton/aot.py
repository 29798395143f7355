"""Ahead-of-time compilation of the Triton kernels for sm_80 / sm_90 without a GPU, and what it shows.

Triton lowers a kernel to PTX and assembles it with the ``ptxas`` it ships, for any target, on a
machine without a device. :func:`compile_kernel` does that for one kernel, signature and config;
:func:`measure` reads back what decides speed on the card: registers per thread, spill bytes and
stack frame (``ptxas -v``), shared memory (Triton's metadata) and, from the SASS (``cuobjdump``),
the size of the kernel's main loop — instructions per iteration and tensor-core instructions
(HMMA / HGMMA) among them.

Used by ``tests/backends/test_triton_compile.py`` (every config × dtype × block size the host code
can launch) and, as a script, to print the table of the report::

    python -m lrp_kernels.backends.triton.aot            # every variant, sm_80 and sm_90
    python -m lrp_kernels.backends.triton.aot --json     # one JSON line per compiled variant
    python -m lrp_kernels.backends.triton.aot --only causal --arch 90   # the decoders' launches

Nothing here runs under the interpreter: import it in a process without ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

#: shared memory one block may use on the smallest card of each generation we build for:
#: A100 (sm_80) 163 KiB, H100/H200 (sm_90) 227 KiB
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
_MMA = re.compile(r"\b(HMMA|HGMMA|QGMMA|IMMA)\b")
_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", re.MULTILINE)
_BRANCH = re.compile(r"\bBRA\b(?:\.\w+)*\s+(?:`\(\.L_x_\d+\)|0x([0-9a-f]+))")
_PTXAS_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_REGS = re.compile(r"Used (\d+) registers")


def jit_function(kernel):
    """The ``triton.runtime.jit.JITFunction`` under any decorators (autotuner, heuristics, our own)."""
    fn = kernel
    while not isinstance(fn, triton.runtime.jit.JITFunction):
        fn = fn.fn
    return fn


def _tool(name: str, cc: int) -> str:
    """Path of the ptxas / cuobjdump that Triton itself uses for ``cc``."""
    if name == "ptxas":
        try:
            from triton.backends.nvidia.compiler import get_ptxas

            return get_ptxas(cc).path
        except ImportError:  # older Triton: one ptxas
            pass
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def available() -> str | None:
    """None when the NVIDIA backend and its tools are here, else the reason."""
    try:
        from triton.backends.nvidia import compiler  # noqa: F401  (the import error is the reason)
    except ImportError as exc:
        return f"triton has no NVIDIA backend here ({exc})"
    for tool in ("ptxas", "cuobjdump"):
        if not os.path.exists(_tool(tool, 90)):
            return f"Triton's {tool} is missing"
    return None


def compile_kernel(kernel, signature: dict, constexprs: dict, attrs: dict, num_warps: int, num_stages: int, cc: int):
    """``triton.compile`` of ``kernel`` for ``sm_<cc>``; ``signature`` maps every non-constexpr
    argument to its Triton type, ``constexprs`` names values, ``attrs`` argument names to
    ``[["tt.divisibility", 16]]``."""
    fn = jit_function(kernel)
    full = {a: "constexpr" if a in constexprs else signature[a] for a in fn.arg_names}
    index = {a: (i,) for i, a in enumerate(fn.arg_names)}
    src = ASTSource(fn, full, constexprs={index[k]: v for k, v in constexprs.items()},
                    attrs={index[k]: v for k, v in attrs.items()})
    return triton.compile(src, target=GPUTarget("cuda", cc, 32),
                          options={"num_warps": num_warps, "num_stages": num_stages})


def specialize(kernel, example: dict, constexprs: dict) -> tuple[dict, dict, dict]:
    """``(signature, constexprs, attrs)`` of a launch of ``kernel`` with ``example`` argument values,
    specialized the way Triton's JIT does it at a launch: an integer equal to 1 becomes the constant
    1, one divisible by 16 (and every pointer: torch allocations are aligned) gets
    ``tt.divisibility = 16``, integers past 2³¹ are i64, floats fp32. A pointer is given as its
    Triton type string (``"*bf16"``)."""
    fn = jit_function(kernel)
    signature, consts, attrs = {}, dict(constexprs), {}
    divisible = [["tt.divisibility", 16]]
    for name in fn.arg_names:
        if name in consts:
            continue
        value = example[name]
        if isinstance(value, str):
            signature[name], attrs[name] = value, divisible
        elif isinstance(value, float):
            signature[name] = "fp32"
        elif value == 1:
            consts[name] = 1
        else:
            signature[name] = "i64" if abs(value) >= 2**31 else "i32"
            if value % 16 == 0:
                attrs[name] = divisible
    return signature, consts, attrs


def _ptxas_report(ptx: str, cc: int) -> dict:
    arch = "sm_90a" if cc == 90 else f"sm_{cc}"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        log = subprocess.run([_tool("ptxas", cc), "-v", f"--gpu-name={arch}", path, "-o", path + ".o"],
                             capture_output=True, text=True, check=True).stderr
    stack = _PTXAS_STACK.search(log)
    return {
        "registers": int(_PTXAS_REGS.search(log).group(1)),
        "stack": int(stack.group(1)) if stack else 0,
        "spill_stores": int(stack.group(2)) if stack else 0,
        "spill_loads": int(stack.group(3)) if stack else 0,
    }


def sass(cubin: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        return subprocess.run([_tool("cuobjdump", 90), "-sass", path], capture_output=True, text=True,
                              check=True).stdout


@dataclass(frozen=True)
class Loop:
    """A backward branch's body in the SASS: ``instructions`` per iteration, ``mma`` of them HMMA/HGMMA."""

    start: int
    end: int
    instructions: int
    mma: int


def loops(text: str) -> list[Loop]:
    """Every loop of the SASS (a branch to an earlier address), innermost first by size."""
    code = [(int(addr, 16), body) for addr, body in _INSTRUCTION.findall(text)]
    found = []
    for addr, body in code:
        branch = _BRANCH.search(body)
        if branch and branch.group(1) and int(branch.group(1), 16) < addr:
            start = int(branch.group(1), 16)
            inside = [b for a, b in code if start <= a <= addr]
            found.append(Loop(start, addr, len(inside), sum(bool(_MMA.search(b)) for b in inside)))
    return sorted(found, key=lambda loop: loop.instructions)


def main_loop(text: str) -> Loop | None:
    """The loop that issues the tensor-core instructions (the K loop of a GEMM, the key loop of
    attention): the smallest loop holding all of the kernel's MMA instructions; None without MMA."""
    total = len(_MMA.findall(text))
    with_mma = [loop for loop in loops(text) if loop.mma and loop.mma >= total // 2]
    return with_mma[0] if with_mma else None


def measure(compiled, cc: int) -> dict:
    """Registers, stack / spill bytes, shared memory, SASS instructions in all and the main loop's
    size (instructions per iteration, tensor-core instructions among them) of a compiled kernel."""
    row = _ptxas_report(compiled.asm["ptx"], cc)
    row["shared"] = compiled.metadata.shared
    text = sass(compiled.asm["cubin"])
    row["instructions"] = len(_INSTRUCTION.findall(text))
    loop = main_loop(text)
    row["loop_instructions"] = loop.instructions if loop else None
    row["loop_mma"] = loop.mma if loop else None
    return row


# ------------------------------------------------------------------------------ what the host launches
_TRITON_TYPES = {"torch.bfloat16": "*bf16", "torch.float16": "*fp16", "torch.float32": "*fp32", "torch.int32": "*i32"}
#: the dtypes and sizes of the sweep: every dtype the kernels take, every head-dim block, LayerNorm /
#: RMSNorm rows (and gated-MLP halves) of MiniLM, BERT-base, BERT-large, a 4096-wide model, Gemma 3
#: 27B (5376), Llama-70B (8192) and Llama-405B (16384: ``_norm.MAX_ROW``, the longest row in one block)
DTYPES = ("bfloat16", "float16", "float32")
HEAD_DIMS = (16, 32, 64, 128, 256)
HIDDEN_SIZES = (384, 768, 1024, 4096, 5376, 8192, 16384)
#: a batch of logits over Gemma's vocabulary: more than 2³¹ elements (the count is passed as int64)
LOGITS = (2, 4100, 262144)


def record(run, cc: int) -> list:
    """The launches ``run()`` makes as if on ``sm_<cc>``, recorded on the launch hook and not run."""
    from ._launch import launch_hook, pretend

    launches = []
    with pretend(cc, SHARED_LIMIT[cc]), launch_hook(lambda launch: launches.append(launch) or True):
        run()
    return launches


def _heads(batch, length, heads, dim, dtype):
    """A [B, H, L, D] view of [B, L, H·D] memory, as the model's split_heads makes (meta tensor)."""
    return torch.empty(batch, length, heads * dim, dtype=dtype, device="meta").view(
        batch, length, heads, dim).transpose(1, 2)


def _attention_calls(dtype, dim, causal=False, window=None):
    """Forward and backward of attnlrp and cp_lrp on BERT-like head views; ``causal``: a decoder's
    (4 query heads per K/V head, optionally a sliding ``window``)."""
    from . import attention

    q, g = (_heads(2, 128, 12, dim, dtype) for _ in range(2))
    k, v = (_heads(2, 128, 3 if causal else 12, dim, dtype) for _ in range(2))
    mask = torch.zeros(2, 128, device="meta")

    def run():
        for mode in ("attnlrp", "cp_lrp"):
            out, saved = attention.forward(q, k, v, mask, dim**-0.5, mode, window, None, causal)
            attention.backward(g, q, k, v, mask, dim**-0.5, mode, saved, window, None, 0.0, causal)

    return run


def _logits_calls(dtype):
    """The ε-ratio of an LM head (and GELU · ε-ratio) over a batch of logits past 2³¹ elements."""
    from . import activation, linear

    z = torch.empty(*LOGITS, dtype=dtype, device="meta")

    def run():
        linear.eps_ratio(z, z, 1e-6)
        activation.gelu_eps_ratio(z, z, 1e-6, "none")

    return run


def _rowwise_calls(dtype, hidden):
    from . import activation, gated_mlp, layer_norm, linear, rms_norm

    x = torch.empty(256, hidden, dtype=dtype, device="meta")
    w = torch.empty(hidden, dtype=dtype, device="meta")
    halves = torch.empty(256, 2 * hidden, dtype=dtype, device="meta").chunk(2, dim=-1)  # a GeGLU's a, b

    def run():
        _, _, rstd = layer_norm.forward(x, w, w, 1e-12)
        layer_norm.backward(x, w, rstd)
        _, rstd = rms_norm.forward(x, w, 1e-5)
        rms_norm.backward(x, w, rstd)
        for fn in ("gelu", "gelu_tanh", "silu"):
            gated_mlp.forward(*halves, fn)
            for eps in (0.0, 1e-6):
                gated_mlp.backward(x, *halves, fn, eps)
        for approximate in ("none", "tanh"):
            activation.gelu_forward(x, approximate)
            activation.gelu_backward(x, x, approximate)
            activation.gelu_eps_ratio(x, x, 1e-6, approximate)
        linear.eps_ratio(x, x, 1e-6)

    return run


#: the 16-bit dtypes the decoder launches are compiled for (what ``auto`` sends to Triton)
CAUSAL_DTYPES = ("bfloat16", "float16")


def calls():
    """``(label, run)`` of every host call whose launches the sweep compiles: per dtype and head dim
    the plain attention and, in 16 bits, a decoder's — causal with grouped K/V heads, and causal
    with a sliding window (Mistral's: w = 63 of L = 128, not a multiple of 16) — the row-wise
    kernels per hidden size, and the element-wise ones over logits past 2³¹ elements."""
    for name in DTYPES:
        dtype = getattr(torch, name)
        for dim in HEAD_DIMS:
            yield f"attention {name} D{dim}", _attention_calls(dtype, dim)
            if name in CAUSAL_DTYPES:
                yield f"attention causal {name} D{dim}", _attention_calls(dtype, dim, causal=True)
                yield f"attention causal-window {name} D{dim}", _attention_calls(dtype, dim, causal=True, window=63)
        for hidden in HIDDEN_SIZES:
            yield f"rowwise {name} H{hidden}", _rowwise_calls(dtype, hidden)
        yield f"elementwise logits {name} N{LOGITS[0] * LOGITS[1] * LOGITS[2]}", _logits_calls(dtype)


def _example(launch) -> dict:
    """The launch's arguments as :func:`specialize` takes them (pointers by Triton type)."""
    out = {}
    for name, value in launch.args.items():
        out[name] = _TRITON_TYPES[str(value.dtype)] if isinstance(value, torch.Tensor) else value
    return out


@dataclass(frozen=True)
class Job:
    """One compilation: a launch's specialization with one config of its kernel's table, for ``cc``."""

    label: str
    kernel: str
    cc: int
    dtype: str
    config: str
    candidate: bool  # the host may run it on this arch (fits the estimated shared memory)
    default: bool  # the first config of its table: what runs without autotuning
    estimate: int | None  # the estimated shared memory, bytes
    signature: tuple
    constexprs: tuple
    attrs: tuple
    num_warps: int
    num_stages: int


def jobs(ccs=(80, 90), defaults_only: bool = False, only: str | None = None) -> list[Job]:
    """Every (recorded launch × config of its table × arch), deduplicated; only each table's
    default config with ``defaults_only``; only the calls whose label contains ``only``."""
    from ._launch import generation

    seen, out = set(), []
    for label, run in calls():
        if only is not None and only not in label:
            continue
        for cc in ccs:
            for launch in record(run, cc):
                for job in _launch_jobs(label, launch, cc, generation(cc)):
                    if defaults_only and not job.default:
                        continue
                    key = (job.kernel, cc, job.signature, job.constexprs, job.attrs, job.num_warps, job.num_stages)
                    if key not in seen:
                        seen.add(key)
                        out.append(job)
    return out


def _launch_jobs(label, launch, cc, gen):
    configs = launch.kernel.configs
    named = dict(launch.args, **launch.constexprs)
    candidates = configs.candidates(cc, named, SHARED_LIMIT[cc])
    dtype = next(str(v.dtype).replace("torch.", "") for v in launch.args.values() if isinstance(v, torch.Tensor))
    for i, config in enumerate(configs.table(gen, named)):
        signature, consts, attrs = specialize(launch.kernel.fn, _example(launch), dict(launch.constexprs, **config.kwargs))
        estimate = configs.shared_bytes(config, named, gen) if configs.shared_bytes else None
        yield Job(label, launch.kernel.name, cc, dtype, _config_text(config), config in candidates, i == 0, estimate,
                  tuple(signature.items()), tuple(sorted(consts.items())), tuple((k, str(v)) for k, v in attrs.items()),
                  config.num_warps, config.num_stages)


def _config_text(config) -> str:
    meta = " ".join(f"{k}={v}" for k, v in config.kwargs.items())
    return f"{meta} w{config.num_warps} s{config.num_stages}".strip()


def run_job(job: Job) -> dict:
    """Compile one job and measure it (an error is reported in the row, not raised)."""
    from . import activation, attention, gated_mlp, layer_norm, linear, rms_norm

    kernels = {k.name: k for m in (activation, attention, gated_mlp, layer_norm, linear, rms_norm) for k in vars(m).values()
               if hasattr(k, "configs") and hasattr(k, "fn")}
    row = {f: getattr(job, f) for f in ("label", "kernel", "cc", "dtype", "config", "candidate", "default", "estimate")}
    attrs = {k: [["tt.divisibility", 16]] for k, _ in job.attrs}
    try:
        compiled = compile_kernel(kernels[job.kernel].fn, dict(job.signature), dict(job.constexprs), attrs,
                                  job.num_warps, job.num_stages, job.cc)
        row.update(measure(compiled, job.cc))
    except Exception as exc:  # reported: a config that does not compile is a finding, not a crash
        row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
    return row


def sweep(workers: int | None = None, ccs=(80, 90), defaults_only: bool = False, only: str | None = None):
    """Yield the measured row of every job, compiled in parallel processes."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        yield from pool.map(run_job, jobs(ccs, defaults_only, only))


def _print_table(rows) -> None:
    print(f"{'kernel':34s} {'sm':>3s} {'dtype':9s} {'config':38s} {'cand':>4s} {'regs':>4s} {'spill st/ld':>12s} "
          f"{'smem':>7s} {'est':>7s} {'loop':>5s} {'mma':>4s}")
    for r in rows:
        spill = f"{r.get('spill_stores', '-')}/{r.get('spill_loads', '-')}"
        print(f"{r['kernel'][:34]:34s} {r['cc']:3d} {r['dtype']:9s} {r['config'][:38]:38s} {'yes' if r['candidate'] else 'no':>4s} "
              f"{r.get('registers', '-')!s:>4s} {spill:>12s} {r.get('shared', '-')!s:>7s} {r['estimate'] or '-'!s:>7s} "
              f"{r.get('loop_instructions') or '-'!s:>5s} {r.get('loop_mma') or '-'!s:>4s} {r.get('error', '')[:60]}", flush=True)


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per compiled job")
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], choices=[80, 90])
    parser.add_argument("--jobs", type=int, default=None, help="parallel compiler processes (default: every CPU)")
    parser.add_argument("--list", action="store_true", help="print the jobs, compile nothing")
    parser.add_argument("--defaults", action="store_true", help="only each table's default config")
    parser.add_argument("--only", metavar="TEXT", help="only the calls whose label contains TEXT (e.g. 'causal')")
    args = parser.parse_args(argv)
    reason = available()
    if reason:
        print(f"aot: {reason}", file=sys.stderr)
        return 2
    if args.list:
        for job in jobs(tuple(args.arch), args.defaults, args.only):
            print(job.label, job.kernel, job.cc, job.config, "candidate" if job.candidate else "-")
        return 0
    rows = sweep(args.jobs, tuple(args.arch), args.defaults, args.only)
    if args.json:
        for row in rows:
            print(json.dumps(row), flush=True)
    else:
        _print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
