"""Subcommands of the ``lrp-kernels`` CLI, one module each."""
