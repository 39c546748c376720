"""Train winnow's byte-level BPE the DeepSeek way with the `tokenizers` library.

`train_bpe(texts, vocab_size=102_400)`: DeepSeek's pre-tokenizer (`pretokenize.py`), no
normalizer, the 256 byte symbols as initial alphabet (no `limit_alphabet`), `BpeTrainer` learning
up to `learned_size` entries (100,000 of 102,400 by default), then the 15 named special tokens and
reserved tokens appended so the model vocabulary is exactly `vocab_size` (`specials.py`).

`save_hf_dir(tokenizer, DIR)` writes what `transformers.AutoTokenizer.from_pretrained(DIR)` reads
offline: `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`.

Training is deterministic: the same texts in the same order and the same settings give a
byte-identical `tokenizer.json` (the test trains twice and compares the bytes).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Literal

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors, trainers

from winnow.tokenizer.pretokenize import byte_level_decoder, deepseek_pre_tokenizer, plain_pre_tokenizer
from winnow.tokenizer.specials import (NAMED_SPECIAL_TOKENS, check_vocab_size, default_learned_size,
                                       special_token_contents)

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

PreTokenization = Literal["deepseek", "plain"]


class EmptySample(ValueError):
    """The training texts held no non-empty text: there is nothing to learn from."""


def _counted(texts: Iterable[str], seen: list[int]) -> Iterator[str]:
    """Yield the non-empty texts, counting them (and raising on a non-string) as they pass."""
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"training texts must be str, got {type(text).__name__}")
        if text:
            seen[0] += 1
            seen[1] += len(text.encode("utf-8"))
            yield text


def train_bpe(texts: Iterable[str], vocab_size: int = 102_400, learned_size: int | None = None,
              min_frequency: int = 2, pre_tokenization: PreTokenization = "deepseek",
              show_progress: bool = False, length: int | None = None) -> Tokenizer:
    """Train a byte-level BPE on `texts` (streamed: only the trainer's pre-token counts stay in
    memory) and return it with specials and reserved tokens filling the vocabulary to exactly
    `vocab_size`. `pre_tokenization="plain"` trains the `tokenizers` default instead (GPT-2
    regex, digits merged), with the same specials: the baseline of the sample-size study."""
    learned_size = default_learned_size(vocab_size) if learned_size is None else learned_size
    check_vocab_size(vocab_size, learned_size)
    if min_frequency < 0:
        raise ValueError(f"min_frequency must be >= 0, got {min_frequency}")
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = deepseek_pre_tokenizer() if pre_tokenization == "deepseek" else plain_pre_tokenizer()
    tok.decoder = byte_level_decoder()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=learned_size, min_frequency=min_frequency,
                                  show_progress=show_progress, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    seen = [0, 0]
    tok.train_from_iterator(_counted(texts, seen), trainer=trainer, length=length)
    if seen[0] == 0:
        raise EmptySample("no non-empty training text: the sample is empty")
    add_special_tokens(tok, vocab_size)
    return tok


def add_special_tokens(tok: Tokenizer, vocab_size: int) -> None:
    """Append the named specials and reserved tokens after the learned vocabulary so that the
    vocabulary holds exactly `vocab_size` entries, ids 0 .. vocab_size-1."""
    learned = tok.get_vocab_size(with_added_tokens=False)
    contents = special_token_contents(learned, vocab_size)
    tok.add_special_tokens([AddedToken(c, special=True, normalized=False) for c in contents])
    total = tok.get_vocab_size(with_added_tokens=True)
    if total != vocab_size:  # a learned token equal to a special's text would be reused, not added
        raise RuntimeError(f"vocabulary has {total} entries, expected {vocab_size}")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to `path` via a temp file and rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # A writer of the same path killed earlier (a retried Ray task) left its temp file: one writer
    # per path at a time, so any other `.NAME.XXXXXXXX.tmp` beside it is such a leftover.
    leftover = re.compile(rf"^\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.tmp$")
    for other in path.parent.iterdir():
        if leftover.match(other.name):
            other.unlink(missing_ok=True)


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def hf_tokenizer_config(model_max_length: int = 4096) -> dict:
    """`tokenizer_config.json`: the fast tokenizer class and every named special by role (BOS,
    EOS, PAD and the FIM tokens as `extra_special_tokens`, so `tok.fim_prefix_token` works)."""
    by_role = {t.role: t.content for t in NAMED_SPECIAL_TOKENS}
    extra = {role: content for role, content in by_role.items() if role not in ("bos_token", "eos_token", "pad_token")}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": by_role["bos_token"],
        "eos_token": by_role["eos_token"],
        "pad_token": by_role["pad_token"],
        "fim_prefix_token": by_role["fim_prefix_token"],
        "fim_middle_token": by_role["fim_middle_token"],
        "fim_suffix_token": by_role["fim_suffix_token"],
        "extra_special_tokens": extra,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
    }


def save_hf_dir(tok: Tokenizer, out_dir: str | os.PathLike[str], model_max_length: int = 4096) -> dict[str, Path]:
    """Write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` into
    `out_dir`, each atomically; return their paths."""
    out = Path(out_dir)
    cfg = hf_tokenizer_config(model_max_length)
    special_map = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token")}
    special_map["additional_special_tokens"] = list(cfg["extra_special_tokens"].values())
    paths = {TOKENIZER_FILE: out / TOKENIZER_FILE, TOKENIZER_CONFIG_FILE: out / TOKENIZER_CONFIG_FILE,
             SPECIAL_TOKENS_MAP_FILE: out / SPECIAL_TOKENS_MAP_FILE}
    _write_atomic(paths[TOKENIZER_FILE], tok.to_str(pretty=True).encode("utf-8"))
    _write_atomic(paths[TOKENIZER_CONFIG_FILE], _json_bytes(cfg))
    _write_atomic(paths[SPECIAL_TOKENS_MAP_FILE], _json_bytes(special_map))
    return paths
