"""Prints the table of ``benchmarks/ops`` (medians and speed-ups over the torch reference) at the end of the run."""

from __future__ import annotations

import bert_base  # benchmarks/ops helper


def pytest_terminal_summary(terminalreporter):
    lines = bert_base.table_lines()
    if lines:
        terminalreporter.write_line("")
        for line in lines:
            terminalreporter.write_line(line)
