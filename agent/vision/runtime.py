"""Finding a TFLite interpreter: ai-edge-litert first, tflite-runtime as the fallback.

ai-edge-litert is the maintained successor with wheels for x86-64 and aarch64;
tflite-runtime (last release 2023) still serves Python 3.11 boxes that have it installed.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from roadside.errors import DetectorError

RUNTIMES = {
    "litert": "ai_edge_litert.interpreter",
    "tflite": "tflite_runtime.interpreter",
}


def default_threads() -> int:
    """One core fewer than the machine has: capture and recording keep one."""
    return max(1, (os.cpu_count() or 2) - 1)


def load_interpreter(model_path: str, threads: int = 0, runtime: str = "auto") -> tuple[Any, str]:
    """An allocated interpreter for ``model_path`` and the name of the runtime that made it.

    ``threads`` 0 means ``default_threads()``.
    """
    order = ["litert", "tflite"] if runtime == "auto" else [runtime]
    missing = []
    for name in order:
        try:
            module = importlib.import_module(RUNTIMES[name])
        except ImportError:
            missing.append(RUNTIMES[name].split(".")[0])
            continue
        try:
            interp = module.Interpreter(model_path=model_path, num_threads=threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DetectorError(f"cannot load model {model_path}: {exc}") from None
        return interp, name
    raise DetectorError(
        f"no TFLite runtime installed ({' or '.join(missing)}): "
        "pip install ai-edge-litert (64-bit OS) or tflite-runtime"
    )
