"""winnow's tokenizer package: BBPE training (DeepSeek pre-tokenization, digits split, 102,400
entries), the token-stream writer and the reader a training job imports.

Nothing is here yet: this package exists so the distribution's layout matches the design card,
and it imports nothing of ours (ARCHITECTURE.md). The tokenizer and packing stages are later issues.
"""
