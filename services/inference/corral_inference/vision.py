"""Vision prompts: a projector (mmproj) context, image encoding off the batch loop, and the decoding of the result.

A request with images is tokenized and its images encoded by a ``VisionContext`` on the ``ImageEncoder``'s own
thread (the projector's work, the slow part), so the batch loop keeps stepping the other slots meanwhile; the loop
then decodes the prepared text tokens and image embeddings into the request's slot. The llama.cpp calls sit behind
the small ``MtmdBackend`` seam (``LlamaMtmd`` is the real one, on llama-cpp-python's ``mtmd_cpp`` bindings).
"""

from __future__ import annotations

import ctypes
import functools
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral_common.errors import AppError, BadRequest, InternalError
from corral_common.logs import get_logger

from corral_inference import zeropages
from corral_inference.engine import CompletionJob, Emit

MARKER = re.compile(r"\[img-(\d+)\]")
NULL_TOKEN = -1  # what mtmd puts where the model's vocabulary lacks a token its image wrapper names
GGML_LOG_WARN, GGML_LOG_ERROR = 3, 4  # ggml.h enum ggml_log_level
log = get_logger("corral.inference.vision")


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
    def chunks(self, chunks: Any) -> list[list[int] | Any]:
        """The chunks in order: a text chunk as its token ids, an image chunk as itself."""
    def encode(self, ctx: Any, chunk: Any) -> Any:
        """The image chunk's embeddings, copied out of the projector's buffer (the next encode overwrites it)."""
    def image_positions(self, chunk: Any) -> int: ...
    def decode_text(self, llama_ctx: Any, tokens: list[int], n_past: int, seq_id: int, n_batch: int,
                    logits_last: bool) -> int: ...
    def decode_image(self, ctx: Any, llama_ctx: Any, chunk: Any, embeddings: Any, n_past: int, seq_id: int,
                     n_batch: int) -> int: ...
    def free_bitmap(self, bitmap: Any) -> None: ...
    def free_chunks(self, chunks: Any) -> None: ...
    def free(self, ctx: Any) -> None: ...


@dataclass
class EncodedImage:
    """One image chunk and the embeddings the projector made of it."""

    chunk: Any
    embeddings: Any
    positions: int


@dataclass
class EncodedPrompt:
    """A prompt with its images tokenized and encoded: text tokens and image embeddings, in prompt order."""

    parts: list[list[int] | EncodedImage]
    positions: int = field(metadata={"doc": "KV positions decoding it fills"})
    release: Callable[[], None] = lambda: None

    def close(self) -> None:
        """Free the llama.cpp chunks the image parts point into (once)."""
        release, self.release = self.release, lambda: None
        release()


@dataclass
class VisionContext:
    """A loaded projector bound to one llama.cpp model.

    ``encode`` runs on one thread at a time (the projector's output buffer is shared); ``decode`` runs on the
    thread that owns the llama.cpp context."""

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

    def encode(self, prompt: str, images: list[bytes]) -> EncodedPrompt:
        """Tokenize the prompt with its images and run the projector over every image."""
        text, ordered = mtmd_prompt(prompt, images, self.backend.marker())
        bitmaps = []
        try:
            for position, data in enumerate(ordered):
                bitmap = self.backend.bitmap(self.ctx, data)
                if bitmap is None:
                    raise BadRequest(f"image {position} could not be decoded")
                bitmaps.append(bitmap)
            chunks = self.backend.tokenize(self.ctx, text, bitmaps)
        finally:
            for bitmap in bitmaps:
                self.backend.free_bitmap(bitmap)
        try:
            return self._encoded(chunks)
        except BaseException:
            self.backend.free_chunks(chunks)
            raise

    def _encoded(self, chunks: Any) -> EncodedPrompt:
        parts: list[list[int] | EncodedImage] = []
        for chunk in self.backend.chunks(chunks):
            if isinstance(chunk, list):
                # A projector paired with a model whose vocabulary lacks its wrapper tokens (SmolVLM's
                # <fake_token_around_image> on plain SmolLM2): the wrapper is left out, the image still counts.
                parts.append([token for token in chunk if token != NULL_TOKEN])
            else:
                embeddings = self.backend.encode(self.ctx, chunk)
                parts.append(EncodedImage(chunk, embeddings, self.backend.image_positions(chunk)))
        positions = sum(len(p) if isinstance(p, list) else p.positions for p in parts)
        return EncodedPrompt(parts, positions, lambda: self.backend.free_chunks(chunks))

    def feed(self, prompt: EncodedPrompt, seq_id: int, n_batch: int) -> "PromptFeed":
        """The prompt as pieces to decode into sequence seq_id from position 0: runs of at most n_batch text
        tokens and one image's embeddings each; a prompt that ends with an image is a 400."""
        parts = [p for p in prompt.parts if not isinstance(p, list) or p]
        if not parts or not isinstance(parts[-1], list):
            raise BadRequest("a prompt with images needs text after its last image")
        pieces: list[list[int] | EncodedImage] = []
        for part in parts:
            pieces += [part[i:i + n_batch] for i in range(0, len(part), n_batch)] if isinstance(part, list) else [part]
        return PromptFeed(self, prompt, seq_id, n_batch, pieces)

    def decode(self, llama_ctx: Any, prompt: EncodedPrompt, n_batch: int, seq_id: int = 0) -> int:
        """Decode a whole encoded prompt into sequence seq_id; returns the positions used (its last logits are
        left for sampling the first generated token)."""
        feed = self.feed(prompt, seq_id, n_batch)
        while not feed.decode_next(llama_ctx):
            pass
        return feed.n_past

    def close(self) -> None:
        """Free the projector."""
        if self.ctx is not None:
            self.backend.free(self.ctx)
            self.ctx = None


@dataclass
class PromptFeed:
    """An encoded prompt going into one sequence a piece per call, so that a batch loop steps its other
    sequences between the pieces instead of waiting for the whole prompt."""

    vision: VisionContext
    prompt: EncodedPrompt
    seq_id: int
    n_batch: int
    pieces: list[list[int] | EncodedImage]
    n_past: int = 0

    def decode_next(self, llama_ctx: Any) -> bool:
        """Decode the next piece; True once the whole prompt is in (the logits of its last token are ready)."""
        piece, backend = self.pieces.pop(0), self.vision.backend
        if isinstance(piece, list):
            self.n_past = backend.decode_text(llama_ctx, piece, self.n_past, self.seq_id, self.n_batch,
                                              not self.pieces)
        else:
            self.n_past = backend.decode_image(self.vision.ctx, llama_ctx, piece.chunk, piece.embeddings,
                                               self.n_past, self.seq_id, self.n_batch)
        return not self.pieces

    def close(self) -> None:
        """Free the encoded prompt (decoded or not)."""
        self.prompt.close()


# What the encoder hands back for a job: the encoded prompt, or the error that ends the request.
Encoded = Callable[[CompletionJob, Emit, "EncodedPrompt | AppError"], None]


class ImageEncoder:
    """Encodes image prompts on a thread of its own, one at a time, and hands each result to ``done``.

    The batch loop never waits for a projector: while an image is encoded here, the other slots keep decoding."""

    def __init__(self, encode: Callable[[CompletionJob], EncodedPrompt], done: Encoded,
                 decodes: Callable[[], int] = lambda: 0) -> None:
        self.encode, self.done, self.decodes = encode, done, decodes
        self.inbox: queue.Queue[tuple[CompletionJob, Emit] | None] = queue.Queue()
        self.busy = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="llama-vision", daemon=True)
        self.thread.start()

    def submit(self, job: CompletionJob, emit: Emit) -> None:
        """Queue an image request for encoding."""
        self.inbox.put((job, emit))

    def pending(self) -> int:
        """Requests queued or being encoded."""
        return self.inbox.qsize() + int(self.busy)

    def close(self) -> None:
        """Stop after the image being encoded; requests still queued are handed back as "model unloaded"."""
        self.stopping.set()
        self.inbox.put(None)
        self.thread.join(60)

    def _loop(self) -> None:
        while (item := self.inbox.get()) is not None:
            job, emit = item
            if self.stopping.is_set():
                self.done(job, emit, InternalError("model unloaded"))
            elif not job.cancel.is_set():
                self.busy = True
                try:
                    self.done(job, emit, self._timed(job))
                finally:
                    self.busy = False

    def _timed(self, job: CompletionJob) -> EncodedPrompt | AppError:
        started, decodes = time.perf_counter(), self.decodes()
        result = self._encode(job)
        if isinstance(result, EncodedPrompt):  # other_decodes: the batch loop's steps for other requests meanwhile
            log.info("images encoded", images=len(job.images), positions=result.positions,
                     seconds=round(time.perf_counter() - started, 3), other_decodes=self.decodes() - decodes)
        return result

    def _encode(self, job: CompletionJob) -> EncodedPrompt | AppError:
        try:
            with zeropages.GUARD.shared():  # not while a model being loaded hands back its zero pages
                return self.encode(job)
        except AppError as exc:  # an image that does not decode, a prompt that cannot fit
            return exc
        except Exception as exc:  # the projector failing ends this request only
            log.error("image encoding failed", error=repr(exc))
            return InternalError(f"encoding the images failed: {exc}")


@functools.cache
def _mtmd_log() -> Any:
    """mtmd's log callback: its warnings and errors to our log, its per-image progress lines nowhere.

    Made once and kept for the process (llama.cpp holds the pointer)."""
    import llama_cpp

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, _user_data: Any) -> None:
        if level in (GGML_LOG_WARN, GGML_LOG_ERROR):
            log.warning("mtmd", message=text.decode("utf-8", "replace").strip())

    return forward


class LlamaMtmd:
    """The real backend: llama-cpp-python's ``mtmd_cpp`` bindings (libmtmd ships in its wheel)."""

    def __init__(self) -> None:
        import llama_cpp
        from llama_cpp import mtmd_cpp

        self.lib, self.llama = mtmd_cpp, llama_cpp
        mtmd_cpp.mtmd_helper_log_set(_mtmd_log(), None)

    def init(self, projector: str, model: Any, n_threads: int) -> Any:
        params = self.lib.mtmd_context_params_default()
        params.use_gpu, params.n_threads, params.print_timings = False, n_threads, False
        self.n_embd = self.llama.llama_model_n_embd_inp(model)
        return self.lib.mtmd_init_from_file(projector.encode(), model, params)

    def supports_vision(self, ctx: Any) -> bool:
        return bool(self.lib.mtmd_support_vision(ctx))

    def marker(self) -> str:
        return self.lib.mtmd_default_marker().decode()

    def bitmap(self, ctx: Any, data: bytes) -> Any:
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        return self.lib.mtmd_helper_bitmap_init_from_buf(ctx, buffer, len(data), False)

    def tokenize(self, ctx: Any, text: str, bitmaps: list[Any]) -> Any:
        encoded = text.encode()
        text_input = self.lib.mtmd_input_text()
        text_input.text, text_input.text_len = encoded, len(encoded)
        text_input.add_special, text_input.parse_special = True, True
        chunks = self.lib.mtmd_input_chunks_init()
        array = (self.lib.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
        result = self.lib.mtmd_tokenize(ctx, chunks, ctypes.byref(text_input), array, len(bitmaps))
        if result != 0:
            self.lib.mtmd_input_chunks_free(chunks)
            raise BadRequest(f"the images could not be tokenized with the prompt (mtmd error {result})")
        return chunks

    def chunks(self, chunks: Any) -> list[list[int] | Any]:
        out: list[list[int] | Any] = []
        for i in range(self.lib.mtmd_input_chunks_size(chunks)):
            chunk = self.lib.mtmd_input_chunks_get(chunks, i)
            if self.lib.mtmd_input_chunk_get_type(chunk) == self.lib.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t(0)
                tokens = self.lib.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                out.append([tokens[j] for j in range(count.value)])
            else:
                out.append(chunk)
        return out

    def encode(self, ctx: Any, chunk: Any) -> Any:
        result = self.lib.mtmd_encode_chunk(ctx, chunk)
        if result != 0:
            raise InternalError(f"encoding an image failed (mtmd error {result})")
        count = self.lib.mtmd_input_chunk_get_n_tokens(chunk) * self.n_embd
        embeddings = (ctypes.c_float * count)()
        ctypes.memmove(embeddings, self.lib.mtmd_get_output_embd(ctx), ctypes.sizeof(embeddings))
        return embeddings

    def image_positions(self, chunk: Any) -> int:
        return int(self.lib.mtmd_input_chunk_get_n_pos(chunk))

    def decode_text(self, llama_ctx: Any, tokens: list[int], n_past: int, seq_id: int, n_batch: int,
                    logits_last: bool) -> int:
        batch = self.llama.llama_batch_init(n_batch, 0, 1)
        try:
            for start in range(0, len(tokens), n_batch):
                piece = tokens[start:start + n_batch]
                batch.n_tokens = len(piece)
                for i, token in enumerate(piece):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, n_past + start + i, 1
                    batch.seq_id[i][0] = seq_id
                    batch.logits[i] = logits_last and start + i == len(tokens) - 1
                if self.llama.llama_decode(llama_ctx, batch) != 0:
                    raise InternalError("decoding the prompt's text failed")
        finally:
            self.llama.llama_batch_free(batch)
        return n_past + len(tokens)

    def decode_image(self, ctx: Any, llama_ctx: Any, chunk: Any, embeddings: Any, n_past: int, seq_id: int,
                     n_batch: int) -> int:
        new_past = self.llama.llama_pos(0)
        result = self.lib.mtmd_helper_decode_image_chunk(ctx, llama_ctx, chunk, embeddings, n_past, seq_id, n_batch,
                                                          ctypes.byref(new_past),
                                                          self.lib.mtmd_helper_post_decode_callback(0), None)
        if result != 0:
            raise InternalError(f"decoding an image failed (mtmd error {result})")
        return new_past.value

    def free_bitmap(self, bitmap: Any) -> None:
        self.lib.mtmd_bitmap_free(bitmap)

    def free_chunks(self, chunks: Any) -> None:
        self.lib.mtmd_input_chunks_free(chunks)

    def free(self, ctx: Any) -> None:
        self.lib.mtmd_free(ctx)
