"""Long inputs on the CPU: peak memory and time per call of a ModernBERT-size classifier.

    python benchmarks/long_inputs.py                       # the two tables below, every row
    python benchmarks/long_inputs.py --lengths 1024,2048 --rows forward,attnlrp --json out.json

(a) ModernBERT-base dimensions (22 layers, hidden 768, 12 heads, intermediate 1152, a local window
of 128 tokens — 64 either side — and a global layer every 3rd) at L = 1k, 2k, 4k, 8k; (b) the same
width with 4 layers at 16k and 32k. Random weights, batch 1, float32, no padding. Rows: ``forward``
(transformers' own ``ModernBertForSequenceClassification`` with ``attn_implementation="sdpa"``,
under ``torch.no_grad``), ``gradient`` (``lrp_kernels.attribute(method="gradient")``: one forward and
one backward of the plain gradient), ``attnlrp`` and ``cp_lrp`` (``attribute`` with the ``auto``
backend: the ``cpp`` kernels here); ``<method>+checkpoint`` (e.g. ``attnlrp+checkpoint``, not in the
default rows) runs a method with ``checkpoint=True``.

Each measurement runs in a FRESH PROCESS (``subprocess``), so its peak resident memory is its own:
the child reports ``ru_maxrss`` (peak RSS) and the RSS it had once the model and inputs were built,
and the table shows the peak and the growth over that baseline (what the call itself needed). The
parent polls the child's RSS and stops it once it exceeds ``--budget-gib`` (default 14 GiB; the
machine is shared), or after ``--timeout`` seconds: such a row reads "> budget" / "> timeout".
Time: wall-clock seconds of one call (a warm-up call first when the row is short: ``--warmup-below``)
and the CPU seconds the child spent in it (user + system, all threads: on a shared machine the
steadier figure to compare rows by). The load average is printed with every row (timings move with
it). It reports, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROWS = ("forward", "gradient", "attnlrp", "cp_lrp")
#: (name, layers, lengths) of the two tables
TABLES = (("a: ModernBERT-base, 22 layers", 22, (1024, 2048, 4096, 8192)),
          ("b: 4 layers of ModernBERT-base width", 4, (16384, 32768)))


def modernbert_config(layers: int, length: int):
    from transformers import ModernBertConfig

    return ModernBertConfig(vocab_size=50368, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
                            intermediate_size=1152, local_attention=128, global_attn_every_n_layers=3,
                            max_position_embeddings=max(8192, length), num_labels=2, pad_token_id=50283,
                            classifier_pooling="mean")


def _rss_kib() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def child(row: str, layers: int, length: int, warmup: bool) -> dict:
    """One measurement, in this (fresh) process."""
    import torch
    from transformers import ModernBertForSequenceClassification

    import lrp_kernels

    torch.manual_seed(0)
    hf = ModernBertForSequenceClassification(modernbert_config(layers, length)).eval()
    hf.config._attn_implementation = "sdpa"
    ids = torch.randint(5, 50000, (1, length))
    mask = torch.ones_like(ids)
    if row == "forward":
        def call():
            with torch.no_grad():
                return hf(input_ids=ids, attention_mask=mask).logits
    else:
        model = lrp_kernels.from_hf(hf)
        method, _, option = row.partition("+")

        def call():
            return lrp_kernels.attribute(model, ids, mask, method=method, target=0,
                                         checkpoint=option == "checkpoint").scores
    baseline = _rss_kib()
    if warmup:
        call()
    start, cpu = time.perf_counter(), _cpu_seconds()
    call()
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_kib": peak, "baseline_kib": baseline,
            "threads": torch.get_num_threads()}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(row: str, layers: int, length: int, args) -> dict:
    """Run one row in a fresh process, stopping it past the memory budget or the timeout."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", row, str(layers), str(length),
           "1" if length < args.warmup_below else "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start, peak_seen, why = time.monotonic(), 0, None
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/statm", encoding="ascii") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            rss = 0
        peak_seen = max(peak_seen, rss)
        if rss > args.budget_gib * 2**30:
            why = f"> {args.budget_gib:g} GiB"
        elif time.monotonic() - start > args.timeout:
            why = f"> {args.timeout:g} s"
        if why:
            proc.kill()
            proc.wait()
            return {"failed": why, "peak_kib": peak_seen // 1024}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        return {"failed": (err.strip().splitlines() or ["exit %d" % proc.returncode])[-1][:120]}
    return json.loads(out.strip().splitlines()[-1])


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def cell(result: dict) -> tuple[str, ...]:
    if "failed" in result:
        return result["failed"], "-", "-", "-"
    gib = 2**20
    return (f"{result['seconds']:.1f}", f"{result['cpu_seconds']:.1f}", f"{result['peak_kib'] / gib:.2f}",
            f"{(result['peak_kib'] - result['baseline_kib']) / gib:.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("ROW", "LAYERS", "LENGTH", "WARMUP"), help=argparse.SUPPRESS)
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated, of {', '.join(ROWS)} (and <method>+checkpoint)")
    parser.add_argument("--tables", default="a,b", help="a (22 layers, 1k-8k), b (4 layers, 16k-32k)")
    parser.add_argument("--lengths", help="comma-separated lengths instead of the tables' own")
    parser.add_argument("--budget-gib", type=float, default=14.0, help="stop a row whose RSS exceeds this")
    parser.add_argument("--timeout", type=float, default=900.0, help="stop a row after this many seconds")
    parser.add_argument("--warmup-below", type=int, default=4096, help="warm-up call for lengths below this")
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args(argv)
    if args.child:
        row, layers, length, warmup = args.child
        print(json.dumps(child(row, int(layers), int(length), warmup == "1")))
        return 0
    import torch

    rows = [r for r in args.rows.split(",") if r]
    print(f"batch 1, float32, cpu, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
          f"one fresh process per row; load average {load()}", flush=True)
    results = []
    for name, layers, lengths in TABLES:
        if name[0] not in args.tables.split(","):
            continue
        if args.lengths:
            lengths = [int(x) for x in args.lengths.split(",")]
        print(f"\n({name})\n{'length':>7} {'row':>9} {'seconds':>9} {'cpu s':>9} {'peak GiB':>9} {'call GiB':>9}  "
              "load", flush=True)
        for length in lengths:
            for row in rows:
                result = measure(row, layers, length, args)
                result.update(table=name[0], layers=layers, length=length, row=row, load=load())
                results.append(result)
                print(f"{length:>7} {row:>9} " + " ".join(f"{c:>9}" for c in cell(result)) + f"  {result['load']}",
                      flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
