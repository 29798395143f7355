"""How every Triton kernel of this backend is launched: configs, tuning, device guard, hooks.

A :class:`Kernel` wraps one ``@triton.jit`` function. ``kernel[grid](*args, **constexprs)``

1. picks a config: the candidates of the kernel's :class:`Configs` for this GPU generation and
   this launch (dtype, block sizes), those whose estimated shared memory fits the device; the first
   candidate is the shipped default. With more than one, the first launch of a tuning key
   benchmarks them (``triton.testing.do_bench``) and the choice is remembered in memory and in a
   JSON file keyed by GPU name and versions (:func:`tuning_file`), so a later process does not
   benchmark again. ``LRP_KERNELS_TRITON_AUTOTUNE=0`` means no benchmarking at all: the default.
   The tuning key is the GPU, the dtypes of the tensor arguments, every constexpr the launch passes
   (rule, mask, mode, block sizes: whatever changes the compiled kernel) and the size buckets the
   kernel names (next power of two);
2. makes the tensors' device current (``torch.cuda.device`` guard: Triton launches on the
   *current* device otherwise — a model on ``cuda:1`` would be read through ``cuda:0``);
3. calls the launch hooks (:func:`launch_hook`: launch counting, or recording the launch
   arguments without running anything, as the tests do), then launches with the grid evaluated
   on the config.

Under the interpreter every kernel has one small config and nothing is tuned.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import triton

from ._common import INTERPRETED

AUTOTUNE_ENV = "LRP_KERNELS_TRITON_AUTOTUNE"
TUNING_FILE_ENV = "LRP_KERNELS_TRITON_TUNING_FILE"


def generation(cc: int) -> str:
    """``"hopper"`` for compute capability ≥ 9.0 (sm_90 and newer), else ``"ampere"`` (sm_80–89)."""
    return "hopper" if cc >= 90 else "ampere"


@dataclass(frozen=True)
class Configs:
    """A kernel's configs: ``table(generation, named) -> [Config]`` (first: the default) for a
    launch's named arguments; ``shared_bytes(config, named, generation)`` estimates shared memory (an upper
    bound, checked against the compiler by the AOT test); ``interpret`` under the interpreter."""

    table: Callable[[str, dict], list]
    interpret: triton.Config
    shared_bytes: Callable[[triton.Config, dict, str], int] | None = None

    def candidates(self, cc: int, named: dict, shared_limit: int) -> list:
        """The configs that may run on compute capability ``cc`` (the ones ``auto`` may pick)."""
        if INTERPRETED:
            return [self.interpret]
        gen = generation(cc)
        configs = self.table(gen, named)
        if self.shared_bytes is None:
            return list(configs)
        return [c for c in configs if self.shared_bytes(c, named, gen) <= shared_limit]


@dataclass(frozen=True)
class Launch:
    """One launch as the hooks see it: the kernel, the evaluated grid, the positional arguments by
    name, the constexprs the host passed, the chosen config and the device of the tensors."""

    kernel: "Kernel"
    grid: tuple
    args: dict
    constexprs: dict
    config: triton.Config
    device: torch.device


_HOOKS: list[Callable[[Launch], bool]] = []
_PRETEND: tuple[int, int, str] | None = None


@contextlib.contextmanager
def launch_hook(hook: Callable[[Launch], bool]) -> Iterator[None]:
    """Call ``hook(launch)`` before every launch inside; a hook that returns True skips the launch."""
    _HOOKS.append(hook)
    try:
        yield
    finally:
        _HOOKS.remove(hook)


@contextlib.contextmanager
def pretend(cc: int, shared_limit: int) -> Iterator[None]:
    """Choose configs inside as on a GPU of compute capability ``cc`` with ``shared_limit`` bytes of
    shared memory per block, whatever the tensors' device (meta tensors, no GPU), and never tune:
    with a hook that skips every launch, the host code's launches are recorded, nothing runs."""
    global _PRETEND
    previous, _PRETEND = _PRETEND, (cc, shared_limit, f"pretend sm_{cc}")
    try:
        yield
    finally:
        _PRETEND = previous


def device_guard(device: torch.device):
    """Make ``device`` current for the launch (Triton launches on the current CUDA device)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def _device_facts(device: torch.device) -> tuple[int, int, str]:
    """(compute capability as 90, shared memory per block in bytes, GPU name) of a CUDA device."""
    if device.type != "cuda":
        return 0, 0, device.type
    props = torch.cuda.get_device_properties(device)
    cc = props.major * 10 + props.minor
    shared = getattr(props, "shared_memory_per_block_optin", 0) or (227 if cc >= 90 else 99) * 1024
    return cc, shared, props.name


class Kernel:
    """A Triton kernel with its configs, launched as ``kernel[grid](*args, **constexprs)``.

    ``buckets`` names the integer arguments whose next power of two enters the tuning key.
    """

    def __init__(self, fn, configs: Configs, buckets: tuple[str, ...] = ()):
        self.fn = fn
        self.name = fn.__name__
        self.configs = configs
        self.buckets = buckets
        self.arg_names = list(fn.arg_names)
        self._chosen: dict = {}
        self._facts: dict = {}

    def __getitem__(self, grid):
        return lambda *args, **constexprs: self.launch(grid, args, constexprs)

    def facts(self, device: torch.device) -> tuple[int, int, str]:
        if _PRETEND is not None:
            return _PRETEND
        if device not in self._facts:
            self._facts[device] = _device_facts(device)
        return self._facts[device]

    def candidates(self, device: torch.device, named: dict) -> list:
        cc, shared, _ = self.facts(device)
        return self.configs.candidates(cc, named, shared)

    def launch(self, grid, args: tuple, constexprs: dict):
        named = dict(zip(self.arg_names, args), **constexprs)
        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        config = self.choose(device, named, grid, args, constexprs)
        meta = dict(named, **config.kwargs)
        evaluated = tuple(grid(meta)) if callable(grid) else tuple(grid)
        with device_guard(device):
            if _HOOKS:
                launch = Launch(self, evaluated, dict(zip(self.arg_names, args)), constexprs, config, device)
                if any([hook(launch) for hook in list(_HOOKS)]):
                    return
            self.fn[evaluated](*args, **constexprs, **config.all_kwargs())

    def key(self, device: torch.device, named: dict, constexprs: dict) -> tuple:
        dtypes = tuple(str(v.dtype) for v in named.values() if isinstance(v, torch.Tensor))
        sizes = tuple(_bucket(named[n]) for n in self.buckets)
        return (self.facts(device)[2], dtypes, tuple(sorted(constexprs.items())), sizes)

    def choose(self, device, named, grid, args, constexprs) -> triton.Config:
        key = self.key(device, named, constexprs)
        if key not in self._chosen:
            candidates = self.candidates(device, named)
            if not candidates:
                raise NoConfig(f"{self.name}: no config fits this GPU for {key}")
            self._chosen[key] = _tuned(self, key, candidates, grid, args, constexprs)
        return self._chosen[key]


class NoConfig(RuntimeError):
    """No config of a kernel fits the device for this launch (the host code falls back before)."""


def _bucket(n: int) -> int:
    """The tuning key of a size: its next power of two, so that every new batch or sequence
    length does not trigger a new round of benchmarks (configs depend on the order of magnitude)."""
    return triton.next_power_of_2(max(int(n), 1))


def autotuning() -> bool:
    """Whether a kernel with several candidates benchmarks them (``LRP_KERNELS_TRITON_AUTOTUNE``, default 1)."""
    return os.environ.get(AUTOTUNE_ENV, "1") != "0"


def _tuned(kernel: Kernel, key, candidates, grid, args, constexprs) -> triton.Config:
    """The default without tuning, else the persisted choice, else the fastest candidate (persisted)."""
    if len(candidates) == 1 or INTERPRETED or _PRETEND is not None or not autotuning():
        return candidates[0]
    stored = _load_choice(kernel.name, key)
    for config in candidates:
        if stored == _describe(config):
            return config
    timings = {i: _time(kernel, c, grid, args, constexprs) for i, c in enumerate(candidates)}
    best = candidates[min(timings, key=timings.get)]
    _store_choice(kernel.name, key, _describe(best))
    return best


def _time(kernel: Kernel, config, grid, args, constexprs) -> float:
    named = dict(zip(kernel.arg_names, args), **constexprs, **config.kwargs)
    evaluated = tuple(grid(named)) if callable(grid) else tuple(grid)
    device = next(a.device for a in args if isinstance(a, torch.Tensor))

    def run():
        kernel.fn[evaluated](*args, **constexprs, **config.all_kwargs())

    try:
        with device_guard(device):
            return triton.testing.do_bench(run, warmup=5, rep=20, return_mode="median")
    except _CONFIG_ERRORS:  # a config this card cannot run is never chosen
        return float("inf")


_CONFIG_ERRORS = tuple(
    error for error in (getattr(triton.runtime.errors, "OutOfResources", None),
                        getattr(triton.runtime.errors, "PTXASError", None),
                        getattr(triton.compiler.errors, "CompilationError", None)) if error is not None
)


def _describe(config: triton.Config) -> dict:
    return {"kwargs": dict(config.kwargs), "num_warps": config.num_warps, "num_stages": config.num_stages}


# ------------------------------------------------------------------------------ the tuning file
def tuning_file() -> str:
    """Where the tuning choices persist: ``$LRP_KERNELS_TRITON_TUNING_FILE``, or
    ``~/.cache/lrp_kernels/triton-tuning-<torch>-<triton>.json`` (GPU names inside, as part of each key)."""
    path = os.environ.get(TUNING_FILE_ENV)
    if path:
        return path
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    versions = f"torch{torch.__version__.split('+')[0]}-triton{triton.__version__}"
    return os.path.join(root, "lrp_kernels", f"triton-tuning-{versions}.json")


def _read_file() -> dict:
    try:
        with open(tuning_file()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _load_choice(name: str, key) -> dict | None:
    return _read_file().get(f"{name} {key!r}")


def _store_choice(name: str, key, choice: dict) -> None:
    """Add one choice to the tuning file (read-merge-replace; a failure to write is not an error)."""
    path = tuning_file()
    data = _read_file()
    data[f"{name} {key!r}"] = choice
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass
