"""Did-you-mean on the shared datasets' real queries: how often it speaks when nothing is wrong, and how often it
undoes a typo injected into the same queries.

* False positives: the share of real queries (a seeded sample of each dataset's queries, all splits) that get
  any suggestion. Goal ≤ 1%.
* Corrections: one typo is injected into each query (seeded), and the share whose first suggestion restores the
  original is counted (compared after NFKC, case folding and Traditional → Simplified). Goal ≥ 70%.
  - English: one word of at least 5 letters that the index knows gets one character edit, drawn uniformly from
    deletion, insertion, substitution (a random letter) and transposition of two neighbours.
  - Chinese: one character of a word the index knows (2–4 characters) is replaced by another character of the
    corpus that sounds the same (homophone, toneless pinyin) or similar (z/zh, c/ch, s/sh, n/l, an/ang,
    en/eng, in/ing), half the time each, drawn among the 20 commonest such characters.
  A typo that turns the word into another word the index knows (a real-word error) is skipped and counted:
  a dictionary cannot tell it from a real query, and the corrector, by design, only touches unknown words.
Each dataset is searched through its own BM25 index (the evaluation cache), as a user's index would be.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.report import markdown_table, write_section  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.eval.beir import BeirDataset  # noqa: E402
from pipeline.experiment.runs import cached_index, settings_for  # noqa: E402
from pipeline.searcher import Searcher  # noqa: E402
from pipeline.serving.suggest import fuzzy_syllable, has_cjk, pinyin_syllables, suggester_for  # noqa: E402

DATASETS = {"scifact": "en", "cranfield": "en", "drcd-zh-tw": "zh", "csl-title": "zh", "qbqtc": "zh"}
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def english_typo(text: str, known, analyzer, rng: np.random.Generator) -> str | None:
    words = [(i, w) for i, w in enumerate(text.split(" ")) if len(w) >= 5 and w.isalpha() and w.isascii()
             and (terms := analyzer.terms(w)) and terms[0] in known]
    if not words:
        return None
    i, word = words[rng.integers(len(words))]
    p = int(rng.integers(len(word)))
    kind = rng.integers(4)
    if kind == 0:
        typo = word[:p] + word[p + 1:]
    elif kind == 1:
        typo = word[:p] + LETTERS[rng.integers(26)] + word[p:]
    elif kind == 2:
        typo = word[:p] + rng.choice([c for c in LETTERS if c != word[p].lower()]) + word[p + 1:]
    else:
        p = min(p, len(word) - 2)
        typo = word[:p] + word[p + 1] + word[p] + word[p + 2:]
    if typo.lower() == word.lower():
        return None
    parts = text.split(" ")
    parts[i] = typo
    return " ".join(parts)


def sound_table(vocabulary: list[str], df: np.ndarray) -> tuple[dict, dict]:
    """Corpus characters by their toneless pinyin and by its similar-sounding key, commonest first."""
    weight: Counter = Counter()
    for term_id, term in enumerate(vocabulary):
        if has_cjk(term):
            for char in term:
                weight[char] += int(df[term_id])
    exact, fuzzy = defaultdict(list), defaultdict(list)
    for char, _ in weight.most_common():
        syllables = pinyin_syllables(char)
        if len(syllables) == 1:
            exact[syllables[0]].append(char)
            fuzzy[fuzzy_syllable(syllables[0])].append(char)
    return exact, fuzzy


def chinese_typo(text: str, known, analyzer, sounds: tuple[dict, dict], rng: np.random.Generator) -> str | None:
    analyzed = analyzer.analyze(text)
    words = [(t, s, e) for t, s, e in zip(analyzed.terms, analyzed.starts, analyzed.ends)
             if 2 <= len(t) <= 4 and has_cjk(t) and all(has_cjk(c) for c in t) and t in known and e - s == len(t)]
    if not words:
        return None
    term, start, _ = words[rng.integers(len(words))]
    p = int(rng.integers(len(term)))
    syllables = pinyin_syllables(term[p])
    if len(syllables) != 1:
        return None
    exact, fuzzy = sounds
    if rng.random() < 0.5:
        options = [c for c in exact.get(syllables[0], []) if c != term[p]]
    else:
        options = [c for c in fuzzy.get(fuzzy_syllable(syllables[0]), [])
                   if pinyin_syllables(c)[0] != syllables[0]]
    options = options[:20]
    if not options:
        return None
    char = options[rng.integers(len(options))]
    return text[: start + p] + char + text[start + p + 1:]


def measure(name: str, language: str, sample: int, seed: int) -> dict:
    settings = settings_for("bm25", Settings())
    dataset = BeirDataset.load(Path(settings.datasets_dir or ROOT.parent / "shared" / "datasets") / name)
    reader = Searcher.open(cached_index(dataset, settings), settings).reader
    started = time.perf_counter()
    suggester = suggester_for(reader)
    built = time.perf_counter() - started
    analyzer, known = reader.analyzer, set(reader.vocabulary.terms)
    rng = np.random.default_rng(seed)
    texts = list(dataset.queries.values())
    texts = [texts[i] for i in sorted(rng.choice(len(texts), min(sample, len(texts)), replace=False))]
    sounds = sound_table(reader.vocabulary.terms, reader.postings("text").doc_frequencies()) \
        if language == "zh" else None

    def same(a: str, b: str) -> bool:
        return " ".join(analyzer.normalize(unicodedata.normalize("NFKC", a)).split()) == \
            " ".join(analyzer.normalize(unicodedata.normalize("NFKC", b)).split())

    started = time.perf_counter()
    spoke, typos, restored, answered, real_word = 0, 0, 0, 0, 0
    false_examples = []
    for text in texts:
        suggestions = suggester.did_you_mean(text)
        if suggestions:
            spoke += 1
            false_examples.append(f"{text[:60]} → {suggestions[0][:60]}")
        typo = english_typo(text, known, analyzer, rng) if language == "en" else \
            chinese_typo(text, known, analyzer, sounds, rng)
        if typo is None:
            continue
        if suggester.is_known(typo):
            real_word += 1
            continue
        typos += 1
        corrected = suggester.did_you_mean(typo)
        answered += bool(corrected)
        restored += bool(corrected) and same(corrected[0], text)
    elapsed = time.perf_counter() - started
    calls = len(texts) + typos
    return {
        "dataset": name, "queries": len(texts),
        "false positives": f"{spoke} ({spoke / len(texts):.1%})",
        "typo queries": typos, "real-word typos skipped": real_word,
        "restored": f"{restored} ({restored / max(typos, 1):.1%})",
        "any suggestion": f"{answered / max(typos, 1):.1%}",
        "ms / call": f"{1000 * elapsed / max(calls, 1):.1f}", "dictionary build s": f"{built:.1f}",
        "_examples": false_examples[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--sample", type=int, default=500, help="queries per dataset")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    rows, examples = [], []
    for name in args.datasets:
        row = measure(name, DATASETS[name], args.sample, args.seed)
        examples += [f"* {name}: {example}" for example in row.pop("_examples")]
        print(row, flush=True)
        rows.append(row)
    print("\n".join(examples))
    if not args.no_write:
        body = (f"{__doc__.strip()}\n\nSample {args.sample} queries per dataset, seed {args.seed}.\n\n"
                f"{markdown_table(rows)}\n\nThe real queries that got a suggestion (up to 5 per dataset; some are "
                f"real typos of the datasets' own queries):\n\n" + "\n".join(examples))
        write_section("Did you mean", "make bench-suggest", body)


if __name__ == "__main__":
    main()
