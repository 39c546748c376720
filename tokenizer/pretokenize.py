"""DeepSeek LLM's pre-tokenizer, rebuilt from its regexes (DeepSeek LLM §2.1, "Tokenizer").

Before BPE sees a text it is cut into pre-tokens that merges never cross:
1. each ``\\r`` / ``\\n`` alone (newlines never merge with text),
2. runs of letters with one optional leading space,
3. runs of punctuation (ASCII, fullwidth, curly quotes, CJK stops) with one optional space,
4. trailing whitespace,
5. runs of CJK / kana / Hangul (never merged with Latin letters),
then ``Digits(individual_digits=True)`` (every digit its own pre-token) and ``ByteLevel`` without
its own GPT-2 regex (bytes mapped to printable symbols). There is no normalizer.

The five pattern strings below are the anchor tokenizer's (``deepseek_llm_tokenizer.json``,
``pre_tokenizer.pretokenizers[*].pattern.Regex``) character for character, written with Python
escapes so that no invisible character hides in the source; ``tests/test_tokenizer_pretokenize.py``
compares them with the anchor and compares ``pre_tokenize_str`` on a mixed corpus.
"""

from __future__ import annotations

from tokenizers import Regex, decoders, pre_tokenizers

# a carriage return or line feed, alone: newlines never merge with anything
NEWLINE_PATTERN = '[\r\n]'

# a run of letters (Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, Glagolitic, Coptic,
# fullwidth Latin, Deseret, Osage, Old Hungarian, Warang Citi, Adlam), one optional leading space
LETTERS_PATTERN = (
    '\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-'
    '\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5'
    '\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-'
    '\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20'
    '-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc'
    '\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6'
    '-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-'
    '\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-'
    '\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-'
    '\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-'
    '\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-'
    '\U000118df\U0001e900-\U0001e943]+'
)

# a run of ASCII / fullwidth punctuation, curly quotes and CJK space/stops, one optional space
PUNCTUATION_PATTERN = '\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+'

# whitespace at the end of the text
TRAILING_SPACE_PATTERN = '\\s+$'

# a run of CJK ideographs (U+4E00-U+9FA5), U+0800-U+4E00 (kana, CJK symbols, ...), Hangul
CJK_PATTERN = '[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+'

#: The Split patterns in the order DeepSeek applies them.
SPLIT_PATTERNS: tuple[str, ...] = (NEWLINE_PATTERN, LETTERS_PATTERN, PUNCTUATION_PATTERN,
                                   TRAILING_SPACE_PATTERN, CJK_PATTERN)


def deepseek_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer sequence of DeepSeek LLM: five isolating splits, single digits, bytes."""
    splits = [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in SPLIT_PATTERNS]
    return pre_tokenizers.Sequence(splits + [
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])


def plain_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """The `tokenizers` default byte-level pre-tokenizer (GPT-2 regex, digits merged): the
    baseline the sample-size study compares against."""
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def byte_level_decoder() -> decoders.Decoder:
    """Bytes back to text (DeepSeek's decoder)."""
    return decoders.ByteLevel()
