"""What a fresh pack worker pays once before its first shard: the digit table asked of
`tokenizers` and the numba kernels loaded from numba's on-disk cache (median of 5 processes).

Usage: .venv/bin/python bench/pack_startup.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = ROOT.parent / "shared" / "data" / "anchors" / "deepseek_llm_tokenizer.json"
CHILD = f"""
import json, time
from tokenizers import Tokenizer
from winnow.tokenizer import piece_cache
tj = json.load(open({str(ANCHOR)!r}))
tok = Tokenizer.from_file({str(ANCHOR)!r})
t0 = time.process_time(); piece_cache.numeric_code_points(); t1 = time.process_time()
enc = piece_cache.PieceCacheEncoder.for_tokenizer(tok, tj); enc.encode_batch(["warm up 123 中文"]); t2 = time.process_time()
print(json.dumps({{"digits_s": t1 - t0, "kernels_and_first_call_s": t2 - t1}}))
"""


def main() -> int:
    runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                                      cwd=ROOT).stdout.strip().splitlines()[-1]) for _ in range(5)]
    digits = statistics.median(r["digits_s"] for r in runs)
    kernels = statistics.median(r["kernels_and_first_call_s"] for r in runs)
    print(f"per fresh process (CPU s, median of 5): digit table {digits:.2f}, numba kernels + first call {kernels:.2f}")
    print(f"RESULT pack_startup_digits_s={digits:.2f} pack_startup_kernels_s={kernels:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
