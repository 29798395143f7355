"""``lrp-kernels bench`` on a tiny random model: the table's rows and columns (its user
errors are in test_cli_errors.py)."""

import pytest

from lrp_kernels.cli import main

BASE = ["bench", "--model", "tiny", "--batch", "2", "--seq", "8", "--repeat", "2", "--warmup", "0", "--threads", "1"]


def _table(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    header = lines.index(next(line for line in lines if line.startswith("row")))
    return {cells[0]: cells[1:] for cells in (line.split() for line in lines[header + 2:])}


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_bench_prints_every_row_with_ratios_throughput_and_memory(capsys, backend):
    assert main(BASE + ["--backend", backend, "--methods", "attnlrp,cp_lrp"]) == 0
    out = capsys.readouterr().out
    assert "batch 2 x seq 8" in out and "tiny" in out
    rows = _table(out)
    assert list(rows) == ["forward", "gradient", "attnlrp", "cp_lrp"]
    for name, (ms, iqr, x_forward, x_gradient, tokens_per_s, peak) in rows.items():
        assert float(ms) > 0 and iqr.endswith("%")
        # tokens/s is batch·seq over the median time (both printed rounded).
        assert float(tokens_per_s) == pytest.approx(16 / (float(ms) / 1e3), rel=0.1)
        assert float(peak) >= 0
    assert rows["forward"][2] == "1.00" and rows["gradient"][3] == "1.00"
    # The gradient keeps activations for its backward: it holds memory that no_grad forward frees.
    assert float(rows["gradient"][5]) > 0


def test_bench_without_memory_prints_dashes(capsys):
    assert main(BASE + ["--methods", "grad_x_input", "--no-memory"]) == 0
    rows = _table(capsys.readouterr().out)
    assert all(cells[-1] == "-" for cells in rows.values())


def test_bench_prints_as_it_goes_and_keeps_the_profiler_quiet(capfd):
    assert main(BASE + ["--methods", "attnlrp", "--warmup", "1"]) == 0
    out, err = capfd.readouterr()  # file descriptors: the profiler's C++ logging would show here
    assert err.splitlines() == [
        line for line in err.splitlines() if line.startswith(("bench: warm-up 1/1: forward ", "bench: round "))]
    assert [line.split(":")[1].strip() for line in err.splitlines()] == ["warm-up 1/1", "round 1/2", "round 2/2"]
    assert out.splitlines()[0].startswith("model tiny")


def test_the_readme_names_the_methods_bench_times_by_default():
    """The README's `bench` line names the default methods (not "each method": bench times four)."""
    from pathlib import Path

    from lrp_kernels.cli.bench import DEFAULT_METHODS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    line = next(part for part in readme.split("\n- ") if part.startswith("`bench`"))
    assert f"`{','.join(DEFAULT_METHODS)}`" in line and "each method" not in line
