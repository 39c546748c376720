"""The special tokens of winnow's tokenizer and the reserved fill up to the model vocabulary.

Layout of the ids (DeepSeek LLM's: 100,000 conventional tokens, then the specials, model
vocabulary 102,400):

    0 .. L-1                 learned byte-level BPE tokens (the 256 byte symbols included)
    L .. L+14                the 15 named special tokens below, in this order
    L+15 .. vocab_size-1     reserved special tokens ``<｜reserved▁special▁token▁N｜>``

With the default 102,400 entries and 100,000 learned tokens the named specials are ids
100,000 .. 100,014 (BOS 100,000 and EOS 100,001 exactly as in DeepSeek LLM) and 2,385 reserved
tokens fill the rest. When the trainer learns fewer than L tokens (a small sample runs out of
pairs), the specials move down and more reserved tokens fill up: the total is always exact.
The spellings follow DeepSeek's (fullwidth bars ``｜`` and ``▁`` for spaces), so no special token
can be produced by the pre-tokenizer from ordinary text pieces.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecialToken:
    """A named special token: its role (the key used in tokenizer_config.json) and its text."""

    role: str
    content: str
    description: str


#: The 15 named special tokens, in id order after the learned vocabulary.
NAMED_SPECIAL_TOKENS: tuple[SpecialToken, ...] = (
    SpecialToken("bos_token", "<｜begin▁of▁sentence｜>", "start of a document (DeepSeek LLM id 100000)"),
    SpecialToken("eos_token", "<｜end▁of▁sentence｜>", "end of a document (DeepSeek LLM id 100001)"),
    SpecialToken("pad_token", "<｜▁pad▁｜>", "padding"),
    SpecialToken("fim_prefix_token", "<｜fim▁begin｜>", "fill-in-the-middle: the prefix follows (DeepSeek-Coder)"),
    SpecialToken("fim_suffix_token", "<｜fim▁hole｜>", "fill-in-the-middle: the suffix follows"),
    SpecialToken("fim_middle_token", "<｜fim▁end｜>", "fill-in-the-middle: the middle follows"),
    SpecialToken("system_token", "<｜System｜>", "chat: a system turn follows"),
    SpecialToken("user_token", "<｜User｜>", "chat: a user turn follows"),
    SpecialToken("assistant_token", "<｜Assistant｜>", "chat: an assistant turn follows"),
    SpecialToken("eot_token", "<｜end▁of▁turn｜>", "chat: end of a turn"),
    SpecialToken("tool_calls_begin_token", "<｜tool▁calls▁begin｜>", "tool use: calls begin"),
    SpecialToken("tool_calls_end_token", "<｜tool▁calls▁end｜>", "tool use: calls end"),
    SpecialToken("tool_outputs_begin_token", "<｜tool▁outputs▁begin｜>", "tool use: outputs begin"),
    SpecialToken("tool_outputs_end_token", "<｜tool▁outputs▁end｜>", "tool use: outputs end"),
    SpecialToken("doc_sep_token", "<｜doc▁sep｜>", "separates documents packed into one sequence"),
)

NUM_NAMED_SPECIAL_TOKENS = len(NAMED_SPECIAL_TOKENS)
#: The 256 byte symbols every byte-level vocabulary holds.
NUM_BYTE_SYMBOLS = 256


def reserved_token(index: int) -> str:
    """The text of reserved special token number `index` (0-based)."""
    return f"<｜reserved▁special▁token▁{index}｜>"


def min_vocab_size() -> int:
    """The smallest model vocabulary possible: the 256 byte symbols plus the named specials."""
    return NUM_BYTE_SYMBOLS + NUM_NAMED_SPECIAL_TOKENS


def default_learned_size(vocab_size: int) -> int:
    """Learned BPE entries for a model vocabulary of `vocab_size`: DeepSeek's 100,000 of 102,400
    (the same ratio, floored, for other sizes), never below 256 and always leaving room for the
    named specials."""
    check_vocab_size(vocab_size)
    learned = vocab_size * 100_000 // 102_400
    return max(NUM_BYTE_SYMBOLS, min(learned, vocab_size - NUM_NAMED_SPECIAL_TOKENS))


def check_vocab_size(vocab_size: int, learned_size: int | None = None) -> None:
    """Raise ValueError when the sizes cannot hold the bytes, the specials and the learned part."""
    if vocab_size < min_vocab_size():
        raise ValueError(f"vocab size {vocab_size} is smaller than the {NUM_BYTE_SYMBOLS} byte symbols "
                         f"+ {NUM_NAMED_SPECIAL_TOKENS} named special tokens = {min_vocab_size()}")
    if learned_size is not None:
        if learned_size < NUM_BYTE_SYMBOLS:
            raise ValueError(f"learned vocab size {learned_size} is smaller than the {NUM_BYTE_SYMBOLS} byte symbols")
        if learned_size + NUM_NAMED_SPECIAL_TOKENS > vocab_size:
            raise ValueError(f"learned vocab size {learned_size} + {NUM_NAMED_SPECIAL_TOKENS} named special "
                             f"tokens exceeds the vocab size {vocab_size}")


def special_token_contents(learned: int, vocab_size: int) -> list[str]:
    """Named specials then reserved tokens: exactly `vocab_size - learned` strings."""
    check_vocab_size(vocab_size)
    n_reserved = vocab_size - learned - NUM_NAMED_SPECIAL_TOKENS
    if n_reserved < 0:
        raise ValueError(f"{learned} learned tokens leave no room for {NUM_NAMED_SPECIAL_TOKENS} specials in {vocab_size}")
    return [t.content for t in NAMED_SPECIAL_TOKENS] + [reserved_token(i) for i in range(n_reserved)]
