"""Vision prompts: a projector (mmproj) context and the evaluation of a prompt with images through llama.cpp's mtmd.

This is a path of its own beside the batch engine: a request with images is evaluated by a ``VisionContext``,
whose llama.cpp calls sit behind the small ``MtmdBackend`` seam (``LlamaMtmd`` is the real one).
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from typing import Any, Protocol

from corral_common.errors import BadRequest, InternalError

MARKER = re.compile(r"\[img-(\d+)\]")


def mtmd_prompt(prompt: str, images: list[bytes], marker: str) -> tuple[str, list[bytes]]:
    """Ollama's ``[img-N]`` markers → mtmd's media marker; the images in the order the markers appear.

    Every image must be named once (the gateway places the markers); a marker past the images is a 400."""
    order: list[int] = []

    def swap(match: re.Match[str]) -> str:
        index = int(match[1])
        if index >= len(images):
            raise BadRequest(f"the prompt names [img-{index}] but the request has {len(images)} image(s)")
        order.append(index)
        return marker

    text = MARKER.sub(swap, prompt)
    missing = sorted(set(range(len(images))) - set(order))
    if missing:
        raise BadRequest(f"image {missing[0]} has no [img-{missing[0]}] marker in the prompt")
    return text, [images[i] for i in order]


class MtmdBackend(Protocol):
    """The llama.cpp mtmd calls the vision path needs (a fake stands in for it in unit tests)."""

    def init(self, projector: str, model: Any, n_threads: int) -> Any: ...
    def supports_vision(self, ctx: Any) -> bool: ...
    def marker(self) -> str: ...
    def bitmap(self, ctx: Any, data: bytes) -> Any: ...
    def tokenize(self, ctx: Any, text: str, bitmaps: list[Any]) -> Any: ...
    def eval_chunks(self, ctx: Any, llama_ctx: Any, chunks: Any, n_past: int, seq_id: int, n_batch: int) -> int: ...
    def free_bitmap(self, bitmap: Any) -> None: ...
    def free_chunks(self, chunks: Any) -> None: ...
    def free(self, ctx: Any) -> None: ...


@dataclass
class VisionContext:
    """A loaded projector bound to one llama.cpp model."""

    backend: MtmdBackend
    ctx: Any

    @classmethod
    def load(cls, backend: MtmdBackend, projector: str, model: Any, n_threads: int) -> "VisionContext":
        """Open the projector for ``model``; a file that is not a vision projector is a 400."""
        ctx = backend.init(projector, model, n_threads)
        if ctx is None:
            raise BadRequest(f"the projector {projector} could not be loaded")
        if not backend.supports_vision(ctx):
            backend.free(ctx)
            raise BadRequest("the projector does not support images")
        return cls(backend, ctx)

    def evaluate(self, llama_ctx: Any, prompt: str, images: list[bytes], n_batch: int, seq_id: int = 0) -> int:
        """Evaluate the prompt with its images into sequence seq_id from position 0; returns the positions used.

        The logits of the prompt's last position are left for sampling the first generated token."""
        text, ordered = mtmd_prompt(prompt, images, self.backend.marker())
        bitmaps = []
        try:
            for position, data in enumerate(ordered):
                bitmap = self.backend.bitmap(self.ctx, data)
                if bitmap is None:
                    raise BadRequest(f"image {position} could not be decoded")
                bitmaps.append(bitmap)
            chunks = self.backend.tokenize(self.ctx, text, bitmaps)
            try:
                return self.backend.eval_chunks(self.ctx, llama_ctx, chunks, 0, seq_id, n_batch)
            finally:
                self.backend.free_chunks(chunks)
        finally:
            for bitmap in bitmaps:
                self.backend.free_bitmap(bitmap)

    def close(self) -> None:
        """Free the projector."""
        if self.ctx is not None:
            self.backend.free(self.ctx)
            self.ctx = None


class LlamaMtmd:
    """The real backend: llama-cpp-python's ``mtmd_cpp`` bindings (as its Llava15ChatHandler uses them)."""

    def __init__(self) -> None:
        from llama_cpp import mtmd_cpp

        self.lib = mtmd_cpp

    def init(self, projector: str, model: Any, n_threads: int) -> Any:
        params = self.lib.mtmd_context_params_default()
        params.use_gpu, params.n_threads = False, n_threads
        return self.lib.mtmd_init_from_file(projector.encode(), model, params)

    def supports_vision(self, ctx: Any) -> bool:
        return bool(self.lib.mtmd_support_vision(ctx))

    def marker(self) -> str:
        return self.lib.mtmd_default_marker().decode()

    def bitmap(self, ctx: Any, data: bytes) -> Any:
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        return self.lib.mtmd_helper_bitmap_init_from_buf(ctx, buffer, len(data))

    def tokenize(self, ctx: Any, text: str, bitmaps: list[Any]) -> Any:
        encoded = text.encode()
        text_input = self.lib.mtmd_input_text()
        text_input.text, text_input.add_special, text_input.parse_special = encoded, True, True
        if hasattr(text_input, "text_len"):
            text_input.text_len = len(encoded)
        chunks = self.lib.mtmd_input_chunks_init()
        array = (self.lib.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
        result = self.lib.mtmd_tokenize(ctx, chunks, ctypes.byref(text_input), array, len(bitmaps))
        if result != 0:
            self.lib.mtmd_input_chunks_free(chunks)
            raise BadRequest(f"the images could not be tokenized with the prompt (mtmd error {result})")
        return chunks

    def eval_chunks(self, ctx: Any, llama_ctx: Any, chunks: Any, n_past: int, seq_id: int, n_batch: int) -> int:
        new_past = ctypes.c_int32(0)
        result = self.lib.mtmd_helper_eval_chunks(ctx, llama_ctx, chunks, n_past, seq_id, n_batch, True,
                                                  ctypes.byref(new_past))
        if result != 0:
            raise InternalError(f"evaluating the images failed (mtmd error {result})")
        return new_past.value

    def free_bitmap(self, bitmap: Any) -> None:
        self.lib.mtmd_bitmap_free(bitmap)

    def free_chunks(self, chunks: Any) -> None:
        self.lib.mtmd_input_chunks_free(chunks)

    def free(self, ctx: Any) -> None:
        self.lib.mtmd_free(ctx)
