"""A generation explained in one packed call against a loop of ``attribute`` calls, CPU.

    python benchmarks/generation.py [--layers 4] [--prompt 256] [--tokens 8,32] [--memory 1,8,32,128]
                                    [--rounds 3] [--warmup 1] [--threads 2] [--method attnlrp] [--longest 1024,2048,4096]

The model has Llama-3.2-1B's dimensions (hidden 2048, 32 query heads, 8 K/V heads, intermediate
8192, vocabulary 128,256, tied embeddings, llama3 rotary scaling) with ``--layers`` layers and random
weights, float32; the prompt is ``--prompt`` random tokens (a word-level tokenizer over the vocabulary:
one word per token, so text and ids map one to one). Rows, per N of ``--tokens``, timed interleaved
(round-robin, ``--rounds`` times after ``--warmup`` untimed rounds):

``generate``            ``transformers``' ``generate``, greedy, N new tokens (``min_new_tokens=N``)
``packed``              :meth:`Explainer.explain` with the generated tokens as ``continuation``: one
                        forward over prompt + N tokens, one backward per token (generation excluded)
``explain_generation``  :meth:`Explainer.explain_generation`: generate, then ``packed`` (included)
``loop``                N :func:`lrp_kernels.attribute` calls, call i on the prompt + the first i
                        generated tokens with target = generated token i (the same matrix, row by row)

Memory (``--memory``): the peak bytes of tensors (``benchmarking.cpu_peak_bytes``: the profiler's
allocation events replayed) of one packed call per N — with ``matrix=False`` (one backward of the
summed seeds: the graph held and one gradient, which is the peak whatever the number of backwards;
the N backwards add only the [N, prompt + N] float32 matrix, and ``--check-memory`` measures N = 8 both
ways) — and of the loop's longest call. ``--longest``: the peak of one next-token explanation of a
prompt of each length, to extrapolate the longest prompt that fits. Prints medians, spread
(interquartile or full range relative to the median), this process' CPU seconds (``time.process_time``:
less sensitive than wall time to other processes on a shared machine) and the load average before and
after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

LLAMA_32_1B = dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=8, intermediate_size=8192,
                   vocab_size=128256, tie_word_embeddings=True, max_position_embeddings=131072,
                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192})


def build(layers: int, max_length: int):
    """A random Llama-3.2-1B-sized LM with ``layers`` layers, and a word-level tokenizer (word ``w<i>`` is
    token i) wrapped for the Explainer."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(num_hidden_layers=layers, bos_token_id=None, eos_token_id=None,
                                      pad_token_id=0, **LLAMA_32_1B)
    hf = transformers.LlamaForCausalLM(config).eval()
    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(config.vocab_size)}, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return hf, tokenizer


def words(ids) -> str:
    return " ".join(f"w{i}" for i in ids)


def rows(explainer, hf, prompt_ids: list[int], n: int, method: str) -> dict:
    """The callables of one N (generation run once here to know the tokens the others explain)."""
    from lrp_kernels import attribute

    prompt = words(prompt_ids)
    ids = torch.tensor([prompt_ids])
    kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        generated = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)[0, len(prompt_ids):]
    generated = generated.tolist()

    def generate():
        with torch.no_grad():
            hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)

    def loop():
        for i, token in enumerate(generated):
            attribute(hf, torch.tensor([prompt_ids + generated[:i]]), method=method, target=token)

    return {
        "generate": generate,
        "packed": lambda: explainer.explain(prompt, continuation=" " + words(generated), methods=method),
        "explain_generation": lambda: explainer.explain_generation(prompt, max_new_tokens=n, min_new_tokens=n,
                                                                   method=method),
        "loop": loop,
    }, generated


def describe(samples: list[float]) -> str:
    median = statistics.median(samples)
    if len(samples) < 2:
        return f"{median:8.2f} s"
    if len(samples) < 4:
        spread = (max(samples) - min(samples)) / median
    else:
        q = statistics.quantiles(samples, n=4)
        spread = (q[2] - q[0]) / median
    return f"{median:8.2f} s ±{100 * spread / 2:4.0f} %"


def time_rows(explainer, hf, prompt_ids, counts, method: str, rounds: int, warmup: int = 1) -> None:
    for n in counts:
        fns, _ = rows(explainer, hf, prompt_ids, n, method)
        samples = {name: [] for name in fns}
        cpu_samples = {name: [] for name in fns}  # this process' CPU seconds: less sensitive to other load
        for r in range(warmup + rounds):
            load = os.getloadavg()[0]
            line = []
            for name, fn in fns.items():
                start, cpu = time.perf_counter(), time.process_time()
                fn()
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                if r >= warmup:
                    samples[name].append(seconds)
                    cpu_samples[name].append(cpu)
                line.append(f"{name} {seconds:.2f}s ({cpu:.0f} CPU-s)")
            print(f"N={n} round {r}{' (warm-up)' if r < warmup else ''}: {', '.join(line)}; load {load:.1f}", flush=True)
        ratio = [p / lp for p, lp in zip(samples["packed"], samples["loop"])]
        cpu_ratio = [p / lp for p, lp in zip(cpu_samples["packed"], cpu_samples["loop"])]
        print(f"\nN = {n}, prompt {len(prompt_ids)} tokens, method {method}, {torch.get_num_threads()} threads")
        for name, values in samples.items():
            print(f"  {name:20s} {describe(values)}   CPU {statistics.median(cpu_samples[name]):8.1f} s")
        print(f"  packed / loop        {statistics.median(ratio):.3f} (per round: {', '.join(f'{x:.3f}' for x in ratio)}); "
              f"in CPU time {statistics.median(cpu_ratio):.3f}"
              f"\n  explain_generation / (generate + loop) "
              f"{statistics.median(samples['explain_generation']) / (statistics.median(samples['generate']) + statistics.median(samples['loop'])):.3f}\n",
              flush=True)


def memory(explainer, hf, prompt_ids, counts, method: str, check: bool) -> None:
    from lrp_kernels import attribute
    from lrp_kernels.benchmarking import cpu_peak_bytes
    from lrp_kernels.token_attribution import attribute_tokens, continuation_targets

    gib = 2 ** 30
    for n in counts:
        generated = [(17 * k + 5) % 128256 for k in range(n)]  # any tokens: memory does not depend on them
        ids = torch.tensor([prompt_ids + generated])
        targets = continuation_targets(ids, None, len(prompt_ids))
        summed = cpu_peak_bytes(lambda: attribute_tokens(hf, ids, None, targets, method=method, matrix=False))
        longest = cpu_peak_bytes(lambda: attribute(hf, torch.tensor([prompt_ids + generated[:-1]]), method=method,
                                                   target=generated[-1]))
        line = (f"N = {n:4d}: packed {summed / gib:.3f} GiB above the model; the loop's longest call "
                f"{longest / gib:.3f} GiB")
        if check and n == 8:
            full = cpu_peak_bytes(lambda: attribute_tokens(hf, ids, None, targets, method=method))
            line += f"; packed with the matrix (N backwards) {full / gib:.3f} GiB"
        print(line, flush=True)


def longest(explainer, lengths, method: str) -> None:
    from lrp_kernels.benchmarking import cpu_peak_bytes

    for length in lengths:
        prompt = words([(31 * k + 7) % 128256 for k in range(length)])
        start = time.perf_counter()
        peak = cpu_peak_bytes(lambda: explainer.explain(prompt, methods=method))
        print(f"prompt {length:6d} tokens: next-token explanation peak {peak / 2 ** 30:.3f} GiB above the model "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--tokens", default="8,32", help="N to time (comma-separated; empty: none)")
    parser.add_argument("--memory", default="1,8,32,128", help="N to measure peak memory for (empty: none)")
    parser.add_argument("--check-memory", action="store_true", help="also N = 8 with the matrix (N backwards)")
    parser.add_argument("--longest", default="", help="prompt lengths to measure a next-token explanation at")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (per N)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--method", default="attnlrp")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lrp_kernels import Explainer

    counts = [int(n) for n in args.tokens.split(",") if n]
    lengths = [int(n) for n in args.longest.split(",") if n]
    hf, tokenizer = build(args.layers, 0)
    size = sum(p.numel() * p.element_size() for p in hf.parameters()) / 2 ** 30
    explainer = Explainer(hf, tokenizer, max_length=max([args.prompt + 128, *[n + 1 for n in lengths]]))
    prompt_ids = [(7919 * k + 13) % 128256 for k in range(args.prompt)]
    print(f"Llama-3.2-1B dimensions, {args.layers} layers, random weights, float32 ({size:.2f} GiB of parameters); "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()}", flush=True)
    time_rows(explainer, hf, prompt_ids, counts, args.method, args.rounds, args.warmup)
    memory(explainer, hf, prompt_ids, [int(n) for n in args.memory.split(",") if n], args.method, args.check_memory)
    longest(explainer, lengths, args.method)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
