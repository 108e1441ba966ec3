"""Split a model's reasoning (``<think>…</think>``) from its answer while streaming."""

from __future__ import annotations


from corral_common.text import partial_suffix


class ThinkingSplitter:
    """Routes text to ``thinking`` between the tags and to ``content`` elsewhere."""

    def __init__(self, open_tag: str = "<think>", close_tag: str = "</think>", inside: bool = False) -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        self.state = "thinking" if inside else "start"
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        """(thinking, content) ready to emit now."""
        self.buffer += text
        thinking = content = ""
        while True:
            if self.state == "start":
                stripped = self.buffer.lstrip()
                if stripped.startswith(self.open_tag):
                    self.buffer, self.state = stripped[len(self.open_tag):], "thinking"
                    continue
                if stripped and not self.open_tag.startswith(stripped):
                    self.state = "content"
                    continue
                return thinking, content
            if self.state == "thinking":
                if self.close_tag in self.buffer:
                    before, self.buffer = self.buffer.split(self.close_tag, 1)
                    thinking += before
                    self.buffer, self.state = self.buffer.lstrip(), "content"
                    continue
                keep = partial_suffix(self.buffer, self.close_tag)
                thinking += self.buffer[: len(self.buffer) - keep]
                self.buffer = self.buffer[len(self.buffer) - keep:]
                return thinking, content
            content += self.buffer
            self.buffer = ""
            return thinking, content

    def finish(self) -> tuple[str, str]:
        """Whatever is still held when the output ends."""
        rest, self.buffer = self.buffer, ""
        return (rest, "") if self.state == "thinking" else ("", rest)
