"""The learned ranker: a LightGBM LambdaMART model and its card, versioned under INDEX/rankers with a CURRENT pointer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..config import RankerConfig
from ..errors import RankerMismatch
from ..eval.metrics import score_run
from ..io import CURRENT_POINTER, read_pointer, timestamped_id, write_pointer
from .features import CHANNEL_FEATURES, FEATURES

RANKERS_DIR = "rankers"
FUSED_SCORE = FEATURES.index("fused_score")


@dataclass
class TrainingSet:
    """Feature rows of many queries; group[i] rows belong to the i-th query."""

    features: np.ndarray
    labels: np.ndarray
    groups: list[int]
    query_ids: list[str]
    doc_ords: list[np.ndarray] = field(default_factory=list)

    def hash(self) -> str:
        digest = hashlib.sha256()
        for part in (self.features, self.labels, np.asarray(self.groups)):
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()[:16]

    def subset(self, query_indexes: list[int]) -> TrainingSet:
        offsets = np.r_[0, np.cumsum(self.groups)]
        rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in query_indexes]) if query_indexes \
            else np.zeros(0, dtype=np.int64)
        return TrainingSet(
            self.features[rows], self.labels[rows], [self.groups[i] for i in query_indexes],
            [self.query_ids[i] for i in query_indexes],
            [self.doc_ords[i] for i in query_indexes] if self.doc_ords else [],
        )

    def rows_of(self, query_index: int) -> slice:
        offsets = np.r_[0, np.cumsum(self.groups)]
        return slice(int(offsets[query_index]), int(offsets[query_index + 1]))


@dataclass
class RankerCard:
    """Everything that describes a trained model, saved beside it as ranker.json."""

    model_id: str
    features: list[str]
    created_at: str
    training_data_hash: str
    trained_on: str
    index_compatibility: dict  # analyzer fingerprint and dense model id the features were computed with
    metrics: dict
    params: dict
    # Where the labels came from: empty for judgments; for clicks, the click model, how many sessions, clicks and
    # queries of the log, and the log's time span (pipeline/behaviour/labels.py).
    label_source: dict = field(default_factory=dict)


class Ranker:
    def __init__(self, booster, card: RankerCard):
        self.booster = booster
        self.card = card

    @classmethod
    def train(cls, train: TrainingSet, validation: TrainingSet, config: RankerConfig, trained_on: str,
              compatibility: dict) -> Ranker:
        import lightgbm

        large = len(train.groups) >= config.large_from_queries
        small = len(train.groups) + len(validation.groups) < config.small_below_queries
        min_data = config.min_data_in_leaf_large if large else config.min_data_in_leaf
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves_large if large else config.num_leaves,
            "min_data_in_leaf": config.min_data_in_leaf_small if small else min_data,
            "seed": config.seed,
            "deterministic": True,
            "num_threads": 2,
            "verbosity": -1,
        }
        # Boosting starts from the fused score: the trees learn a correction to the hybrid mode's order, so a
        # ranker with little to add keeps that order instead of re-learning it from coarse bins of it.
        prior = config.fused_prior
        train_data = lightgbm.Dataset(train.features, train.labels, group=train.groups, feature_name=list(FEATURES),
                                      init_score=_prior(train.features, prior))
        callbacks = []
        valid_sets = []
        if validation.groups:
            valid_sets = [lightgbm.Dataset(validation.features, validation.labels, group=validation.groups,
                                           reference=train_data, init_score=_prior(validation.features, prior))]
            callbacks.append(lightgbm.early_stopping(config.early_stopping_rounds, verbose=False))
        rounds = config.n_estimators if valid_sets else min(config.n_estimators, config.n_estimators_small)
        best = None
        if not valid_sets and len(train.groups) >= config.folds:
            # Too few queries to hold some out: k-fold cross-validation over them picks how many rounds of
            # correction to the fused order hold up on queries the trees did not see.
            scores = lightgbm.cv(params, train_data, num_boost_round=rounds, nfold=config.folds, stratified=False,
                                 seed=config.seed, callbacks=[lightgbm.early_stopping(config.early_stopping_rounds,
                                                                                      verbose=False)])
            rounds, best = len(scores["valid ndcg@10-mean"]), float(scores["valid ndcg@10-mean"][-1])
        booster = lightgbm.train(params, train_data, num_boost_round=rounds, valid_sets=valid_sets,
                                 callbacks=callbacks)
        keep_trees, verdict = True, None
        if valid_sets:
            best = booster.best_score.get("valid_0", {}).get("ndcg@10")
            keep_trees, verdict = _trees_earn_their_place(booster, validation, config)
        card = RankerCard(
            model_id=timestamped_id(),
            features=list(FEATURES),
            created_at=datetime.now(UTC).isoformat(),
            training_data_hash=data_hash(train, validation),
            trained_on=trained_on,
            index_compatibility=compatibility,
            metrics={"best_iteration": booster.best_iteration, "validation_ndcg@10": best,
                     "train_queries": len(train.groups), "validation_queries": len(validation.groups),
                     "trees_vs_fused_order": verdict, "keeps_fused_order": not keep_trees},
            params={**{k: v for k, v in params.items() if k != "eval_at"}, "fused_prior": prior},
        )
        return cls(booster, card)

    @property
    def columns(self) -> list[int]:
        """The columns of FEATURES this ranker was trained on: all of them, or those before the behaviour channels'
        for a ranker trained before they were appended."""
        return [FEATURES.index(name) for name in self.card.features]

    def check(self, compatibility: dict) -> None:
        if self.card.features not in (list(FEATURES), list(FEATURES[: -len(CHANNEL_FEATURES)])):
            missing = sorted(set(self.card.features) ^ set(FEATURES))
            raise RankerMismatch(f"ranker {self.card.model_id} was trained on other features ({missing}); retrain it")
        if self.card.index_compatibility != compatibility:
            raise RankerMismatch(
                f"ranker {self.card.model_id} was trained on an index with {self.card.index_compatibility}, "
                f"but this index has {compatibility}: its features would mean something else. Retrain the ranker."
            )

    @property
    def fused_prior(self) -> float:
        return float(self.card.params.get("fused_prior", 0.0))

    @property
    def keeps_fused_order(self) -> bool:
        """Whether the trees did not earn their place on validation: the model is then the fused score alone."""
        return bool(self.card.metrics.get("keeps_fused_order", False))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The model's score: the fused score's prior plus the trees' correction; the fused score alone where the
        trees did not earn their place on validation (`keeps_fused_order`).

        One thread: one query's candidates are too few to share out, and OpenMP threads left spinning after the
        call take the core that another request, or another API worker, is waiting for."""
        if not len(features):
            return np.zeros(0)
        if self.keeps_fused_order:
            return features[:, FUSED_SCORE].astype(np.float64)
        trees = self.booster.predict(features[:, self.columns], num_iteration=self.booster.best_iteration or None,
                                     num_threads=1)
        return trees + _prior(features, self.fused_prior)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Per-feature contributions plus a last column for the bias; each row sums to the model's score. The
        prior the trees start from counts to `fused_score`'s contribution."""
        contributions = np.zeros((len(features), len(FEATURES) + 1))  # features it was not trained on add 0
        if self.keeps_fused_order:
            contributions[:, FUSED_SCORE] = features[:, FUSED_SCORE]
            return contributions
        own = self.booster.predict(features[:, self.columns], num_iteration=self.booster.best_iteration or None,
                                   pred_contrib=True, num_threads=1)
        contributions[:, self.columns + [len(FEATURES)]] = own
        contributions[:, FUSED_SCORE] += _prior(features, self.fused_prior)
        return contributions

    def save(self, rankers_dir: Path, publish: bool = True) -> Path:
        folder = Path(rankers_dir) / self.card.model_id
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "model.txt"))
        (folder / "ranker.json").write_text(json.dumps(asdict(self.card), indent=2, default=float))
        if publish:
            write_pointer(Path(rankers_dir) / CURRENT_POINTER, self.card.model_id)
        return folder

    @classmethod
    def load(cls, folder: Path) -> Ranker:
        import lightgbm

        card = RankerCard(**json.loads((Path(folder) / "ranker.json").read_text()))
        return cls(lightgbm.Booster(model_file=str(Path(folder) / "model.txt")), card)

    @staticmethod
    def published(rankers_dir: Path) -> bool:
        """Whether a model is published, without loading it."""
        return (Path(rankers_dir) / CURRENT_POINTER).is_file()

    @classmethod
    def load_current(cls, rankers_dir: Path) -> Ranker | None:
        model_id = read_pointer(Path(rankers_dir) / CURRENT_POINTER)
        return None if model_id is None else cls.load(Path(rankers_dir) / model_id)


def _trees_earn_their_place(booster, validation: TrainingSet, config: RankerConfig) -> tuple[bool, dict]:
    """(keep the trees, the comparison): whether, on the validation queries, the trees' correction lifts the
    mean nDCG@10 of the fused order they start from by `min_gain` (the lift an answer of adaptive fusion's rule
    tree must bring, `fit_rule`) and helps more queries than it hurts. Where the fused order is near the ceiling
    (CSL), the round early stopping keeps edges the validation mean up by less, on a handful of queries, and
    held-out queries lose as often as they gain."""
    trees = booster.predict(validation.features, num_iteration=booster.best_iteration or None, num_threads=1)
    prior = _prior(validation.features, config.fused_prior)
    run_trees, run_fused, qrels = {}, {}, {}
    for i in range(len(validation.groups)):
        rows = validation.rows_of(i)
        docs = [str(j) for j in range(rows.stop - rows.start)]
        run_trees[str(i)] = dict(zip(docs, (trees[rows] + prior[rows]).tolist()))
        # The fused order is the order the rows come in (`ranker_candidates`).
        run_fused[str(i)] = dict(zip(docs, (-np.arange(len(docs), dtype=float)).tolist()))
        qrels[str(i)] = {d: int(label) for d, label in zip(docs, validation.labels[rows]) if label > 0}
    with_trees, fused = score_run(run_trees, qrels)[1], score_run(run_fused, qrels)[1]
    diff = np.array([with_trees[q]["ndcg@10"] - fused[q]["ndcg@10"] for q in qrels])
    wins, losses = int((diff > 1e-9).sum()), int((diff < -1e-9).sum())
    gain = float(diff.mean()) if len(diff) else 0.0
    keep = gain >= config.min_gain and wins > losses
    return keep, {"gain": round(gain, 4), "wins": wins, "losses": losses, "queries": len(diff)}


def _prior(features: np.ndarray, weight: float) -> np.ndarray:
    return weight * features[:, FUSED_SCORE]


def data_hash(*sets: TrainingSet) -> str:
    """One hash over every training row, label and group the model saw (validation included)."""
    digest = hashlib.sha256()
    for training in sets:
        digest.update(training.hash().encode())
    return digest.hexdigest()[:16]


def split_queries(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) query indexes; validation is `fraction` of them, at least one when n > 1."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_valid = max(1, int(round(n * fraction))) if n > 1 and fraction > 0 else 0
    return sorted(order[n_valid:]), sorted(order[:n_valid])


def folds(n: int, k: int, seed: int) -> list[list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(order[i::k].tolist()) for i in range(k)]
