"""Execution provider names (no heavy imports: recipe validation and the CLI use them)."""

from __future__ import annotations

from onnxcompress.errors import RecipeError

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_BY_FULL_NAME = {full.lower(): short for short, full in PROVIDER_NAMES.items()}
GPU_INSTALL_HINT = ("install onnxruntime-gpu instead of onnxruntime on a machine with CUDA (see the README, "
                    "'GPU'), or use --providers cpu")


def provider_key(name: str) -> str | None:
    """``cpu``/``cuda``/``tensorrt`` for a short or full provider name (any case), ``auto``, else None."""
    n = name.strip().lower()
    if n == "auto" or n in PROVIDER_NAMES:
        return n
    return _BY_FULL_NAME.get(n)


def check_provider_spec(spec: str) -> list[str]:
    """The short names of a comma-separated provider list; an unknown name is a RecipeError."""
    names = [s for s in spec.split(",") if s.strip()]
    if not names:
        raise RecipeError("no execution provider given", hint="use auto, cpu, cuda or tensorrt")
    keys = []
    for n in names:
        key = provider_key(n)
        if key is None:
            raise RecipeError(f"unknown execution provider '{n.strip()}'", hint="use auto, cpu, cuda, tensorrt or "
                              "onnxruntime's names (CPUExecutionProvider, CUDAExecutionProvider, "
                              "TensorrtExecutionProvider)")
        keys.append(key)
    return keys
