"""Click models fitted on logged sessions, and their usual comparison on held-out sessions.

- `PositionBased` (PBM): a result is clicked when examined (probability theta[r], by position only) and found
  relevant (gamma, per query and document); fitted by expectation-maximisation.
- `SimplifiedDBN` (the cascade family): the user reads down the list, clicks an attractive result (a), is satisfied
  by it (s) and stops, or goes on; with perseverance 1 its maximum-likelihood fit is counting (Chapelle & Zhang).
- `ClickThroughRate`: clicks over impressions per pair, blind to position: the baseline the others must beat.

Each relevance has a Beta(prior_clicks, prior_skips) prior, so pairs seen a few times stay near its mean.
Propensities are reported relative to position 1 (a PBM fixes only their ratios and each pair's product
theta * gamma; position 1 is taken as always examined).

Where a document always appears at the same position, a PBM cannot tell "rarely examined" from "rarely relevant":
the likelihood is flat along theta * gamma = constant, and joint EM drifts along it the longer it runs. Sessions
shown in random order (the `explore` arm) break the tie, so where the log has them the PBM fits theta by EM on
those alone, then gamma by EM on every session with theta held; without them, it runs joint EM on everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import BehaviourConfig
from ..io import atomic_write
from ..schemas import CLICK_MODEL_FIT, CLICK_PROPENSITIES, CLICK_RELEVANCE
from .sessions import ClickLog

BEHAVIOUR_DIR = "behaviour"  # under the index folder, beside the query log it is fitted on
# DuckDB view name → (file under INDEX/behaviour, schema), for `sousuo sql`.
TABLES = {
    "click_propensities": ("propensities.parquet", CLICK_PROPENSITIES),
    "click_relevance": ("relevance.parquet", CLICK_RELEVANCE),
    "click_model_fit": ("fit.parquet", CLICK_MODEL_FIT),
}
_EPS = 1e-6


def _impressions(log: ClickLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pair, 0-based position, clicked) of every result shown."""
    sessions, positions = np.nonzero(log.pairs >= 0)
    return log.pairs[sessions, positions], positions, log.clicks[sessions, positions]


class ClickModel:
    name = ""

    def __init__(self, config: BehaviourConfig):
        self.config = config
        self.prior = (config.prior_clicks, config.prior_clicks + config.prior_skips)

    def fit(self, log: ClickLog) -> ClickModel:
        raise NotImplementedError

    def click_probabilities(self, log: ClickLog) -> tuple[np.ndarray, np.ndarray]:
        """(P(click at r | clicks above), P(click at r)) per session and position; NaN where nothing was shown."""
        raise NotImplementedError

    def relevance(self) -> np.ndarray:
        """Estimated relevance of every pair of the log the model was fitted on."""
        raise NotImplementedError

    def propensities(self) -> np.ndarray | None:
        return None


class PositionBased(ClickModel):
    name = "pbm"

    def fit(self, log: ClickLog) -> PositionBased:
        theta = None
        if log.randomised.any():
            # Each pair appears in few randomised sessions, so the full prior would pull its gamma (and through it
            # theta) towards the prior's mean; a tenth of its strength leaves theta to the clicks.
            theta, _ = self._em(log.subset(np.nonzero(log.randomised)[0]), prior_scale=0.1)
        theta, gamma = self._em(log, theta)
        scale = theta[0] if theta[0] > 0 else 1.0
        self.theta, self.gamma = theta / scale, np.clip(gamma * scale, 0, 1)
        return self

    def _em(self, log: ClickLog, fixed_theta: np.ndarray | None = None,
            prior_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        k, n_pairs = self.config.positions, log.n_pairs
        prior_clicks, prior_total = (p * prior_scale for p in self.prior)
        pair, position, clicked = _impressions(log)
        shown = np.bincount(position, minlength=k).astype(float)
        seen = np.bincount(pair, minlength=n_pairs).astype(float)
        theta = np.full(k, 0.5) if fixed_theta is None else fixed_theta
        gamma = np.full(n_pairs, prior_clicks / prior_total)
        for _ in range(self.config.em_iterations):
            t, g = theta[position], gamma[pair]
            unclicked = np.maximum(1 - t * g, _EPS)
            relevant = np.where(clicked, 1.0, (1 - t) * g / unclicked)
            if fixed_theta is None:
                examined = np.where(clicked, 1.0, t * (1 - g) / unclicked)
                theta = np.where(shown > 0, np.bincount(position, examined, k) / np.maximum(shown, 1), theta)
            gamma = (prior_clicks + np.bincount(pair, relevant, n_pairs)) / (prior_total + seen)
        return theta, gamma

    def click_probabilities(self, log: ClickLog) -> tuple[np.ndarray, np.ndarray]:
        shown = log.pairs >= 0
        p = np.where(shown, self.theta[None, : log.pairs.shape[1]] * self.gamma[np.maximum(log.pairs, 0)], np.nan)
        return p, p

    def relevance(self) -> np.ndarray:
        return self.gamma

    def propensities(self) -> np.ndarray:
        return self.theta

    def ipw_relevance(self, log: ClickLog) -> np.ndarray:
        """Inverse-propensity-weighted click rate per pair (propensities clipped below at `min_propensity`), under
        the same prior: the other debiased label, unbiased where the propensities are right, noisier than EM's."""
        pair, position, clicked = _impressions(log)
        weights = clicked / np.maximum(self.theta[position], self.config.min_propensity)
        seen = np.bincount(pair, minlength=log.n_pairs)
        return np.clip((self.prior[0] + np.bincount(pair, weights, log.n_pairs)) / (self.prior[1] + seen), 0, 1)


class ClickThroughRate(ClickModel):
    name = "ctr"

    def fit(self, log: ClickLog) -> ClickThroughRate:
        pair, _, clicked = _impressions(log)
        seen = np.bincount(pair, minlength=log.n_pairs)
        self.rate = (self.prior[0] + np.bincount(pair, clicked.astype(float), log.n_pairs)) / (self.prior[1] + seen)
        return self

    def click_probabilities(self, log: ClickLog) -> tuple[np.ndarray, np.ndarray]:
        p = np.where(log.pairs >= 0, self.rate[np.maximum(log.pairs, 0)], np.nan)
        return p, p

    def relevance(self) -> np.ndarray:
        return self.rate


class SimplifiedDBN(ClickModel):
    name = "sdbn"

    def fit(self, log: ClickLog) -> SimplifiedDBN:
        n_pairs, k = log.n_pairs, log.pairs.shape[1]
        shown = log.pairs >= 0
        any_click = log.clicks.any(axis=1)
        # Examined: every result down to the last click, or all of them when nothing was clicked (a user who is
        # never satisfied reads on to the end).
        last = np.where(any_click, k - 1 - np.argmax(log.clicks[:, ::-1], axis=1), k - 1)
        examined = shown & (np.arange(k)[None, :] <= last[:, None])
        is_last = np.zeros_like(log.clicks)
        is_last[np.nonzero(any_click)[0], last[any_click]] = True
        pairs = np.maximum(log.pairs, 0)

        def count(mask: np.ndarray) -> np.ndarray:
            return np.bincount(pairs[mask], minlength=n_pairs).astype(float)

        self.attractiveness = (self.prior[0] + count(examined & log.clicks)) / (self.prior[1] + count(examined))
        self.satisfaction = (self.prior[0] + count(is_last)) / (self.prior[1] + count(log.clicks & shown))
        # Per position, the mean over the sessions that showed one; NaN where none did (a log of short result lists),
        # without nanmean's warning on every such position.
        n_shown = shown.sum(axis=0)
        summed = np.where(shown, self._marginal_examination(log), 0.0).sum(axis=0)
        self.examination = np.where(n_shown > 0, summed / np.maximum(n_shown, 1), np.nan)
        return self

    def _marginal_examination(self, log: ClickLog) -> np.ndarray:
        pairs = np.maximum(log.pairs, 0)
        a, s = self.attractiveness[pairs], self.satisfaction[pairs]
        stay = np.ones(len(pairs))
        out = np.empty(pairs.shape)
        for r in range(pairs.shape[1]):
            out[:, r] = stay
            stay = stay * (1 - a[:, r] * s[:, r])
        return out

    def click_probabilities(self, log: ClickLog) -> tuple[np.ndarray, np.ndarray]:
        pairs = np.maximum(log.pairs, 0)
        shown = log.pairs >= 0
        a, s = self.attractiveness[pairs], self.satisfaction[pairs]
        conditional = np.empty(pairs.shape)
        examined = np.ones(len(pairs))  # P(examined at r | clicks above r)
        for r in range(pairs.shape[1]):
            conditional[:, r] = examined * a[:, r]
            skipped = examined * (1 - a[:, r]) / np.maximum(1 - examined * a[:, r], _EPS)
            examined = np.where(log.clicks[:, r], 1 - s[:, r], skipped)
        marginal = self._marginal_examination(log) * a
        return np.where(shown, conditional, np.nan), np.where(shown, marginal, np.nan)

    def relevance(self) -> np.ndarray:
        return self.attractiveness * self.satisfaction

    def propensities(self) -> np.ndarray:
        return self.examination / self.examination[0]


MODELS = {m.name: m for m in (PositionBased, SimplifiedDBN, ClickThroughRate)}


def evaluate(model: ClickModel, held_out: ClickLog) -> list[dict]:
    """Per position and over all: mean log-likelihood of the held-out clicks (each click conditioned on those above
    it), and perplexity (2 to the mean -log2 of each position's marginal click probability; overall, the mean of
    the positions'). Lower perplexity is better; 1 is perfect prediction, 2 a coin flip."""
    conditional, marginal = model.click_probabilities(held_out)
    shown = held_out.pairs >= 0
    clicked = held_out.clicks

    def log_p(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, _EPS, 1 - _EPS)
        return np.where(clicked, np.log2(p), np.log2(1 - p))

    ll = np.where(shown, log_p(conditional) * np.log(2), 0.0)
    lp = np.where(shown, log_p(marginal), 0.0)
    rows, perplexities = [], []
    for r in range(shown.shape[1]):
        n = int(shown[:, r].sum())
        if not n:
            continue
        perplexity = float(2 ** (-lp[:, r].sum() / n))
        perplexities.append(perplexity)
        rows.append({"model": model.name, "position": r + 1, "log_likelihood": float(ll[:, r].sum() / n),
                     "perplexity": perplexity, "sessions": n})
    rows.append({"model": model.name, "position": None,
                 "log_likelihood": float(ll.sum() / max(held_out.n_sessions, 1)),
                 "perplexity": float(np.mean(perplexities)) if perplexities else None,
                 "sessions": held_out.n_sessions})
    return rows


@dataclass
class FittedModels:
    models: dict[str, ClickModel]
    fit: list[dict]  # rows of CLICK_MODEL_FIT
    log: ClickLog  # the sessions the models were fitted on


def fit_and_compare(log: ClickLog, config: BehaviourConfig) -> FittedModels:
    """Every model fitted on the same sessions, and scored on the same held-out ones."""
    fit_part, held_out = log.split(config.held_out_fraction, config.seed)
    models = {name: cls(config).fit(fit_part) for name, cls in MODELS.items()}
    rows = [row for model in models.values() for row in evaluate(model, held_out)] if held_out.n_sessions else []
    return FittedModels(models, rows, fit_part)


def save_tables(fitted: FittedModels, index_dir: Path) -> Path:
    """Write propensities, relevance per pair, and the held-out comparison under INDEX/behaviour."""
    folder = Path(index_dir) / BEHAVIOUR_DIR
    log = fitted.log
    pair, _, clicked = _impressions(log)
    impressions = np.bincount(pair, minlength=log.n_pairs)
    clicks = np.bincount(pair, clicked.astype(np.int64), log.n_pairs)
    seen = np.nonzero(impressions)[0]
    propensities, relevance = [], []
    for name, model in fitted.models.items():
        theta = model.propensities()
        if theta is not None:
            propensities += [{"model": name, "position": r + 1, "propensity": float(t)} for r, t in enumerate(theta)]
        gamma = model.relevance()
        relevance.append(pa.table({
            "model": pa.array([name] * len(seen), pa.string()),
            "query": pa.array([log.queries[q] for q in log.pair_query[seen]], pa.string()),
            "doc_id": pa.array([log.doc_ids[d] for d in log.pair_doc[seen]], pa.string()),
            "relevance": pa.array(gamma[seen], pa.float64()),
            "impressions": pa.array(impressions[seen], pa.int64()),
            "clicks": pa.array(clicks[seen], pa.int64()),
        }, schema=CLICK_RELEVANCE))
    tables = {
        "click_propensities": pa.Table.from_pylist(propensities, schema=CLICK_PROPENSITIES),
        "click_relevance": pa.concat_tables(relevance) if relevance else CLICK_RELEVANCE.empty_table(),
        "click_model_fit": pa.Table.from_pylist(fitted.fit, schema=CLICK_MODEL_FIT),
    }
    for view, (file, _) in TABLES.items():
        atomic_write(folder / file, lambda tmp, table=tables[view]: pq.write_table(table, tmp))
    return folder
