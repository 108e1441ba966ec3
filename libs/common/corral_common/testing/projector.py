"""A synthetic vision projector for tests: a tiny SigLIP encoder with SmolVLM's idefics3 projector, seeded weights.

No vision model can be downloaded where the tests run, but SmolLM2-135M is the text decoder of SmolVLM-256M
(hidden size 576), so a projector GGUF with SmolVLM's architecture, llama.cpp's tensor names and shapes
(``tools/mtmd/clip-impl.h``) and random weights drives the whole real path: mtmd loads it, decodes and tiles
images, encodes them and hands the decoder embeddings it can attend to. What it "sees" is noise, but the same
image always gives the same embeddings and two different images give different ones.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass

from corral_common.gguf import ARRAY, BOOL, FLOAT32, STRING, UINT32
from corral_common.testing.ggufwriter import GGUF, Arr

SMOLLM2_HIDDEN = 576  # the text decoder's embedding length: the projector's output width


@dataclass(frozen=True)
class ProjectorShape:
    """The encoder's size; small so that an image encodes in milliseconds on a CPU."""

    # One tile is image_size × image_size pixels; an image is cut into tiles at its own size rounded to
    # whole tiles (64×64: one tile; 640×640: a hundred), and encoded as those tiles plus a one-tile overview.
    image_size: int = 64
    patch_size: int = 16
    width: int = 64  # the encoder's hidden size
    ffn: int = 128  # must differ from width (llama.cpp swaps up/down of old files where they look alike)
    blocks: int = 1
    heads: int = 2
    scale_factor: int = 2  # idefics3 pixel shuffle: scale² patches become one embedding
    out: int = SMOLLM2_HIDDEN

    @property
    def tokens_per_tile(self) -> int:
        """Embeddings one tile becomes (patches, then pixel-shuffled)."""
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor ** 2


def _floats(rng: random.Random, count: int, std: float, mean: float = 0.0) -> bytes:
    """``count`` uniform floats with this mean and standard deviation (uniform: quicker to draw than normal)."""
    half_width, draw = std * 3 ** 0.5, rng.random
    return struct.pack(f"<{count}f", *(mean + half_width * (2 * draw() - 1) for _ in range(count)))


def idefics3_projector(seed: int = 0, shape: ProjectorShape = ProjectorShape()) -> bytes:
    """The bytes of a clip/idefics3 projector GGUF with seeded random F32 weights."""
    s, rng = shape, random.Random(seed)
    f = (GGUF()
         .add("general.architecture", STRING, "clip")
         .add("general.type", STRING, "mmproj")
         .add("general.name", STRING, "synthetic idefics3")
         .add("general.file_type", UINT32, 0)
         .add("clip.has_vision_encoder", BOOL, True)
         .add("clip.projector_type", STRING, "idefics3")
         .add("clip.use_gelu", BOOL, True)
         .add("clip.vision.image_size", UINT32, s.image_size)
         .add("clip.vision.patch_size", UINT32, s.patch_size)
         .add("clip.vision.embedding_length", UINT32, s.width)
         .add("clip.vision.feed_forward_length", UINT32, s.ffn)
         .add("clip.vision.block_count", UINT32, s.blocks)
         .add("clip.vision.projection_dim", UINT32, s.out)
         .add("clip.vision.attention.head_count", UINT32, s.heads)
         .add("clip.vision.attention.layer_norm_epsilon", FLOAT32, 1e-6)
         .add("clip.vision.image_mean", ARRAY, Arr(FLOAT32, [0.5, 0.5, 0.5]))
         .add("clip.vision.image_std", ARRAY, Arr(FLOAT32, [0.5, 0.5, 0.5]))
         .add("clip.vision.projector.scale_factor", UINT32, s.scale_factor))
    n_patches = (s.image_size // s.patch_size) ** 2

    def weight(name: str, dims: list[int], std: float, mean: float = 0.0) -> None:
        count = 1
        for dim in dims:
            count *= dim
        f.tensor(name, dims, 0, data=_floats(rng, count, std, mean))

    # ggml order: the first dimension is the input (a linear layer's weight is [in, out])
    weight("v.patch_embd.weight", [s.patch_size, s.patch_size, 3, s.width], 0.2)
    weight("v.patch_embd.bias", [s.width], 0.1)
    weight("v.position_embd.weight", [s.width, n_patches], 0.1)
    for i in range(s.blocks):
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            weight(f"v.blk.{i}.{part}.weight", [s.width, s.width], s.width ** -0.5)
            weight(f"v.blk.{i}.{part}.bias", [s.width], 0.02)
        for norm in ("ln1", "ln2"):
            weight(f"v.blk.{i}.{norm}.weight", [s.width], 0.1, mean=1.0)
            weight(f"v.blk.{i}.{norm}.bias", [s.width], 0.02)
        weight(f"v.blk.{i}.ffn_up.weight", [s.width, s.ffn], s.width ** -0.5)
        weight(f"v.blk.{i}.ffn_up.bias", [s.ffn], 0.02)
        weight(f"v.blk.{i}.ffn_down.weight", [s.ffn, s.width], s.ffn ** -0.5)
        weight(f"v.blk.{i}.ffn_down.bias", [s.width], 0.02)
    weight("v.post_ln.weight", [s.width], 0.1, mean=1.0)
    weight("v.post_ln.bias", [s.width], 0.02)
    merged = s.width * s.scale_factor ** 2
    weight("mm.model.fc.weight", [merged, s.out], merged ** -0.5)
    return f.build()


def png(width: int, height: int, colour: tuple[int, int, int], stripes: int = 0) -> bytes:
    """An RGB PNG of one colour; ``stripes`` > 0 paints every other band of that many rows in its complement."""
    rows = []
    for y in range(height):
        r, g, b = colour if not stripes or (y // stripes) % 2 == 0 else tuple(255 - c for c in colour)
        rows.append(b"\x00" + bytes((r, g, b)) * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))
