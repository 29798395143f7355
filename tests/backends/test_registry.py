"""The contract (``lrp_kernels/backends/contract.py``) and the registry (``registry.py``): every
registered backend is a well-formed :class:`Backend`, names resolve to it, ``auto`` walks its
preference list, and what cannot run says why."""

import dataclasses
import subprocess
import sys
import threading

# First: sets TRITON_INTERPRET=1 (no GPU) before anything here can import the Triton backend.
from triton_loader import load_triton_backend  # noqa: I001  (tests/ helper)

import pytest
import torch

from lrp_kernels.backends import contract, registry
from lrp_kernels.backends.contract import (
    ActivationKernels, AttentionKernels, Backend, LayerNormKernels, LinearKernels, device_type,
)
from lrp_kernels.backends.torch import BACKEND as TORCH
from lrp_kernels.errors import BackendUnavailable, InputError

load_triton_backend()

KERNEL_SETS = {"linear": LinearKernels, "layer_norm": LayerNormKernels, "activation": ActivationKernels,
               "attention": AttentionKernels}
NO_GPU = not torch.cuda.is_available()


def _loadable():
    """name -> Backend of every registered backend whose module imports here."""
    return {name: backend for name in registry.NAMES if (backend := registry.load(name)[0]) is not None}


def test_registry_names():
    assert registry.NAMES == ("torch", "cpp", "cuda", "triton")
    assert registry.BACKENDS == ("auto", *registry.NAMES)


@pytest.mark.parametrize("name", registry.NAMES)
def test_every_registered_backend_follows_the_contract(name):
    backend, reason = registry.load(name)
    if backend is None:
        pytest.skip(reason)
    assert type(backend) is Backend and backend.name == name
    assert isinstance(backend.devices, tuple) and backend.devices and set(backend.devices) <= {"cpu", "cuda"}
    assert backend.why_unavailable() is None or isinstance(backend.why_unavailable(), str)
    for rule, kernel_type in KERNEL_SETS.items():
        kernels = getattr(backend, rule)
        assert type(kernels) is kernel_type, f"{name}.{rule} is a {type(kernels).__name__}"
        for field in dataclasses.fields(kernels):
            fn = getattr(kernels, field.name)
            if field.name == "fused_backward":
                assert fn is None or callable(fn)
            else:
                assert callable(fn), f"{name}.{rule}.{field.name}"
    # capabilities are declared by the kernel sets, not found by duck typing
    fused = backend.linear.fused_backward is not None
    assert backend.capabilities == (frozenset({"fused_linear_backward"}) if fused else frozenset())
    with pytest.raises(dataclasses.FrozenInstanceError):
        backend.linear.eps_ratio = None


def test_capabilities_reflect_fused_backward():
    assert TORCH.capabilities == frozenset()
    fused = dataclasses.replace(TORCH, linear=dataclasses.replace(TORCH.linear, fused_backward=lambda *a, **k: None))
    assert fused.capabilities == frozenset({"fused_linear_backward"})
    backends = _loadable()
    assert backends["cpp"].capabilities == backends["cuda"].capabilities == frozenset()
    if "triton" in backends:
        assert backends["triton"].capabilities == frozenset({"fused_linear_backward"})


def test_kernel_sets_require_every_rule_function():
    """Every field but the optional capability is required: no kernel is found by a fallback."""
    with pytest.raises(TypeError):
        LinearKernels(eps_ratio=TORCH.linear.eps_ratio)  # gelu_eps_ratio missing
    with pytest.raises(TypeError):
        LayerNormKernels(forward=TORCH.layer_norm.forward)
    with pytest.raises(TypeError):
        Backend("half", ("cpu",), lambda: None, TORCH.linear, TORCH.layer_norm, TORCH.activation)


@pytest.mark.parametrize("name", registry.NAMES)
def test_resolve_by_name_is_the_registered_value(name):
    backend, reason = registry.load(name)
    for device in ("cpu", "cuda"):
        why = registry.unavailable_reason(name, device)
        if why is None:
            assert registry.resolve(name, device) is backend
        else:
            with pytest.raises(BackendUnavailable, match=f"backend {name!r} is not available"):
                registry.resolve(name, device)


def test_resolve_passes_a_backend_through_and_none_means_the_thread_default():
    custom = dataclasses.replace(TORCH, name="custom")
    assert registry.resolve(custom, "cpu") is custom
    with registry.use_backend("torch"):
        assert registry.resolve(None, "cpu") is TORCH
    assert registry.resolve(None, "cpu") is registry.resolve("auto", "cpu")


def test_auto_on_the_cpu_prefers_the_compiled_kernels():
    expected = "cpp" if registry.unavailable_reason("cpp", "cpu") is None else "torch"
    assert registry.resolve("auto", "cpu").name == expected


@pytest.mark.parametrize("device, order", [("cpu", ["cpp", "torch"]), ("cuda", ["triton", "cuda", "torch"])])
def test_auto_walks_the_preference_list_of_the_device(monkeypatch, device, order):
    asked = []

    def nothing_runs(name, dev="cpu"):
        asked.append(name)
        return "pretend"

    monkeypatch.setattr(registry, "unavailable_reason", nothing_runs)
    assert registry.resolve("auto", device).name == "torch"  # the last resort, even when it says no
    assert asked == order
    for name in order:  # the first one that runs is taken
        monkeypatch.setattr(registry, "unavailable_reason", lambda n, d="cpu", ok=name: None if n == ok else "no")
        assert registry.resolve("auto", device).name == name


def test_auto_on_another_device_type_is_torch():
    assert registry.resolve("auto", "meta") is TORCH


@pytest.mark.parametrize("call", [
    lambda: registry.resolve("magic", "cpu"),
    lambda: registry.set_backend("magic"),
    lambda: registry.use_backend("magic").__enter__(),
    lambda: registry.unavailable_reason("magic"),
    lambda: registry.load("magic"),
], ids=["resolve", "set_backend", "use_backend", "unavailable_reason", "load"])
def test_unknown_names_are_input_errors(call):
    with pytest.raises(InputError, match="valid backends: auto, torch, cpp, cuda, triton"):
        call()


def test_use_backend_restores_and_is_per_thread():
    assert registry.get_backend() == "auto"
    with registry.use_backend("torch"):
        assert registry.get_backend() == "torch"
        with registry.use_backend("cpp"):
            assert registry.get_backend() == "cpp"
        assert registry.get_backend() == "torch"
        seen = []
        worker = threading.Thread(target=lambda: seen.append(registry.get_backend()))
        worker.start()
        worker.join()
        assert seen == ["auto"]
    assert registry.get_backend() == "auto"
    with pytest.raises(RuntimeError):
        with registry.use_backend("torch"):
            raise RuntimeError
    assert registry.get_backend() == "auto"


def test_available_backends_on_the_cpu():
    found = registry.available_backends("cpu")
    assert tuple(found) == registry.NAMES
    assert found["torch"] is None
    assert found["cuda"]  # a CUDA-only backend on CPU tensors, or not built with CUDA
    for name, reason in found.items():
        assert reason is None or (isinstance(reason, str) and reason), name
        assert reason == registry.unavailable_reason(name, "cpu")
    assert registry.unavailable_reason("auto", "cpu") is None


@pytest.mark.skipif(not NO_GPU, reason="checks the reasons given on a machine without a GPU")
def test_available_backends_without_a_gpu_says_why():
    found = registry.available_backends("cuda")
    assert all(found.values()), found
    assert found["torch"] == "no CUDA device is available on this machine"
    if registry.load("cpp")[0].why_unavailable() is None:
        assert "does not run on cuda tensors" in found["cpp"]


def test_cpu_backends_refuse_cuda_tensors_and_say_which_devices_they_run_on():
    cpp = registry.load("cpp")[0]
    if cpp.why_unavailable() is None:
        assert cpp.unavailable_reason("cuda:0") == "the cpp backend does not run on cuda tensors (it runs on: cpu)"
    assert TORCH.unavailable_reason(torch.zeros(1)) is None


def test_a_backend_that_cannot_be_imported_says_so(monkeypatch):
    real = registry.importlib.import_module

    def broken(name, *args):
        if name == "lrp_kernels.backends.cpp":
            raise ImportError("boom")
        return real(name, *args)

    monkeypatch.setattr(registry.importlib, "import_module", broken)
    assert registry.load("cpp") == (None, "cpp backend cannot be imported (boom)")
    assert registry.available_backends("cpu")["cpp"] == "cpp backend cannot be imported (boom)"
    assert registry.resolve("auto", "cpu") is TORCH
    with pytest.raises(BackendUnavailable, match="cannot be imported"):
        registry.resolve("cpp", "cpu")


@pytest.mark.parametrize("device, kind", [
    ("cpu", "cpu"), ("cuda:1", "cuda"), (torch.device("cuda", 0), "cuda"), (torch.zeros(1), "cpu"), ("meta", "meta"),
])
def test_device_type(device, kind):
    assert device_type(device) == kind


def test_contract_names():
    assert contract.ACTIVATIONS == ("gelu", "gelu_tanh", "tanh", "relu")
    assert contract.ATTENTION_MODES == ("grad", "attnlrp", "cp_lrp")


def test_importing_the_kernels_loads_no_model_code():
    """At run time, importing ops/ and the backends loads neither the upper layers nor transformers
    (the package root is lazy). The static import graph is checked by tests/test_layering.py."""
    code = (
        "import sys\n"
        "import lrp_kernels.ops, lrp_kernels.backends.torch, lrp_kernels.backends.cpp, lrp_kernels.backends.registry\n"
        "above = ('lrp_kernels.models', 'lrp_kernels.attribution', 'lrp_kernels.explainer', 'lrp_kernels.methods',\n"
        "         'lrp_kernels.cli', 'lrp_kernels.commands', 'transformers')\n"
        "print(sorted(m for m in sys.modules if m.startswith(above)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
