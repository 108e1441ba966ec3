"""Image files named in a prompt, for vision models (Ollama's extractFileData in cmd/interactive.go).

A path such as ``./photo.png`` or ``/tmp/a\\ b.jpg`` in the prompt is read, attached to the request and cut from
the text; a path that does not exist stays in the text as it was typed.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

from corral_cli.errors import CliError

# Ollama's pattern: an optional drive letter, then / ./ \ or .\, then anything up to an image extension. It matches
# more than file names; names that are not files are left alone.
FILE_NAMES = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|webp)\b")
# Shell escapes undone in a matched name, tried in this order at each position (Go's strings.NewReplacer).
ESCAPES = {"\\ ": " ", "\\(": "(", "\\)": ")", "\\[": "[", "\\]": "]", "\\{": "{", "\\}": "}", "\\$": "$",
           "\\&": "&", "\\;": ";", "\\'": "'", "\\\\": "\\", "\\*": "*", "\\?": "?", "\\~": "~", "'\\''": "'"}
_ESCAPE = re.compile("|".join(re.escape(old) for old in ESCAPES))
MAX_IMAGE_BYTES = 100 * 1024 * 1024


def file_names(text: str) -> list[str]:
    """Every image path the text seems to name, as typed."""
    return FILE_NAMES.findall(text)


def unescape(name: str) -> str:
    """A typed path with its shell escapes undone."""
    return _ESCAPE.sub(lambda match: ESCAPES[match[0]], name)


def content_type(head: bytes) -> str:
    """The type Go's http.DetectContentType gives an image's first bytes (a rough stand-in for anything else)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:14] == b"WEBPVP":
        return "image/webp"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain; charset=utf-8" if text.isprintable() or text.isspace() else "application/octet-stream"


def image_data(path: Path) -> bytes:
    """A PNG, JPEG or WebP file's bytes; FileNotFoundError if there is none, CliError if it is no such image."""
    with path.open("rb") as handle:
        head = handle.read(512)
        if not head:
            raise CliError("EOF")
        kind = content_type(head)
        if kind not in ("image/jpeg", "image/jpg", "image/png", "image/webp"):
            raise CliError(f"invalid image type: {kind}")
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise CliError("file size exceeds maximum limit (100MB)")
        return head + handle.read()


def extract_images(text: str) -> tuple[str, list[str]]:
    """The prompt without the image files it names, and those images base64-encoded, in the order named."""
    images: list[str] = []
    for typed in file_names(text):
        name = unescape(typed)
        try:
            data = image_data(Path(name))
        except FileNotFoundError:
            continue
        except (OSError, CliError) as error:
            message = error.message if isinstance(error, CliError) else (error.strerror or str(error))
            sys.stderr.write(f"Couldn't process image: {_go_quote(message)}\n")
            raise CliError(message) from None
        sys.stderr.write(f"Added image '{name}'\n")
        text = text.replace(f"'{name}'", "").replace(f"'{typed}'", "").replace(typed, "")
        images.append(base64.b64encode(data).decode())
    return text.strip(), images


def names_a_file(line: str) -> bool:
    """Whether a ``/``-line starts with an image path (a prompt, not a command)."""
    first = line.split()[0] if line.split() else ""
    return bool(first) and any(name.startswith(first) for name in file_names(line))


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
