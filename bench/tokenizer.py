"""Benchmark and sample-size study of winnow's tokenizer training (issue: "know how much sample it needs").

What it does, in one run, on the real corpus (`../shared/data/corpus/`, 346 MB: en, zh, code,
de/fr/ja/ru):

- **Held-out split**: 5% of every language's documents (by a keyed blake2b hash of the document)
  never enter training; up to `--heldout-mb` MB per language of them are the evaluation text.
- **Samples**: the remaining documents in hash order; the sample of size S MB is the prefix of
  that order (so samples are nested and keep the corpus' own mixture: en ~47%, zh ~32%, code ~17%).
- **Per size, three tokenizers of the same model vocabulary (102,400 by default)**:
  * ours: `winnow.tokenizer.train.train_bpe` (DeepSeek pre-tokenizer, single digits);
  * plain: the same trainer with the `tokenizers` default ByteLevel pre-tokenizer (GPT-2 regex,
    digits merged), same sample, same specials;
  * the DeepSeek LLM tokenizer itself (the anchor, trained on ~24 GB), no training.
  Each training runs in its own subprocess, streaming the sample from a file, so its peak RSS
  (`wait4` rusage of that child) is the trainer's own; wall and CPU seconds (all trainer threads)
  are reported. Unique pre-tokens of the sample are counted in another child with `tokenizers`'
  WordLevelTrainer over the same pre-tokenizer (every distinct pre-token becomes a word).
- **Held-out bytes/token** per language for all three (`winnow.tokenizer.evaluate.score`).
- **Fits** (3 sizes or more): Heaps' law U = K·S^β for unique pre-tokens; peak RSS = a + b·U
  (the trainer's memory is its pre-token table and pair index); bytes/token per language
  saturating, y∞ − c·S^−α. Projected to DeepSeek's 24 GB, and the largest sample whose projected
  RSS fits a 24 GiB machine (2 GiB left for the OS), with the bytes/token the trend gives there
  against 24 GB.

Output: a table per size, the fits, `--json OUT` with everything, `--plot PNG` (matplotlib), and
the last line
``RESULT bytes_per_token_vs_deepseek=… bytes_per_token_vs_plain=… projected_rss_gb_24gb=… train_s_per_100mb=…``
(ratios at the largest size run: ours / other, > 1 means ours compresses better; `vs_deepseek`
and `vs_plain` are the minimum over held-out en, zh and code; `train_s_per_100mb` is the wall time
of our training at the largest size scaled to 100 MB).

Run: ``.venv/bin/python bench/tokenizer.py`` (sizes 5 10 20 40 MB, about 5 minutes on 2 shared
cores); the study in docs/tokenizer.md: ``--sizes 25 50 100 200 --json … --plot …``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WINNOW_SHARED_DATA", REPO.parent / "shared" / "data"))
ANCHOR = DATA / "anchors" / "deepseek_llm_tokenizer.json"
TARGET_BYTES = 24e9          # DeepSeek LLM's tokenizer training set
MACHINE_GIB = 24.0           # the machine the issue asks about
HEADROOM_GIB = 2.0           # left for the OS and the rest of the process
KEY_LANGS = ("en", "zh", "code")


# --- data ---------------------------------------------------------------------------------------
def _key(doc: dict, path: Path, line: int) -> bytes:
    return (doc.get("url") or f"{path.name}:{line}").encode("utf-8") + b"\0" + doc["text"][:256].encode("utf-8")


def _hash(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8, key=b"winnow-tokenizer-bench").digest(), "little")


def load_corpus(heldout_share: float = 0.05) -> tuple[list[tuple[int, str, str]], dict[str, list[str]]]:
    """(train pool as (hash, lang, text) in hash order, held-out texts per language)."""
    pool: list[tuple[int, str, str]] = []
    held: dict[str, list[tuple[int, str]]] = {}
    cut = int(heldout_share * 2**64)
    for path in sorted((DATA / "corpus").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f):
                doc = json.loads(line)
                h = _hash(_key(doc, path, n))
                lang = doc["lang"]
                if h < cut:
                    held.setdefault(lang, []).append((h, doc["text"]))
                else:
                    pool.append((h, lang, doc["text"]))
    pool.sort(key=lambda t: t[0])
    return pool, {lang: [t for _, t in sorted(v)] for lang, v in sorted(held.items())}


def cap_heldout(held: dict[str, list[str]], mb: float) -> dict[str, list[str]]:
    out = {}
    for lang, texts in held.items():
        kept, n = [], 0
        for t in texts:
            if n >= mb * 1e6:
                break
            kept.append(t)
            n += len(t.encode("utf-8"))
        out[lang] = kept
    return out


def write_sample(pool: list[tuple[int, str, str]], size_mb: float, path: Path) -> dict[str, int]:
    """The first `size_mb` MB of the pool (hash order) as JSON Lines; bytes per language."""
    per_lang: dict[str, int] = {}
    total = 0
    with open(path, "w", encoding="utf-8") as f:
        for _, lang, text in pool:
            if total >= size_mb * 1e6:
                break
            b = len(text.encode("utf-8"))
            total += b
            per_lang[lang] = per_lang.get(lang, 0) + b
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    if total < size_mb * 1e6 * 0.99:
        raise SystemExit(f"the corpus holds only {total / 1e6:.1f} MB for training, less than {size_mb} MB")
    return per_lang


# --- child processes ------------------------------------------------------------------------------
def _stream(path: str):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


def child_main(argv: list[str]) -> int:
    """`--child train|count SAMPLE OUT KIND VOCAB`: run in a fresh process, print JSON."""
    what, sample, out, kind, vocab = argv[0], argv[1], argv[2], argv[3], int(argv[4])
    t0, c0 = time.perf_counter(), time.process_time()
    if what == "train":
        from winnow.tokenizer.train import train_bpe

        tok = train_bpe(_stream(sample), vocab_size=vocab, pre_tokenization=kind)
        tok.save(out)
        res = {"learned": tok.get_vocab_size(with_added_tokens=False)}
    else:
        from tokenizers import Tokenizer, models, trainers

        from winnow.tokenizer.pretokenize import deepseek_pre_tokenizer, plain_pre_tokenizer

        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = deepseek_pre_tokenizer() if kind == "deepseek" else plain_pre_tokenizer()
        tok.train_from_iterator(_stream(sample), trainers.WordLevelTrainer(vocab_size=2**31 - 1, min_frequency=0,
                                                                           show_progress=False, special_tokens=[]))
        res = {"unique_pretokens": tok.get_vocab_size()}
    res.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
    print(json.dumps(res))
    return 0


def start_child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def finish_child(proc: subprocess.Popen) -> dict:
    """Wait for a child; its JSON plus its own peak RSS (GiB) from wait4."""
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {proc.args[3:5]} failed with exit code {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_gib"] = usage.ru_maxrss / 2**20
    return res


def run_child(*args: str) -> dict:
    return finish_child(start_child(*args))


# --- fits -----------------------------------------------------------------------------------------
def fit_power(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """y = a·x^b by least squares in log-log; returns (a, b)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    b = sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sum((x - mx) ** 2 for x in lx)
    return math.exp(my - b * mx), b


def fit_linear(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """y = a + b·x by least squares; returns (a, b)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def fit_saturating(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """y = y_inf - c·x^(-alpha): bytes/token rises with the sample but saturates at a fixed
    vocabulary. Grid over alpha, least squares for (y_inf, c); returns (y_inf, c, alpha)."""
    best = None
    for i in range(1, 400):
        alpha = i / 200
        zs = [x ** -alpha for x in xs]
        a, b = fit_linear(zs, ys)
        sse = sum((a + b * z - y) ** 2 for z, y in zip(zs, ys))
        if b <= 0 and (best is None or sse < best[0]):
            best = (sse, a, -b, alpha)
    if best is None:  # not rising with the sample: flat at the mean
        return sum(ys) / len(ys), 0.0, 1.0
    return best[1], best[2], best[3]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[5, 10, 20, 40], help="sample sizes in MB")
    ap.add_argument("--vocab-size", type=int, default=102_400)
    ap.add_argument("--heldout-mb", type=float, default=2.0, help="held-out MB per language evaluated")
    ap.add_argument("--json", default=None, help="write every figure here")
    ap.add_argument("--plot", default=None, help="write the study's plot here (PNG, matplotlib)")
    ap.add_argument("--workdir", default=None, help="where samples and trained tokenizers go (default: a temp dir)")
    ap.add_argument("--resume", action="store_true", help="keep the sizes already in --json, run only the others")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    sys.path.insert(0, str(REPO))
    from winnow.tokenizer.evaluate import score

    t0 = time.perf_counter()
    pool, held = load_corpus()
    held = cap_heldout(held, args.heldout_mb)
    pool_mb = sum(len(t.encode("utf-8")) for _, _, t in pool) / 1e6
    print(f"corpus: {len(pool):,} training documents ({pool_mb:.0f} MB), held-out per language: "
          + ", ".join(f"{k} {sum(len(t.encode()) for t in v) / 1e6:.1f} MB" for k, v in held.items())
          + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    anchor = Tokenizer.from_file(str(ANCHOR))
    anchor_bpt = {lang: score("deepseek", anchor, lang, texts).bytes_per_token for lang, texts in held.items()}

    work = Path(args.workdir or tempfile.mkdtemp(prefix="winnow-tok-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if args.resume and args.json and Path(args.json).exists():
        rows = [r for r in json.loads(Path(args.json).read_text(encoding="utf-8"))["sizes"]]
        print(f"resumed: sizes {[r['size_mb'] for r in rows]} MB from {args.json}")

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps({"sizes": rows, "anchor_bytes_per_token": anchor_bpt, "fits": fits,
                                                   "vocab_size": args.vocab_size, "heldout_mb": args.heldout_mb},
                                                  indent=2) + "\n", encoding="utf-8")

    fits: dict = {}
    for size in sorted(args.sizes):
        if any(r["size_mb"] == size for r in rows):
            continue
        sample = work / f"sample-{size:g}mb.jsonl"
        per_lang = write_sample(pool, size, sample)
        row: dict = {"size_mb": size, "sample_bytes": sum(per_lang.values()),
                     "sample_share": {k: v / sum(per_lang.values()) for k, v in sorted(per_lang.items())}}
        # ours alone (its time and memory are the figures that matter), then plain and the
        # pre-token count side by side
        row["deepseek"] = run_child("train", str(sample), str(work / f"deepseek-{size:g}mb.json"), "deepseek",
                                    str(args.vocab_size))
        plain = start_child("train", str(sample), str(work / f"plain-{size:g}mb.json"), "plain", str(args.vocab_size))
        count = start_child("count", str(sample), "-", "deepseek", "0")
        row["plain"] = finish_child(plain)
        row["unique_pretokens"] = finish_child(count)["unique_pretokens"]
        for kind in ("deepseek", "plain"):
            tok = Tokenizer.from_file(str(work / f"{kind}-{size:g}mb.json"))
            row[kind]["bytes_per_token"] = {lang: score(kind, tok, lang, texts).bytes_per_token for lang, texts in held.items()}
        rows.append(row)
        rows.sort(key=lambda r: r["size_mb"])
        save()
        d, p = row["deepseek"], row["plain"]
        print(f"{size:>6g} MB: ours {d['wall_s']:6.1f} s wall {d['cpu_s']:6.1f} s cpu  peak RSS {d['peak_rss_gib']:.2f} GiB  "
              f"learned {d['learned']:,}  unique pre-tokens {row['unique_pretokens']:,}  | plain {p['wall_s']:.1f} s "
              f"{p['peak_rss_gib']:.2f} GiB", flush=True)
        sample.unlink()

    langs = list(held)
    print("\nheld-out bytes/token (ours / plain / DeepSeek; ratio ours÷DeepSeek, ours÷plain)")
    print(f"{'MB':>6} " + " ".join(f"{lang:>24}" for lang in langs))
    for row in rows:
        cells = []
        for lang in langs:
            o, p, a = row["deepseek"]["bytes_per_token"][lang], row["plain"]["bytes_per_token"][lang], anchor_bpt[lang]
            cells.append(f"{o:.2f}/{p:.2f}/{a:.2f} {o / a:.3f},{o / p:.3f}")
        print(f"{row['size_mb']:>6g} " + " ".join(f"{c:>24}" for c in cells))

    sizes_b = [r["sample_bytes"] for r in rows]
    if len(rows) >= 3:
        k, beta = fit_power(sizes_b, [r["unique_pretokens"] for r in rows])
        u_24 = k * TARGET_BYTES ** beta
        # the trainer holds every unique pre-token and, per pair, the words containing it: RSS is
        # modelled as a fixed part plus a part proportional to the unique pre-tokens
        rss_a, rss_b = fit_linear([r["unique_pretokens"] for r in rows], [r["deepseek"]["peak_rss_gib"] for r in rows])
        rss_24 = rss_a + rss_b * u_24
        u_fit = max(0.0, (MACHINE_GIB - HEADROOM_GIB - rss_a) / rss_b) if rss_b > 0 else float("inf")
        fit_bytes = (u_fit / k) ** (1 / beta) if u_fit < float("inf") else float("inf")
        c, gamma = fit_power(sizes_b, [r["deepseek"]["peak_rss_gib"] for r in rows])
        trend = {}
        for lang in langs:
            y_inf, cc, alpha = fit_saturating(sizes_b, [r["deepseek"]["bytes_per_token"][lang] for r in rows])
            at = lambda s_: y_inf - cc * s_ ** -alpha  # noqa: E731
            trend[lang] = {"y_inf": y_inf, "c": cc, "alpha": alpha, "at_fitting": at(min(fit_bytes, TARGET_BYTES)),
                           "at_24gb": at(TARGET_BYTES), "at_largest": at(sizes_b[-1])}
        fits = {"heaps_K": k, "heaps_beta": beta, "unique_pretokens_24gb": u_24,
                "rss_a_gib": rss_a, "rss_b_gib_per_pretoken": rss_b, "projected_rss_gib_24gb": rss_24,
                "rss_power_c": c, "rss_power_gamma": gamma, "rss_power_24gb": c * TARGET_BYTES ** gamma,
                "largest_sample_bytes_fitting": fit_bytes, "bytes_per_token_trend": trend}
        print(f"\nHeaps: unique pre-tokens = {k:.3g}·S^{beta:.3f} -> {u_24:.3g} at 24 GB")
        print(f"peak RSS = {rss_a:.3f} GiB + {rss_b * 1e6:.3f} GiB per million unique pre-tokens -> {rss_24:.1f} GiB at 24 GB "
              f"(power law in S instead: {fits['rss_power_24gb']:.1f} GiB); {MACHINE_GIB:g} GiB (-{HEADROOM_GIB:g}) holds "
              f"{u_fit:.3g} pre-tokens = a sample of {fit_bytes / 1e9:.2f} GB")
        for lang, t in trend.items():
            print(f"  {lang:>5}: bytes/token trend {t['at_fitting']:.3f} at {min(fit_bytes, TARGET_BYTES) / 1e9:.2f} GB vs "
                  f"{t['at_24gb']:.3f} at 24 GB ({t['at_fitting'] / t['at_24gb']:.3f}x), {t['at_largest']:.3f} at the largest size run")

    last = rows[-1]
    vs_ds = min(last["deepseek"]["bytes_per_token"][lang] / anchor_bpt[lang] for lang in KEY_LANGS if lang in anchor_bpt)
    vs_plain = min(last["deepseek"]["bytes_per_token"][lang] / last["plain"]["bytes_per_token"][lang]
                   for lang in KEY_LANGS if lang in anchor_bpt)
    s_per_100mb = last["deepseek"]["wall_s"] * 100e6 / last["sample_bytes"]
    save()
    if args.plot and fits:
        plot(rows, anchor_bpt, fits, langs, Path(args.plot))
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    print(f"RESULT bytes_per_token_vs_deepseek={vs_ds:.3f} bytes_per_token_vs_plain={vs_plain:.3f} "
          f"projected_rss_gb_24gb={fits.get('projected_rss_gib_24gb', float('nan')):.1f} train_s_per_100mb={s_per_100mb:.1f}")
    return 0


def plot(rows: list[dict], anchor_bpt: dict, fits: dict, langs: list[str], path: Path) -> None:
    """Three panels: unique pre-tokens and peak RSS against sample size (with the power-law fits
    out to 24 GB), held-out bytes/token per language for ours, plain and DeepSeek."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["sample_bytes"] for r in rows]
    grid = [min(xs) * (TARGET_BYTES / min(xs)) ** (i / 60) for i in range(61)]
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.8))
    ax[0].loglog([x / 1e6 for x in xs], [r["unique_pretokens"] for r in rows], "o", label="measured")
    ax[0].loglog([g / 1e6 for g in grid], [fits["heaps_K"] * g ** fits["heaps_beta"] for g in grid], "-",
                 label=f"Heaps fit, β={fits['heaps_beta']:.2f}")
    ax[0].set(xlabel="sample (MB)", ylabel="unique pre-tokens", title="Unique pre-tokens")
    ax[1].loglog([x / 1e6 for x in xs], [r["deepseek"]["peak_rss_gib"] for r in rows], "o", label="measured")
    ax[1].loglog([g / 1e6 for g in grid], [fits["rss_a_gib"] + fits["rss_b_gib_per_pretoken"] * fits["heaps_K"]
                                           * g ** fits["heaps_beta"] for g in grid], "-",
                 label="fit: a + b·unique pre-tokens")
    ax[1].axhline(MACHINE_GIB, color="red", ls="--", label="24 GiB")
    ax[1].axvline(TARGET_BYTES / 1e6, color="gray", ls=":", label="24 GB sample")
    ax[1].set(xlabel="sample (MB)", ylabel="trainer peak RSS (GiB)", title="Training memory")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, lang in enumerate(langs):
        c = colors[i % len(colors)]
        ax[2].semilogx([x / 1e6 for x in xs], [r["deepseek"]["bytes_per_token"][lang] for r in rows], "o-", color=c, label=f"{lang} ours")
        ax[2].semilogx([x / 1e6 for x in xs], [r["plain"]["bytes_per_token"][lang] for r in rows], "x:", color=c)
        ax[2].axhline(anchor_bpt[lang], color=c, ls="--", lw=0.8)
    ax[2].set(xlabel="sample (MB)", ylabel="held-out bytes/token",
              title="Compression (o ours, x plain, -- DeepSeek)")
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
    ax[0].legend(fontsize=8)
    ax[1].legend(fontsize=8)
    ax[2].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
