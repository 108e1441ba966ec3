"""The ``content`` of a search result: the passage of a page that best matches the query."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_SUFFIXES = ("ingly", "ings", "ing", "edly", "ed", "ies", "es", "s", "ly")
MAX_TERMS = 32


def query_terms(query: str) -> list[str]:
    """Lower-case word tokens of a query, each once, in order (punctuation never reaches SQL)."""
    terms: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in terms:
            terms.append(word)
    return terms[:MAX_TERMS]


def stem(word: str) -> str:
    """A crude suffix-stripping stem, enough to match "baking" with "bake" in a passage."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word.rstrip("e") if len(word) > 4 else word


def _passages(content: str, max_chars: int) -> list[str]:
    """Blank-line separated blocks, long ones cut into sentence groups of at most ``max_chars``."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", content):
        block = block.strip()
        while len(block) > max_chars:
            cut = max(block.rfind(". ", 0, max_chars), block.rfind("\n", 0, max_chars))
            cut = cut + 1 if cut > max_chars // 3 else max_chars
            out.append(block[:cut].strip())
            block = block[cut:].strip()
        if block:
            out.append(block)
    return out


def _score(passage: str, stems: set[str]) -> float:
    words = [stem(w) for w in _WORD.findall(passage.lower())]
    hits = [w for w in words if w in stems]
    return len(set(hits)) * 10 + len(hits) if words else 0.0


def best_passage(content: str, query: str, max_chars: int = 800) -> str:
    """The best-matching passage of ``content`` and what follows it, up to ``max_chars``."""
    passages = _passages(content, max_chars)
    if not passages:
        return ""
    stems = {stem(t) for t in query_terms(query)}
    scores = [_score(p, stems) for p in passages]
    start = max(range(len(passages)), key=lambda i: (scores[i], -i))
    chosen, size = [], 0
    for passage in passages[start:]:
        if chosen and size + len(passage) + 2 > max_chars:
            break
        chosen.append(passage)
        size += len(passage) + 2
    return "\n\n".join(chosen)
