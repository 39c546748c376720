"""The document schema shared by every stage (ARCHITECTURE.md, "Document schema").

Ingest writes the base columns; later stages append theirs and never drop one."""

import pyarrow as pa

BASE_DOCUMENT_SCHEMA = pa.schema([
    ("id", pa.string()),            # hex of blake2b-128(dump, url, record digest): stable across runs
    ("url", pa.string()),
    ("host", pa.string()),
    ("dump", pa.string()),          # e.g. CC-MAIN-2024-22; "" when unknown
    ("crawl_date", pa.timestamp("ms", tz="UTC")),  # ms: what parquet stores and gives back
    ("text", pa.string()),
    ("source", pa.string()),        # input file and record offset, for tracing a row back
])
