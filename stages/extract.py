"""HTML bytes -> main text: charset decoding, binary-body detection and main-content extraction.

Used by `stages/ingest` for every HTML response record. Three jobs, each a pure function:

- `decode_html`: bytes -> str. A byte-order mark first; then UTF-8 whenever the body is valid
  UTF-8 (mislabelled UTF-8 is the common crawl error, accidental valid UTF-8 is not); else the
  charset of the HTTP `Content-Type` header when it is known and decodes the body, else the
  page's own `<meta charset>` / `http-equiv` declaration, else resiliparse's uchardet-based
  detection. Web labels are normalised the way browsers do (WHATWG: `gb2312` -> GBK,
  `iso-8859-1` -> windows-1252...), and each is decoded with the superset codec a browser uses
  (GBK -> gb18030, Shift_JIS -> cp932, EUC-KR -> cp949, Big5 -> big5hkscs), because Chinese /
  Japanese / Korean pages routinely use characters outside the narrow standard. Never raises:
  undecodable bytes become U+FFFD.
- `is_probably_binary`: lets ingest reject images, PDFs, archives... with a reason instead of
  feeding them to an HTML parser.
- `extract_main_text`: main content as plain text, one paragraph per line, with either
  resiliparse (the default: C++ main-content heuristics plus a few skip selectors; same F1 as
  trafilatura's defaults at ~11x the speed) or trafilatura (its most precise settings, +0.012 F1
  at 1/11 the speed, and ~70 KB/s on multi-megabyte pages). Never raises: a library exception
  means ''. A pathologically deep DOM (resiliparse's main-content pass is super-linear in depth)
  is extracted without main-content filtering rather than taking seconds.

The options of each extractor were chosen by `bench/ingest.py` (token F1 against the
scrapinghub article-extraction-benchmark gold, and pages/s); see that file for the numbers.
"""

from __future__ import annotations

import codecs
import logging
import re
from typing import Any, Final

from resiliparse.parse.encoding import detect_encoding, map_encoding_to_html5

__all__ = [
    "EXTRACTORS",
    "DEFAULT_EXTRACTOR",
    "RESILIPARSE_OPTIONS",
    "TRAFILATURA_OPTIONS",
    "charset_from_content_type",
    "decode_html",
    "extract_main_text",
    "is_probably_binary",
]

EXTRACTORS: Final = ("resiliparse", "trafilatura")
DEFAULT_EXTRACTOR: Final = "resiliparse"

#: Elements dropped before resiliparse's main-content heuristics run, chosen by bench/ingest.py
#: (each one measured on its own, kept only if it raised token F1 on the scrapinghub set without
#: lowering it on the readability test pages beyond noise). The page title (``h1``) and
#: ``<header>`` / ``<footer>`` carry the title, bylines, dates and site chrome that article gold
#: excludes (trafilatura also moves the title to metadata); image captions, bylines, share bars
#: and cookie banners are repeated boilerplate. Substring class selectors (``*=``, ``i`` = case
#: blind) are broad; a page they would empty is re-extracted without them (see
#: `extract_main_text`). Selectors that measured worse (ads, tags, related, read-more, author,
#: date) are deliberately absent: they match wrappers of real article bodies.
RESILIPARSE_SKIP_ELEMENTS: Final[tuple[str, ...]] = (
    "h1",
    "header",
    "footer",
    "[class*=caption i]",
    "[class*=byline i]",
    "[class*=cookie i]",
    "[class*=share i]",
)

#: Options passed to `resiliparse.extract.html2text.extract_plain_text` (chosen by bench/ingest.py).
RESILIPARSE_OPTIONS: Final[dict[str, Any]] = {
    "preserve_formatting": True,  # block elements -> newlines: paragraphs stay separable
    "main_content": True,  # resiliparse's boilerplate removal; without it F1 drops to ~0.68
    "list_bullets": False,  # "\u2022 " markers are not text the model should learn
    "alt_texts": False,  # image alt texts are icons / captions, not body text (-0.02 F1)
    "links": False,
    "form_fields": False,
    "noscript": False,
    "comments": False,  # user comment sections are not the article (-0.01 F1)
    "skip_elements": list(RESILIPARSE_SKIP_ELEMENTS),
}

#: Options passed to `trafilatura.extract` when it is selected (chosen by bench/ingest.py: the
#: most precise of its option sets; comments are not article text).
TRAFILATURA_OPTIONS: Final[dict[str, Any]] = {
    "output_format": "txt",
    "include_comments": False,
    "include_tables": True,
    "favor_precision": True,
    "favor_recall": False,
    "fast": False,
    "with_metadata": False,
}

# Bytes of the document head searched for a <meta> charset declaration. The HTML spec's
# prescan looks at 1024 bytes; real pages often put the meta after long <script>/<style>
# blocks, so look further (cheap: a single regex over a bounded prefix).
_META_SCAN_BYTES: Final = 8192
_META_CHARSET_RE: Final = re.compile(
    rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE
)

# WHATWG decoders are supersets of the standards their labels name; Python's codec of the same
# name is the strict standard. Decode with the superset a browser would use.
_BROWSER_CODEC: Final[dict[str, str]] = {
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "iso8859_11": "cp874",
}


def _codec_for_label(label: str | bytes | None) -> str | None:
    """A web charset label -> the Python codec a browser would decode it with, or None when the
    label is unknown (so the caller moves on to the next source instead of trusting garbage)."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    label = label.strip().strip("\"'").lower()
    if not label:
        return None
    mapped = map_encoding_to_html5(label, fallback_utf8=False)
    if mapped is None:
        return None
    try:
        name = codecs.lookup(mapped).name
    except LookupError:
        return None
    name = name.replace("-", "_")
    return _BROWSER_CODEC.get(name, name)


def _meta_charset(body: bytes) -> str | None:
    """The charset declared by `<meta charset=...>` or `<meta http-equiv content="...charset=...">`
    in the head of the document, as a codec name, or None."""
    m = _META_CHARSET_RE.search(body, 0, _META_SCAN_BYTES)
    if not m:
        return None
    codec = _codec_for_label(m.group(1))
    # A page that declares UTF-16 in a meta tag it could be read in as ASCII is not UTF-16
    # (the HTML spec says to treat it as UTF-8).
    if codec and codec.startswith("utf_16"):
        return "utf_8"
    return codec


def _bom_codec(body: bytes) -> str | None:
    """The codec a byte-order mark announces (it overrides every label, as in browsers)."""
    if body.startswith(codecs.BOM_UTF8):
        return "utf_8_sig"
    if body.startswith(codecs.BOM_UTF16_LE) or body.startswith(codecs.BOM_UTF16_BE):
        return "utf_16"
    return None


_CONTENT_TYPE_CHARSET_RE: Final = re.compile(r"""charset\s*=\s*["']?\s*([^\s"';,]+)""", re.IGNORECASE)


def charset_from_content_type(content_type: str | None) -> str | None:
    """The ``charset=`` parameter of an HTTP ``Content-Type`` value (``'text/html; charset=GBK'``
    -> ``'GBK'``), or None. The label is returned as written; `decode_html` validates it."""
    if not content_type:
        return None
    m = _CONTENT_TYPE_CHARSET_RE.search(content_type)
    return m.group(1) if m else None


def decode_html(body: bytes, http_charset: str | None = None) -> str:
    """Bytes of an HTTP body -> str, never raising.

    Order of trust:

    1. a byte-order mark (it overrides every label, as in browsers);
    2. a 7-bit ISO-2022 encoding (e.g. ISO-2022-JP) declared by the header or meta when the body
       holds its ESC sequences (such bodies are also valid ASCII/UTF-8, so step 3 would mangle them);
    3. UTF-8, when the body is valid UTF-8. Non-ASCII bytes that happen to form valid UTF-8 are
       vanishingly rare in GBK / Shift_JIS / windows-125x text, while mislabelled UTF-8 pages are
       common in crawls (a server default ``charset=iso-8859-1`` or a template's stale meta), and
       permissive codecs like windows-1252 or gb18030 "decode" UTF-8 without error into mojibake;
    4. the charset of the HTTP ``Content-Type`` header, when it names a known encoding and the
       body decodes under it without error;
    5. the page's ``<meta charset>`` / ``http-equiv`` declaration, under the same condition;
    6. resiliparse's detection (uchardet), under the same condition;
    7. when nothing decodes cleanly, the candidate that leaves the fewest U+FFFD replacement
       characters (UTF-8 first, then the order above, on ties): a truncated or corrupt page
       still yields its readable text.
    """
    if not body:
        return ""
    bom = _bom_codec(body)
    if bom:
        return body.decode(bom, errors="replace")

    labels: list[str] = []
    header = _codec_for_label(http_charset)
    if header:
        labels.append(header)
    meta = _meta_charset(body)
    if meta and meta not in labels:
        labels.append(meta)

    if b"\x1b" in body:
        for codec in labels:
            if codec.startswith("iso2022"):
                return body.decode(codec, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass

    candidates = [c for c in labels if c != "utf_8"]
    for codec in candidates:
        try:
            return body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        detected = _codec_for_label(detect_encoding(body, from_html_meta=False))
    except Exception:  # noqa: BLE001 - detection is best effort
        detected = None
    if detected and detected not in candidates and detected != "utf_8":
        try:
            return body.decode(detected)
        except (UnicodeDecodeError, LookupError):
            candidates.append(detected)

    # Nothing decodes cleanly: keep the reading with the fewest undecodable bytes.
    best = body.decode("utf-8", errors="replace")
    best_bad = best.count("\ufffd")
    for codec in candidates:
        try:
            text = body.decode(codec, errors="replace")
        except LookupError:
            continue
        bad = text.count("\ufffd")
        if bad < best_bad:
            best, best_bad = text, bad
    return best


# Magic numbers of common non-text bodies found in crawls.
_BINARY_MAGIC: Final = (
    b"%PDF-",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"\xff\xd8\xff",  # JPEG
    b"PK\x03\x04",  # zip, docx, xlsx, epub, jar
    b"\x1f\x8b",  # gzip
    b"BZh",
    b"\xfd7zXZ\x00",
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"\x7fELF",
    b"MZ",  # Windows executables
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",  # MS Office (OLE2)
    b"OggS",
    b"ID3",  # mp3
    b"fLaC",
    b"\x00\x00\x01\x00",  # .ico
    b"wOFF",
    b"wOF2",
    b"\x1aE\xdf\xa3",  # webm / mkv
)
_BINARY_SNIFF_BYTES: Final = 4096
# C0 control bytes that never occur in text: everything below 0x20 except TAB, LF, FF, CR and
# ESC (ISO-2022-JP switches character sets with ESC sequences), plus DEL.
_CONTROL_BYTES: Final = bytes(b for b in range(0x20) if b not in (0x09, 0x0A, 0x0C, 0x0D, 0x1B)) + b"\x7f"
_CONTROL_RATIO: Final = 0.05


def is_probably_binary(body: bytes) -> bool:
    """True when `body` is not text: a known binary magic number (PDF, images, archives,
    executables, media), a NUL byte, or more than 5 % C0 control bytes in the first 4 KB.

    UTF-16 text (which is full of NULs) is recognised by its byte-order mark and is not binary.
    Why: the HTML parser would happily turn a JPEG into a page of mojibake 'text'; ingest rejects
    such bodies with reason `binary` instead.
    """
    if not body:
        return False
    head = body[:_BINARY_SNIFF_BYTES]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    if head.startswith(_BINARY_MAGIC):
        # "MZ" / "BZh" / "ID3" are short: require a control byte too before calling it binary,
        # so a text page starting with those letters is not lost.
        if head[:3] in (b"BZh", b"ID3") or head[:2] == b"MZ":
            return len(head.translate(None, _CONTROL_BYTES)) < len(head)
        return True
    if b"\x00" in head:
        return True
    n_control = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return n_control > _CONTROL_RATIO * len(head)


# resiliparse's main-content pass is super-linear in DOM depth (measured: depth 2,000 -> 0.07 s,
# 8,000 -> 1.8 s, 20,000 -> 23 s), and broken pages with thousands of unclosed <div>/<font> tags
# exist. A page that deep is checked for with one CSS query (a chain of `_MAX_DEPTH` child
# combinators) and extracted without the main-content pass, which is linear. The query costs
# ~0.4 ms, so it only runs on pages with more than `_DEPTH_CHECK_MIN_TAGS` tags: fewer tags
# cannot nest deep enough to be slow (all 181 benchmark pages have fewer than 3,300).
_MAX_DEPTH: Final = 1000
_DEPTH_CHECK_MIN_TAGS: Final = 3000
_DEEP_SELECTOR: Final = ">".join(["*"] * _MAX_DEPTH)


def _extract_resiliparse(html: str, options: dict[str, Any]) -> str:
    """resiliparse's main-content extraction, with two guards: a pathologically deep DOM is
    extracted without the (super-linear) main-content heuristics; when the skip selectors leave
    nothing (a broad selector matched a wrapper of the whole page), extract again without them."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    source: Any = html
    if options.get("main_content") and html.count("<") > _DEPTH_CHECK_MIN_TAGS:
        source = HTMLTree.parse(html)
        if source.document is not None and source.document.query_selector(_DEEP_SELECTOR):
            options = {**options, "main_content": False}
    text = extract_plain_text(source, **options)
    if options.get("skip_elements") and not text.strip():
        text = extract_plain_text(html, **{**options, "skip_elements": None})
    return text


_TRAFILATURA_LOGGER_QUIET = False


def _extract_trafilatura(html: str, options: dict[str, Any]) -> str:
    global _TRAFILATURA_LOGGER_QUIET
    import trafilatura

    if not _TRAFILATURA_LOGGER_QUIET:
        # trafilatura logs an ERROR per empty / unparsable page: noise at crawl scale.
        logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
        _TRAFILATURA_LOGGER_QUIET = True
    return trafilatura.extract(html, **options) or ""


# BOM / zero-width characters left mid-page by templates and C0 control characters (other than
# TAB and LF) that slip through from broken pages -> nothing; CR -> LF. Rare, so the translate
# (slow for long strings) only runs when the regex finds one.
_ODD_CHARS_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\x7f\ufeff\u200b]")
_CHAR_MAP: Final = str.maketrans(
    {
        "\ufeff": None,
        "\u200b": None,
        **{chr(c): None for c in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)},
        "\r": "\n",
    }
)


def _normalise(text: str) -> str:
    """One paragraph per line: no-break spaces become spaces, zero-width and control characters
    go, trailing blanks go, blank lines go. Leading indentation stays (``<pre>`` code keeps its
    shape). Written with str methods, not a regex over the whole text: 10x faster, and this runs
    on every page."""
    text = text.replace("\u00a0", " ")
    if _ODD_CHARS_RE.search(text):
        text = text.translate(_CHAR_MAP)
    return "\n".join(line for line in (raw.rstrip() for raw in text.split("\n")) if line).strip()


def extract_main_text(
    html: str, extractor: str = DEFAULT_EXTRACTOR, options: dict[str, Any] | None = None
) -> str:
    """Main content of `html` as plain text, paragraphs separated by single newlines.

    `extractor` is one of `EXTRACTORS`; `options` overrides the module's chosen options for that
    extractor (the benchmark uses this to compare option sets). Returns '' when nothing is found
    or the library fails on the input: extraction never raises on garbage (ingest then rejects
    the record with reason `empty_text`). An unknown extractor name is a ValueError.
    """
    if extractor == "resiliparse":
        opts = RESILIPARSE_OPTIONS if options is None else options
        fn = _extract_resiliparse
    elif extractor == "trafilatura":
        opts = TRAFILATURA_OPTIONS if options is None else options
        fn = _extract_trafilatura
    else:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    if not html or not isinstance(html, str):
        return ""
    try:
        text = fn(html, dict(opts))
    except Exception:  # noqa: BLE001 - any library failure on garbage input means "no text"
        return ""
    return _normalise(text) if text else ""
