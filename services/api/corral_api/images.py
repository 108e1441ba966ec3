"""Images for vision models: validate the base64 payloads and place Ollama's ``[img-N]`` markers in the prompt."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from corral_common.errors import BadRequest

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MARKER = re.compile(r"\[img-(\d+)\]")
# Leading bytes of the formats llama.cpp's image loader (stb_image) reads.
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
              (b"BM", "bmp"))


def image_kind(data: bytes) -> str | None:
    """The image format of some bytes, or None when they are not an image the engine can read."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in SIGNATURES if data.startswith(magic)), None)


def decode_image(encoded: str, position: int, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """One request image's bytes; bad base64, non-image bytes and oversize images are 400s naming the image."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"image {position}: invalid base64 data") from None
    if len(data) > limit:
        raise BadRequest(f"image {position}: {len(data)} bytes is larger than the {limit} byte limit")
    if image_kind(data) is None:
        raise BadRequest(f"image {position}: not a PNG, JPEG, WebP, GIF or BMP image")
    return data


def place_markers(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Number every image across the conversation as Ollama does (``[img-N]``, N from 0) and put its marker in
    the message text: where the text already names it, else before the text. Returns the messages and images."""
    images: list[str] = []
    out = []
    for message in messages:
        own = message.get("images") or []
        if not own:
            out.append(message)
            continue
        content = message.get("content", "")
        prefix = ""
        for image in own:
            tag = f"[img-{len(images)}]"
            images.append(image)
            if tag not in content:
                prefix += tag + " "
        out.append({**message, "content": prefix + content})
    for position, image in enumerate(images):
        decode_image(image, position)
    return out, images
