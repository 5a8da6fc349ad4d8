"""`make gpu-wheels`: download the wheels that the GPU machine's image lacks, here.

The GPU machines reach no network and carry a Python 3.12 image with PyTorch, transformers,
accelerate and the packages in ``IMAGE_PACKAGES``, but not lm-eval, sae-lens or datasets. This
script walks the requirements of ``lm-eval[hf]`` and ``sae-lens`` through the metadata of the
packages installed in this interpreter (the project's .venv), stops at every package the image
has, and downloads the rest at the versions installed here (one of each) for CPython 3.12 on
manylinux x86-64 (``--python-version 3.11`` for the CPU proof). Packages published as source
only are built into wheels here and must come out pure Python. wandb, which ``import sae_lens``
needs, loses its ``wandb/bin/`` service binaries (51 MB unpacked): they only run for a wandb
run, which saeval never starts. Then the folder must hold at most ``--max-mib`` MiB.

Also written: ``image-requirements.txt``, the image's packages that these wheels and saeval need,
at the image's versions where known: what the CPU proof installs to stand in for the image.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOTS = (("lm-eval", ("hf",)), ("sae-lens", ()))
# The image 'cuda' of the GPU machines, as read there on 2026-11-17 (device KINDS.md).
IMAGE_PACKAGES = frozenset(
    canonicalize_name(name)
    for name in """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc
    anyio attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama
    contourpy coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler
    cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
    frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver
    lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
    markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
    multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy
    numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
    opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
    pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
    py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark
    pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml
    regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy
    seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
    sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
    threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq
    torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
    typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
    xxhash yarl zipp""".split()  # noqa: SIM905 (the list as read there)
)
# Versions read there; the CPU proof installs these (numpy 2.5.2 is not on the index here).
IMAGE_VERSIONS = {
    "accelerate": "1.15.0",
    "huggingface-hub": "1.33.0",
    "safetensors": "0.8.0",
    "tokenizers": "0.23.2",
    "transformers": "5.17.0",
}
SAEVAL_IMAGE_NEEDS = ("typer", "rich", "pandas", "pyyaml", "scipy", "matplotlib", "pytest")
PLATFORMS = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux1")
STRIPPED = {"wandb": "wandb/bin/"}  # service binaries that only a wandb run starts
MAX_MIB = 40


def _marker_env(python_version: str) -> dict[str, str]:
    """The PEP 508 marker values of CPython ``python_version`` on Linux x86-64."""
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
    }


def _requirements(name: str, extras: Sequence[str], env: dict[str, str]) -> list[Requirement]:
    """What installed distribution ``name`` (with ``extras``) requires under ``env``."""
    found = []
    for text in metadata.distribution(name).requires or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({**env, "extra": e}) for e in (*extras, "")):
            found.append(requirement)
    return found


def closure(python_version: str) -> tuple[dict[str, str], set[str]]:
    """(missing package -> version installed here, image packages they need)."""
    env = _marker_env(python_version)
    missing: dict[str, str] = {}
    needed_from_image: set[str] = set()
    stack: list[tuple[str, Sequence[str]]] = list(ROOTS)
    while stack:
        name, extras = stack.pop()
        key = canonicalize_name(name)
        if key in IMAGE_PACKAGES:
            needed_from_image.add(key)
            continue
        if key in missing:
            continue
        missing[key] = metadata.version(name)
        stack += [(r.name, sorted(r.extras)) for r in _requirements(name, extras, env)]
    return missing, needed_from_image - {"torch"}


def _pip(*args: str) -> None:
    """Run pip in this interpreter; its output is shown only when it fails."""
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if not line.startswith("WARNING")]
        raise SystemExit(f"pip {args[0]} failed:\n" + "\n".join(tail[-15:]))


def download(pins: Iterable[str], dest: Path, python_version: str) -> None:
    """Every pin's wheel for CPython ``python_version`` on manylinux x86-64, else its source."""
    requirements = dest / "requirements.txt"
    requirements.write_text("".join(f"{pin}\n" for pin in sorted(pins)))
    platforms = [f"--platform={p}_x86_64" for p in PLATFORMS]
    _pip(
        *("download", "--no-deps", "--prefer-binary", "--implementation", "cp"),
        *("--python-version", python_version, *platforms, "-d", str(dest), "-r", str(requirements)),
    )


def build_sources(dest: Path, python_version: str) -> None:
    """Build each downloaded source archive into a wheel; every wheel must suit the target."""
    for source in sorted(p for p in dest.iterdir() if p.suffix in {".gz", ".zip"}):
        _pip("wheel", "--no-deps", "--no-cache-dir", "-w", str(dest), str(source))
        source.unlink()
    digits = python_version.replace(".", "")
    interpreters = {f"cp{digits}", f"py{digits}", "py3"}
    for wheel in dest.glob("*.whl"):
        tags = parse_wheel_filename(wheel.name)[3]
        if not any(t.interpreter in interpreters or t.abi == "abi3" for t in tags):
            raise SystemExit(f"error: {wheel.name} is not a wheel for CPython {python_version}")


def strip(wheel: Path, prefix: str) -> None:
    """Rewrite ``wheel`` without the files under ``prefix`` (and without their RECORD lines)."""
    stripped = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(stripped, "w") as target:
        for item in source.infolist():
            if item.filename.startswith(prefix):
                continue
            data = source.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not line.startswith(prefix)).encode()
            target.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED)
    os.replace(stripped, wheel)


def write_image_requirements(dest: Path, needed: Iterable[str]) -> None:
    """``image-requirements.txt``: the image's packages needed, at the image's versions if known."""
    names = sorted({*needed, *SAEVAL_IMAGE_NEEDS, *IMAGE_VERSIONS})
    pins = [f"{n}=={IMAGE_VERSIONS.get(n) or metadata.version(n)}" for n in names]
    (dest / "image-requirements.txt").write_text("".join(f"{pin}\n" for pin in pins))


def main(argv: Sequence[str] | None = None) -> None:
    """Fill ``--dest`` with the wheels, then fail if they exceed ``--max-mib``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check_wheels")
    parser.add_argument("--dest", type=Path, default=Path(".gpu-wheels"))
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--max-mib", type=float, default=MAX_MIB)
    args = parser.parse_args(argv)
    missing, needed = closure(args.python_version)
    shutil.rmtree(args.dest, ignore_errors=True)
    args.dest.mkdir(parents=True)
    download(
        [f"{name}=={version}" for name, version in missing.items()], args.dest, args.python_version
    )
    build_sources(args.dest, args.python_version)
    for name, prefix in STRIPPED.items():
        for wheel in args.dest.glob(f"{name}-*.whl"):
            strip(wheel, prefix)
    write_image_requirements(args.dest, needed)
    wheels = sorted(args.dest.glob("*.whl"))
    mib = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels for CPython {args.python_version}, {mib:.1f} MiB in {args.dest}")
    if mib > args.max_mib:
        raise SystemExit(
            f"error: {args.dest} holds {mib:.1f} MiB of wheels, over {args.max_mib:g} MiB"
        )


if __name__ == "__main__":
    main()
