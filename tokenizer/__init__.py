"""winnow's tokenizer package: BBPE training (DeepSeek pre-tokenization, digits split, 102,400
entries), the token-stream writer and the reader a training job imports.

Training: `pretokenize` (DeepSeek's pre-tokenizer from its regexes), `specials` (15 named special
tokens, reserved fill), `train` (`train_bpe`, `save_hf_dir`), `evaluate` (bytes/token per
language). The package imports nothing of ours (ARCHITECTURE.md).
"""


def __getattr__(name: str):  # lazy exports: `from winnow.tokenizer import PackedDataset` loads only the reader
    if name in ("PackedDataset", "TorchPackedDataset", "shuffle_quality"):
        from . import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
