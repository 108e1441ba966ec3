"""LoRA adapters on a loaded llama.cpp model: loaded once with the runner, applied to its context.

A model with adapters is a runner of its own (the scheduler keys runners by blob and adapters), so the
adapters are set once on the context and every sequence of the batch decodes through them.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp

from corral_common.errors import BadRequest

SCALE = 1.0  # Ollama applies every adapter at scale 1; llama.cpp scales each by its own alpha / rank


def apply_adapters(model: Any, ctx: Any, paths: tuple[str, ...]) -> list[Any]:
    """Load the LoRA adapters at ``paths`` for ``model`` and set them on ``ctx``; their handles."""
    handles = []
    try:
        for path in paths:
            handle = llama_cpp.llama_adapter_lora_init(model.model, path.encode("utf-8"))
            if not handle:
                raise BadRequest("llama.cpp cannot load the model's LoRA adapter: it does not fit the base model; "
                                 "create the model again from the base model the adapter was trained on")
            handles.append(handle)
        if handles:
            array = (llama_cpp.llama_adapter_lora_p_ctypes * len(handles))(*handles)
            scales = (ctypes.c_float * len(handles))(*([SCALE] * len(handles)))
            if llama_cpp.llama_set_adapters_lora(ctx.ctx, array, len(handles), scales) != 0:
                raise BadRequest("llama.cpp cannot apply the model's LoRA adapters to its context")
    except BaseException:
        free_adapters(handles)
        raise
    return handles


def free_adapters(handles: list[Any]) -> None:
    """Free adapters before their model (llama.cpp would free them with it; freeing after is a double free)."""
    for handle in handles:
        llama_cpp.llama_adapter_lora_free(handle)
    handles.clear()
