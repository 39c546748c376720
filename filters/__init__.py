"""Document scorers and predicates: plain Python over text, no Ray, no I/O beyond loading a model.

- :mod:`filters.language`    fastText ``lid.176`` language ID with per-language thresholds
- :mod:`filters.quality`     Gopher quality/repetition, FineWeb and C4 rules (datatrove's classes),
                             made language-aware by :mod:`filters.wordsplit`
- :mod:`filters.perplexity`  CCNet perplexity: normaliser + subword tokeniser + KenLM 5-gram,
                             head/middle/tail buckets from per-language cutoffs
- :mod:`filters.text_normalize`, :mod:`filters.lm_tokenizer`, :mod:`filters.reftext`: the pieces
                             ``winnow lm train`` builds those models from

Nothing here imports ``pipeline`` or ``stages``; models are files on disk, never downloads.
"""

from winnow.filters.errors import ModelError

__all__ = ["ModelError"]
