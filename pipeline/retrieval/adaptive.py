"""Adaptive fusion: branch weights chosen per query by a small rule tree over what each branch found."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from weakref import WeakKeyDictionary

import numpy as np
import pyarrow.compute as pc

from ..config import AdaptiveFusionConfig, FusionConfig
from ..io import timestamped_id
from ..search.plan import QueryPlan
from ..search.reader import IndexReader
from ..text.analysis import detect_language
from .branches import BranchResult
from .weights import FUSION_DIR, FusionWeights, published_artifact, save_artifact

ADAPTIVE_DIR = "adaptive"  # INDEX/fusion/adaptive/ID.json, beside the tuned weights of each method
GAP_RANK = 10  # score gaps and agreement look at each branch's top 10, the depth nDCG@10 sees


@dataclass(frozen=True)
class QuerySignals:
    """What the query and the branches' lists say about which branch to trust, before any fusion."""

    language_share: float  # share of the corpus's documents written in the query's language
    terms_matched: float  # share of the query's distinct words that occur in the corpus
    lexical_found: float  # documents the BM25 branch found, as a share of the branch depth
    lexical_gap: float  # 1 − BM25's 10th score / its top score: how far its best stand out
    dense_top: float  # the dense branch's best cosine (0 without one)
    dense_gap: float  # its best cosine minus its 10th
    agreement: float  # share of BM25's top 10 that is also in the dense top 10

    def values(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in SIGNALS], dtype=np.float64)


SIGNALS = tuple(f.name for f in fields(QuerySignals))
SIGNAL_WORDS = {
    "language_share": "share of the corpus in the query's language",
    "terms_matched": "share of the query's words found in the corpus",
    "lexical_found": "BM25 candidates (share of the depth)",
    "lexical_gap": "how far BM25's best stand out",
    "dense_top": "best dense similarity",
    "dense_gap": "how far the best dense match stands out",
    "agreement": "overlap of the BM25 and dense top 10",
}

# Each arm scales the lexical branches (every branch but dense) and the dense branch of the base weights.
ARMS: tuple[tuple[str, float, float], ...] = (
    ("meaning only", 0.0, 1.0),
    ("mostly meaning", 0.25, 1.0),
    ("leaning to meaning", 0.5, 1.0),
    ("balanced", 1.0, 1.0),
    ("leaning to words", 1.0, 0.5),
    ("mostly words", 1.0, 0.25),
    ("words only", 1.0, 0.0),
)
BASE_ARM = 3  # the base weights unchanged: what the tree answers until a question earns its place

_LANGUAGE_MIX: WeakKeyDictionary = WeakKeyDictionary()


def language_mix(reader: IndexReader) -> dict[str, float]:
    """Share of the documents per detected language, computed once per reader."""
    if reader not in _LANGUAGE_MIX:
        counts = pc.value_counts(reader.metadata.lang).to_pylist()
        total = sum(c["counts"] for c in counts) or 1
        _LANGUAGE_MIX[reader] = {c["values"]: c["counts"] / total for c in counts if c["values"] is not None}
    return _LANGUAGE_MIX[reader]


def _gap(scores: np.ndarray) -> float:
    return float(scores[0] - scores[min(GAP_RANK, len(scores)) - 1]) if len(scores) else 0.0


def query_signals(reader: IndexReader, plan: QueryPlan, branches: dict[str, BranchResult]) -> QuerySignals:
    """The signals of one query from its plan and its branches' lists: no extra index work."""
    return signals_of(plan, branches, language_mix(reader), reader.settings.fusion.depth)


def signals_of(plan: QueryPlan, branches: dict[str, BranchResult], languages: dict[str, float],
               depth: int) -> QuerySignals:
    """`query_signals` from the corpus's language mix and the branch depth (a cluster's, summed over shards)."""
    language = detect_language(plan.text)
    language_share = 1.0 if language == "und" else languages.get(language, 0.0)
    words = set(plan.terms)
    terms_matched = len(set(plan.distinct_ids)) / len(words) if words else 0.0
    empty = BranchResult("none", np.zeros(0, np.int64), np.zeros(0))
    lexical, dense = branches.get("bm25", empty), branches.get("dense", empty)
    lexical_scores = np.asarray(lexical.scores, dtype=np.float64)
    dense_scores = np.asarray(dense.scores, dtype=np.float64)
    top_lexical = set(lexical.doc_ords[:GAP_RANK].tolist())
    return QuerySignals(
        language_share=language_share,
        terms_matched=terms_matched,
        lexical_found=len(lexical_scores) / depth,
        lexical_gap=_gap(lexical_scores) / lexical_scores[0] if len(lexical_scores) and lexical_scores[0] > 0 else 0.0,
        dense_top=float(dense_scores[0]) if len(dense_scores) else 0.0,
        dense_gap=_gap(dense_scores),
        agreement=len(top_lexical & set(dense.doc_ords[:GAP_RANK].tolist())) / GAP_RANK if top_lexical else 0.0,
    )


def nothing_to_say(signals: QuerySignals, has_dense: bool) -> str | None:
    """A plain sentence for the user when the lexical branch has nothing to go on, else None."""
    if signals.terms_matched > 0:
        return None
    if has_dense:
        return "No words of this query occur in the corpus; results come from meaning."
    return "No words of this query occur in the corpus."


def arm_weights(base: FusionWeights, arm: int, model_id: str = "untrained") -> FusionWeights:
    """The base weights with their lexical and dense parts scaled as the arm says."""
    name, lexical, dense = ARMS[arm]
    scaled = {b: w * (dense if b == "dense" else lexical) for b, w in base.weights.items()}
    return FusionWeights(base.method, scaled, f"{model_id}/{name}")


@dataclass(frozen=True)
class Rule:
    """A node of the rule tree: a leaf answers with an arm; an inner node asks whether a signal is at most a
    threshold and hands the query to `at_most` or `above`."""

    arm: int  # the answer for the train queries that reached this node
    queries: int  # how many train queries reached it
    signal: str | None = None
    threshold: float = 0.0
    at_most: Rule | None = None
    above: Rule | None = None

    @classmethod
    def from_json(cls, data: dict) -> Rule:
        children = {k: cls.from_json(data[k]) if data.get(k) else None for k in ("at_most", "above")}
        return cls(**{**data, **children})

    def walk(self, values: dict[str, float]) -> tuple[int, list[str]]:
        """The arm for these signal values and, in words, the answers that led to it."""
        if self.signal is None:
            return self.arm, []
        low = values[self.signal] <= self.threshold
        arm, reasons = (self.at_most if low else self.above).walk(values)
        reason = f"{SIGNAL_WORDS[self.signal]} {'≤' if low else '>'} {self.threshold:.3g}"
        return arm, [reason, *reasons]


@dataclass(frozen=True)
class FusionChoice:
    """The weights one query was fused with, and why."""

    arm: str
    weights: FusionWeights
    reasons: list[str]
    signals: QuerySignals


@dataclass(frozen=True)
class AdaptiveFusion:
    """Base weights and the rule tree that scales their lexical and dense parts per query; a versioned artifact."""

    base: FusionWeights
    rule: Rule
    model_id: str = "untrained"
    trained_on: str = ""
    train_ndcg_at_10: float | None = None  # the tree's, on its train queries
    base_train_ndcg_at_10: float | None = None  # the base weights', on the same queries
    created_at: str = ""

    @classmethod
    def trained(cls, base: FusionWeights, rule: Rule, trained_on: str, train_ndcg: float,
                base_ndcg: float) -> AdaptiveFusion:
        return cls(base, rule, timestamped_id(), trained_on, train_ndcg, base_ndcg, datetime.now(UTC).isoformat())

    def choose(self, signals: QuerySignals) -> FusionChoice:
        arm, reasons = self.rule.walk(asdict(signals))
        return FusionChoice(ARMS[arm][0], arm_weights(self.base, arm, self.model_id), reasons, signals)

    def save(self, index_root: Path, publish: bool = True) -> Path:
        """Write INDEX/fusion/adaptive/ID.json and, by default, point adaptive/CURRENT at it."""
        return save_artifact(Path(index_root) / FUSION_DIR / ADAPTIVE_DIR, self.model_id, asdict(self), publish)

    @classmethod
    def published(cls, index_root: Path) -> AdaptiveFusion | None:
        data = published_artifact(Path(index_root) / FUSION_DIR / ADAPTIVE_DIR)
        if data is None:
            return None
        return cls(**{**data, "base": FusionWeights(**data["base"]), "rule": Rule.from_json(data["rule"])})


def served_adaptive(index_root: Path, fusion: FusionConfig) -> AdaptiveFusion | None:
    """The published adaptive model where it is enabled and fuses with the configured method, else None."""
    if not fusion.adaptive.enabled:
        return None
    model = AdaptiveFusion.published(index_root)
    return model if model is not None and model.base.method == fusion.method else None


def fit_rule(signals: np.ndarray, gains: np.ndarray, config: AdaptiveFusionConfig) -> Rule:
    """The rule tree that maximises the summed gain (queries × arms, e.g. nDCG@10 of each arm) over the train
    queries, given their signals (queries × SIGNALS).

    Every answer and every question must earn its place over what it replaces (the base arm for a leaf, the
    parent's answer for a split): `min_gain` of mean gain over all train queries, and more queries helped than
    hurt by `min_net_wins` and by `min_sign_z` standard deviations of a sign test (wins − losses over
    √(wins + losses)), so that neither one lucky query nor the noise of many queries that change a little can
    move the weights of every query like them.
    """
    needed = config.min_gain * len(gains)

    def earns(new: np.ndarray, old: np.ndarray) -> bool:
        diff = new - old
        wins, losses = int((diff > 1e-9).sum()), int((diff < -1e-9).sum())
        return diff.sum() >= needed and wins - losses >= max(config.min_net_wins,
                                                             config.min_sign_z * np.sqrt(wins + losses))

    def leaf(rows: np.ndarray) -> int:
        best = int(np.argmax(gains[rows].sum(axis=0)))
        return best if earns(gains[rows, best], gains[rows, BASE_ARM]) else BASE_ARM

    def grow(rows: np.ndarray, depth: int) -> Rule:
        arm = leaf(rows)
        best: tuple[float, str, float, np.ndarray, np.ndarray] | None = None
        if depth < config.max_depth and len(rows) >= 2 * config.min_leaf_queries:
            for s, name in enumerate(SIGNALS):
                values = signals[rows, s]
                distinct = np.unique(values)
                for threshold in (distinct[:-1] + distinct[1:]) / 2:
                    low, high = rows[values <= threshold], rows[values > threshold]
                    if min(len(low), len(high)) < config.min_leaf_queries:
                        continue
                    split = np.concatenate([gains[low, leaf(low)], gains[high, leaf(high)]])
                    better = best is None or split.sum() > best[0]
                    if better and earns(split, gains[np.concatenate([low, high]), arm]):
                        best = (split.sum(), name, float(threshold), low, high)
        if best is None:
            return Rule(arm, len(rows))
        _, name, threshold, low, high = best
        return Rule(arm, len(rows), name, threshold, grow(low, depth + 1), grow(high, depth + 1))

    return grow(np.arange(len(gains)), 0)
