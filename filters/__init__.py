"""Document scorers, labellers and indexes over text (Python, with numba kernels where a per-character
loop costs: quality n-gram counts, jieba's word split, the perplexity normaliser); no Ray, no I/O
beyond loading a model.

- :mod:`filters.language`    fastText ``lid.176`` language ID with per-language thresholds
- :mod:`filters.quality`     Gopher quality/repetition, FineWeb and C4 rules in one pass per document
                             (the decisions of datatrove's classes), language-aware via :mod:`filters.wordsplit`
- :mod:`filters.perplexity`  CCNet perplexity: normaliser + subword tokeniser + KenLM 5-gram,
                             head/middle/tail buckets from per-language cutoffs
- :mod:`filters.text_normalize`, :mod:`filters.lm_tokenizer`, :mod:`filters.reftext`: the pieces
                             ``winnow lm train`` builds those models from
- :mod:`filters.domains`, :mod:`filters.topic_classifier`: remix's URL/host rules and fastText topic model
- :mod:`filters.benchmarks`, :mod:`filters.ngram_index`: decontamination's benchmark reader and n-gram index

Nothing here imports ``pipeline`` or ``stages``; models are files on disk, never downloads.
"""

from winnow.filters.errors import ModelError

__all__ = ["ModelError"]
