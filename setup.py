"""Build script: the pure-Python package plus the compiled module ``lrp_kernels._C`` built by CMake.

Environment variables:

``LRP_KERNELS_CUDA``        ``auto`` (default): build the CUDA kernels if nvcc is found (PATH,
                            ``CUDACXX``, ``CUDA_HOME``/``CUDA_PATH``, ``/usr/local/cuda``), and
                            fall back to the CPU kernels alone if that build fails;
                            ``1``: build them, fail if nvcc is missing or the build fails;
                            ``0``: CPU kernels only.
``LRP_KERNELS_CUDA_ARCHS``  CUDA architectures, CMake syntax, passed as ``CMAKE_CUDA_ARCHITECTURES``;
                            unset: the default, which only CMakeLists.txt holds
                            (``LRP_KERNELS_DEFAULT_CUDA_ARCHS``).
``MAX_JOBS`` / ``CMAKE_BUILD_PARALLEL_LEVEL``  parallel compile jobs (default: CPU count).

The CPU kernels need only a C++17 compiler (CMake, Ninja and pybind11 come from the build
requirements). If the extension fails to build (and ``LRP_KERNELS_CUDA`` is not ``1``), the
package installs without it and ``lrp_kernels.backend`` reports the ``cpp`` backend as unavailable
with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _cuda_mode() -> str:
    mode = os.environ.get("LRP_KERNELS_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"LRP_KERNELS_CUDA must be auto, 0 or 1, not {mode!r}")
    return mode


def find_nvcc() -> str | None:
    """The nvcc to use, or None. nvcc is often at /usr/local/cuda/bin and not on PATH."""
    candidates = [os.environ.get("CUDACXX"), shutil.which("nvcc")]
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    candidates.append("/usr/local/cuda/bin/nvcc")
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _cmake() -> str:
    exe = shutil.which("cmake")
    if exe is None:
        try:
            import cmake  # the PyPI cmake package

            exe = os.path.join(cmake.CMAKE_BIN_DIR, "cmake")
        except ImportError:
            raise RuntimeError("CMake >= 3.18 is needed to build lrp_kernels._C (pip install cmake)")
    return exe


def _jobs() -> str:
    return os.environ.get("MAX_JOBS") or os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def run(self) -> None:
        mode = _cuda_mode()
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure is reported, then tolerated
            if mode == "1":
                raise
            print(
                f"WARNING: lrp_kernels._C was not built ({exc}); installing without the compiled "
                "kernels. The 'cpp' and 'cuda' backends will be unavailable.",
                file=sys.stderr,
            )

    def build_extension(self, ext: Extension) -> None:
        mode = _cuda_mode()
        nvcc = find_nvcc() if mode != "0" else None
        if mode == "1" and nvcc is None:
            raise RuntimeError("LRP_KERNELS_CUDA=1 but nvcc was not found (set CUDACXX or CUDA_HOME)")
        if nvcc is not None:
            try:
                self._cmake_build(ext, nvcc)
                return
            except subprocess.CalledProcessError:
                if mode == "1":
                    raise
                print("WARNING: lrp_kernels: the CUDA build failed; building the CPU kernels only "
                      "(LRP_KERNELS_CUDA=1 makes this an error)", file=sys.stderr)
        self._cmake_build(ext, None)

    def _cmake_build(self, ext: Extension, nvcc: str | None) -> None:
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_temp = Path(self.build_temp).resolve() / ("cmake-cuda" if nvcc else "cmake-cpu")
        build_temp.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DLRP_KERNELS_OUTPUT_DIR={out_dir}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        try:
            import pybind11

            args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:
            pass
        ninja = _ninja()
        if ninja is not None:
            args += ["-GNinja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        if nvcc is not None:
            args += ["-DLRP_KERNELS_CUDA=ON", f"-DCMAKE_CUDA_COMPILER={nvcc}"]
            # unset: CMakeLists.txt's default architectures (the one place that holds them)
            archs = os.environ.get("LRP_KERNELS_CUDA_ARCHS", "").strip()
            if archs:
                args.append(f"-DCMAKE_CUDA_ARCHITECTURES={archs}")
            print(f"lrp_kernels: building the CUDA kernels with {nvcc} for architectures "
                  f"{archs or 'of CMakeLists.txt (LRP_KERNELS_DEFAULT_CUDA_ARCHS)'}")
        else:
            args.append("-DLRP_KERNELS_CUDA=OFF")
            print("lrp_kernels: building the CPU kernels only (no nvcc, or LRP_KERNELS_CUDA=0)")
        # Reconfigure from scratch (compilers, generator and options may have changed since the
        # last build); the object files stay, so an unchanged source is not recompiled.
        (build_temp / "CMakeCache.txt").unlink(missing_ok=True)
        for detected in (build_temp / "CMakeFiles").glob("[0-9]*"):
            shutil.rmtree(detected, ignore_errors=True)
        cmake = _cmake()
        subprocess.run([cmake, "-S", str(ROOT), "-B", str(build_temp), *args], check=True)
        # The CPU and the CUDA build trees link the same output file: remove it, or the tree that
        # did not write it last would find it newer than its objects and keep the other flavour.
        Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        subprocess.run([cmake, "--build", str(build_temp), "--parallel", _jobs()], check=True)


def _ninja() -> str | None:
    """The ninja binary (PATH, or the PyPI ninja package of the build environment), or None."""
    exe = shutil.which("ninja")
    if exe is None:
        try:
            import ninja

            exe = os.path.join(ninja.BIN_DIR, "ninja")
        except (ImportError, AttributeError):
            return None
    return exe


setup(
    ext_modules=[CMakeExtension("lrp_kernels._C")],
    cmdclass={"build_ext": CMakeBuild},
)
