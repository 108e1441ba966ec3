"""Small text helpers shared by streaming parsers."""


def partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag`` (text that may grow into it)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


# OpenAI's harmony format (gpt-oss): the tokens that frame its messages. The inference engine renders them as text
# where the model's vocabulary has them as control tokens, and the gateway's parser splits the output on them.
HARMONY_TOKENS = ("<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>")


def is_harmony(template: str) -> bool:
    """Whether a chat template (Go or Jinja) writes harmony messages: it opens channels and message bodies."""
    return "<|channel|>" in template and "<|message|>" in template
