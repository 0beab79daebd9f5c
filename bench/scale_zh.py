"""A 100,000-document Chinese corpus built with `dense.encoder = auto` on a cold cache: each stage's time, against E5's.

The corpus is made here, seeded, from the shared Chinese sets (none holds 100,000 documents): sentences of DRCD's
paragraphs, CSL's abstracts, d2l-zh's prose and QBQTC's titles are drawn at random into documents whose lengths
follow DRCD's paragraphs, so every document is new text and its passages look like a Chinese corpus's. The build
runs against an empty cache folder, so nothing is reused: `auto` times E5 on the corpus, finds it over the
budget, distils and pre-trains the static encoder (the teacher embeds its vocabulary entries and the pre-training
targets within `dense.time_budget_s`), then embeds every passage with it and builds the ANN index.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import markdown_table, write_section  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.index.build import build_index  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
OUT = ROOT / "bench" / "out" / "scale_zh"
SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|\n+")
MIN_SENTENCE = 8  # characters: shorter pieces are headings, list markers and stray punctuation
FENCE = re.compile(r"```.*?```", re.S)
CJK = re.compile(r"[\u4e00-\u9fff]")


def corpus_texts(name: str) -> list[str]:
    with open(DATASETS / name / "corpus.jsonl", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle]


def markdown_prose(folder: Path) -> list[str]:
    """d2l-zh's chapters without code blocks, math and markup lines."""
    texts = []
    for path in sorted(folder.rglob("*.md")):
        text = FENCE.sub("", path.read_text(encoding="utf-8", errors="replace"))
        texts += [line for line in text.splitlines() if line and not line.startswith(("#", ":", "$", "|", "!", "<"))]
    return texts


def sentence_pool() -> list[str]:
    sources = corpus_texts("drcd-zh-tw") + corpus_texts("csl-title") + corpus_texts("qbqtc")
    sources += markdown_prose(DATASETS / "d2l-zh")
    pool = {s.strip() for text in sources for s in SENTENCE_END.split(text)}
    # d2l-zh keeps some English and LaTeX: a sentence is kept when most of it is Chinese.
    return sorted(s for s in pool if len(s) >= MIN_SENTENCE and len(CJK.findall(s)) * 2 >= len(s))


def synthesize(count: int, out: Path, seed: int = 0) -> Path:
    """`count` documents of sentences drawn at random, each as long as a DRCD paragraph drawn at random."""
    path = out / "corpus.jsonl"
    if path.exists() and sum(1 for _ in open(path, encoding="utf-8")) == count:
        return out
    rng = np.random.default_rng(seed)
    pool = sentence_pool()
    lengths = np.array([len(t) for t in corpus_texts("drcd-zh-tw")])
    out.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for number in range(count):
            goal, body = int(rng.choice(lengths)), []
            while sum(map(len, body)) < goal:
                body.append(pool[int(rng.integers(len(pool)))])
            record = {"_id": f"zh{number:06d}", "title": body[0][:30], "text": "".join(body[1:] or body)}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{count:,} documents from {len(pool):,} sentences -> {path}", flush=True)
    return out


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(count: int, seed: int) -> dict:
    corpus = synthesize(count, OUT / f"corpus-{count}", seed)
    cold = OUT / "cold-cache"
    index = OUT / "index"
    for folder in (cold, index):
        shutil.rmtree(folder, ignore_errors=True)
    settings = Settings(cache_dir=cold)
    settings = settings.model_copy(update={"dense": settings.dense.model_copy(update={"encoder": "auto"})})
    load_before = os.getloadavg()[0]
    started, cpu = time.perf_counter(), cpu_seconds()
    manifest, _ = build_index([corpus], index, settings)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    stages, dense = manifest.stages, manifest.dense or {}
    choice = dense.get("choice") or {}
    static = json.loads(next((index / "encoders" / "static").glob("*/static.json")).read_text())
    # Embedding is the encoder stage (which makes the static model) plus the static model's pass over the corpus.
    embedding_s = stages.get("encoder", 0.0) + dense.get("embed_s", 0.0)
    row = {
        "documents": f"{manifest.doc_count:,}",
        "passages": f"{choice.get('passages', 0):,}",
        "auto chose": dense.get("model_id", "?").split("@")[0],
        "E5, at its speed here": f"{choice.get('passages_per_s')}/s: {choice.get('expected_s', 0) / 3600:.1f} h",
        "make the static model (s)": f"{static.get('seconds', 0):.0f}",
        "entries / targets by E5": f"{static.get('teacher_entries') or 0:,} / {(static.get('fit') or {}).get('passages', 0):,}",
        "embed the corpus (s)": f"{dense.get('embed_s', 0):.0f}",
        "embedding in all (s)": f"{embedding_s:.0f}",
        "ANN build (s)": f"{dense.get('ann_s', 0):.0f}",
        "analysis + index (s)": f"{stages.get('analyze+index', 0):.0f}",
        "whole build (s)": f"{wall:.0f}",
        "build CPU s": f"{cpu:.0f}",
        "load before": f"{load_before:.1f}",
    }
    print(json.dumps({"stages": stages, "choice": choice, "fit": static.get("fit")}, ensure_ascii=False), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    row = run(args.documents, args.seed)
    print(row, flush=True)
    body = (f"A {args.documents:,}-document Chinese corpus synthesized from the shared sets (seed {args.seed}; "
            "`bench/scale_zh.py` says how), built with `dense.encoder = auto` against an empty cache. The goal: "
            "embedding (making the static model, then embedding the corpus with it) in under 10 minutes on 2 "
            "cores. The ANN build and the lexical index come on top.\n\n" + markdown_table([row]))
    write_section("scale-zh", f"python bench/scale_zh.py --documents {args.documents}", body)


if __name__ == "__main__":
    main()
