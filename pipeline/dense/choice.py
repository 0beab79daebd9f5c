"""Which encoder embeds a corpus: the teacher when it fits the time budget, the static encoder beyond, and where that lives."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..config import Settings
from ..errors import InputError
from .cache import EmbeddingCache, embed_with_cache, text_hash
from .encoders import MINILM, Encoder, canonical_encoder_name, choose_encoder_name, load_encoder, resolve_device
from .passages import split_passages
from .static import (
    StaticCard,
    distill,
    fit_to_teacher,
    new_card,
    published_static,
    save_static,
    static_name,
    text_for_tokenizer,
    with_queries,
)
from .tuned import TUNED_MINILM, published_tuned

THROUGHPUT_SAMPLE = 16  # passages timed to measure a teacher's speed on this corpus
# Of a budget-bound static model's budget, the share kept for pre-training once the targets are embedded (10 epochs
# over 2,132 DRCD-like passages took about 45 s of a 600 s budget).
FIT_RESERVE = 0.1
STATIC_TIMING_SAMPLE = 2_000  # passages timed to foresee how long the static model takes over the whole corpus


@dataclass
class EncoderChoice:
    """What embeds a corpus and why; recorded in the dense manifest and shown on the Index page."""

    configured: str
    name: str  # the teacher's model id, or static-<teacher> before the artifact is known
    teacher: str
    reason: str
    passages: int = 0
    uncached: int = 0  # passages the teacher's embedding cache lacks
    passages_per_s: float | None = None
    expected_s: float | None = None
    budget_s: float | None = None

    @property
    def static(self) -> bool:
        return self.name == static_name(self.teacher)

    def record(self) -> dict:
        return asdict(self)


def corpus_passages(documents: pa.Table, settings: Settings) -> list[str]:
    rows = documents.select(["title", "body"]).to_pylist()
    return [
        p.text
        for doc_ord, row in enumerate(rows)
        for p in split_passages(doc_ord, row["title"] or "", row["body"] or "", settings.dense.passage_window,
                                settings.dense.passage_overlap)
    ]


def teacher_encoder(teacher: str, settings: Settings) -> Encoder:
    device = resolve_device(settings.dense.device)
    batch = settings.dense.gpu_batch_size if device == "cuda" else settings.dense.batch_size
    return load_encoder(teacher, batch, device)


_measured: dict[str, float] = {}


def throughput(teacher: Encoder, passages: Sequence[str], settings: Settings) -> float:
    """Passages/s of the teacher: configured, else timed once per process on a sample of this corpus's passages."""
    if teacher.model_id in settings.dense.throughput:
        return settings.dense.throughput[teacher.model_id]
    if teacher.model_id not in _measured:
        teacher.encode_passages(["warm-up"])  # the first call loads the model
        picks = np.random.default_rng(0).choice(len(passages), min(THROUGHPUT_SAMPLE, len(passages)), replace=False)
        started = time.perf_counter()
        teacher.encode_passages([passages[i] for i in picks])
        _measured[teacher.model_id] = len(picks) / max(time.perf_counter() - started, 1e-6)
    return _measured[teacher.model_id]


def by_budget(teacher: str, passages: int, uncached: int, passages_per_s: float, budget_s: float) -> EncoderChoice:
    """The teacher when embedding what the cache lacks takes no longer than the budget, the static encoder beyond."""
    expected = uncached / passages_per_s if uncached else 0.0
    fits = expected <= budget_s
    reason = (f"{uncached:,} of {passages:,} passages to embed at {passages_per_s:.1f}/s: about {expected:,.0f} s, "
              f"{'within' if fits else 'over'} the {budget_s:,.0f} s budget")
    return EncoderChoice("auto", teacher if fits else static_name(teacher), teacher, reason, passages, uncached,
                         round(passages_per_s, 2), round(expected, 1), budget_s)


def decide(documents: pa.Table, settings: Settings) -> EncoderChoice:
    """The encoder a build of `documents` uses under the configured `dense.encoder`, before any artifact is made."""
    configured = settings.dense.encoder
    teacher = choose_encoder_name(documents.column("lang").to_pylist())
    if configured == "static":
        return EncoderChoice(configured, static_name(teacher), teacher, "configured: static")
    if configured == "tuned":
        return EncoderChoice(configured, TUNED_MINILM, MINILM, "configured: tuned (sousuo tune-encoder)")
    if configured == "tuned-static":
        raise InputError("tuned-static is for sousuo eval only: tune an index's static encoder with sousuo "
                         "tune-encoder --encoder static, then build it with --encoder static")
    if configured != "auto":
        name = canonical_encoder_name(configured)
        return EncoderChoice(configured, name, name, "configured")
    passages = corpus_passages(documents, settings)
    model = teacher_encoder(teacher, settings)
    cached = EmbeddingCache(settings.cache_dir, model.model_id, model.dim).get([text_hash(p) for p in passages])
    missing = [p for p, vector in zip(passages, cached) if vector is None]
    rate = throughput(model, missing, settings) if missing else float("inf")
    return by_budget(teacher, len(passages), len(missing), rate, settings.dense.time_budget_s)


def static_encoder_folder(index_root: Path, choice: EncoderChoice, documents: pa.Table, settings: Settings) -> Path:
    """The index's published static model of the choice's teacher, distilled (and pre-trained) now if it has none.

    This is the flow step that makes the artifact: later builds and updates of the index reuse it, so the vectors
    in the embedding cache stay those of one model."""
    folder = published_static(index_root, choice.teacher)
    if folder is not None:
        if StaticCard.read(folder).queries != settings.dense.static_queries:
            return with_queries(index_root, folder, settings.dense.static_queries)
        return folder
    started = time.perf_counter()
    config = settings.dense
    teacher = teacher_encoder(choice.teacher, settings)
    passages = corpus_passages(documents, settings)
    vocabulary = config.static_vocabulary
    cache = EmbeddingCache(settings.cache_dir, teacher.model_id, teacher.dim)
    budgeted = chosen_for_speed(choice)
    entries_until = started + config.static_entries_share * config.time_budget_s if budgeted else None
    model, analyzer = distill(teacher, passages, vocabulary, config.static_vocab_size, config.static_teacher_entries,
                              resolve_device(config.device), cache, entries_until)
    embedded_entries = int(np.any(np.asarray(model.embedding), axis=1).sum())
    fit = None
    # The corpus-terms vocabulary reads analyzed text, as the encoder will at search time.
    tokenizable = text_for_tokenizer(analyzer)
    if config.static_fit_passages and config.static_fit_epochs and passages:
        fit_until = (started + config.time_budget_s - static_pass_seconds(model, tokenizable, passages)
                     if budgeted else None)
        targets_until = fit_until - FIT_RESERVE * config.time_budget_s if budgeted else None
        sample = fit_sample(passages, cache, config.static_fit_passages)
        targets, _ = embed_with_cache(teacher, sample, cache, deadline=targets_until)
        reached = np.flatnonzero(np.any(targets, axis=1))  # passages past the deadline stay zero
        if len(reached):
            model, fit = fit_to_teacher(model, [sample[i] for i in reached], targets[reached],
                                        epochs=config.static_fit_epochs, device=resolve_device(config.device),
                                        tokenizable=tokenizable, deadline=fit_until)
    card = new_card(choice.teacher, vocabulary, model, started, fit, analyzer, embedded_entries, config.static_queries)
    return save_static(index_root, model, card)


def chosen_for_speed(choice: EncoderChoice) -> bool:
    """Whether `auto` took the static encoder because the teacher is too slow for the budget: then the budget bounds
    the whole embedding of the build, the making of the static model included. A configured `static` has none."""
    rate = choice.passages_per_s
    return choice.configured == "auto" and choice.static and bool(rate) and rate != float("inf")


def static_pass_seconds(model, tokenizable, passages: Sequence[str]) -> float:
    """How long the static model will take to embed every passage, timed on a sample of them."""
    picks = np.random.default_rng(0).choice(len(passages), min(STATIC_TIMING_SAMPLE, len(passages)), replace=False)
    sample = [passages[i] for i in picks]
    started = time.perf_counter()
    model.encode(list(tokenizable(sample)))
    return (time.perf_counter() - started) * len(passages) / len(sample)


def fit_sample(passages: Sequence[str], cache: EmbeddingCache, size: int) -> list[str]:
    """Up to `size` distinct passages in a random order, those whose teacher vectors are cached first."""
    unique = list(dict.fromkeys(passages))
    order = np.random.default_rng(0).permutation(len(unique))
    cached = cache.get([text_hash(unique[i]) for i in order])
    order = [i for i, v in zip(order, cached) if v is not None] + [i for i, v in zip(order, cached) if v is None]
    return [unique[i] for i in order[:size]]


def prepare_encoder(index_root: Path, documents: pa.Table, settings: Settings) -> tuple[str, dict]:
    """(encoder name or static model folder, the choice's record) for a build of `documents` into `index_root`."""
    choice = decide(documents, settings)
    if choice.name == TUNED_MINILM:
        folder = published_tuned(index_root)
        if folder is None:
            raise InputError(f"index {index_root} has no tuned encoder: run sousuo tune-encoder --index "
                             f"{index_root} --dataset BEIR_DIR first")
        return str(folder), choice.record()
    if not choice.static:
        return choice.name, choice.record()
    folder = static_encoder_folder(index_root, choice, documents, settings)
    return str(folder), choice.record()
