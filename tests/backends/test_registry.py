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
            assert callable(getattr(kernels, field.name)), f"{name}.{rule}.{field.name}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        backend.linear.eps_ratio = None


def test_kernel_sets_require_every_rule_function():
    """Every field is required: no kernel is found by a fallback."""
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
    for name in order:  # the first one that runs is taken (for its dtypes: see the next test)
        monkeypatch.setattr(registry, "unavailable_reason", lambda n, d="cpu", ok=name: None if n == ok else "no")
        assert registry.resolve("auto", device).name.split(" ")[0] == name


def test_auto_rules_are_declared_per_device_and_dtype():
    """Triton is taken on CUDA for 16-bit tensors only; every list ends with a backend for every dtype."""
    assert dict(registry.AUTO_RULES["cuda"])["triton"] == (torch.bfloat16, torch.float16)
    for rules in registry.AUTO_RULES.values():
        assert rules[-1] == ("torch", None)


def _recording_backend(name, calls):
    """The torch reference under another name whose every kernel records (backend, kernel, dtype)."""
    def wrap(rule, kernels):
        def record(field):
            fn = getattr(kernels, field.name)
            return lambda *a, **k: calls.append((name, f"{rule}.{field.name}", a[0].dtype)) or fn(*a, **k)

        return dataclasses.replace(kernels, **{f.name: record(f) for f in dataclasses.fields(kernels)})

    return dataclasses.replace(TORCH, name=name, devices=("cpu", "cuda"),
                               **{rule: wrap(rule, getattr(TORCH, rule)) for rule in KERNEL_SETS})


def test_auto_on_cuda_routes_16_bit_tensors_to_triton_and_the_rest_on(monkeypatch):
    """With Triton and the CUDA kernels both running, ``auto`` is one backend that sends bfloat16 and
    float16 calls to Triton and float32 (and float64) calls to the CUDA kernels — forward and
    backward of one op alike, since both are routed by the dtype of their data tensor."""
    calls = []
    fakes = {n: _recording_backend(n, calls) for n in ("triton", "cuda", "torch")}
    monkeypatch.setattr(registry, "unavailable_reason", lambda n, d="cpu": None)
    monkeypatch.setattr(registry, "load", lambda n: (fakes[n], None))
    auto = registry.resolve("auto", "cuda")
    assert auto.name == "triton (bfloat16/float16) + cuda"
    from lrp_kernels.ops.attention import lrp_attention
    from lrp_kernels.ops.linear import lrp_linear

    for dtype, expected in ((torch.bfloat16, "triton"), (torch.float16, "triton"), (torch.float32, "cuda"),
                            (torch.float64, "cuda")):
        calls.clear()
        q = torch.randn(1, 2, 5, 8, dtype=dtype, requires_grad=True)
        x = torch.randn(3, 8, dtype=dtype, requires_grad=True)
        lrp_attention(q, q, q, None, mode="attnlrp", backend=auto).sum().backward()
        lrp_linear(x, torch.randn(4, 8, dtype=dtype), None, 0.1, "gelu", backend=auto).sum().backward()
        assert {c[0] for c in calls} == {expected}, (dtype, calls)
        assert {c[1] for c in calls} >= {"attention.forward", "attention.backward", "linear.gelu_eps_ratio"}


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
