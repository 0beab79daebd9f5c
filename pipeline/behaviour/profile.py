"""A user's profile from the query log: tag, source and language affinities and a decayed mean of the vectors of the
documents they opened, kept at INDEX/querylog/profiles/<user_hash>.json (which `forget-user` deletes)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from ..index.querylog import QueryLog
from ..io import atomic_write_text
from ..search.reader import IndexReader


@dataclass
class UserProfile:
    """Affinities are shares of the user's decayed clicks (0..1); `vector` is unit length, or None without vectors."""

    user_hash: str
    clicks: int
    tags: dict[str, float]
    sources: dict[str, float]
    langs: dict[str, float]
    vector: list[float] | None
    built_at: str

    def affinity(self, reader: IndexReader, docs: np.ndarray) -> np.ndarray:
        """Per document: its tags', source's and language's affinities plus the cosine of its vector with the
        profile's (clipped at 0), the score of the personal branch."""
        metadata = reader.metadata
        taken = pa.array(np.asarray(docs, dtype=np.int64))
        scores = np.array([self.sources.get(source or "", 0.0) + self.langs.get(lang or "", 0.0) for source, lang in
                           zip(metadata.source.take(taken).to_pylist(), metadata.lang.take(taken).to_pylist())])
        if self.tags and len(docs):
            row_of = {d: i for i, d in enumerate(docs.tolist())}
            mine = np.isin(metadata.tag_parents, docs)
            for parent, tag in zip(metadata.tag_parents[mine].tolist(),
                                   metadata.tag_values.filter(pa.array(mine)).to_pylist()):
                scores[row_of[parent]] += self.tags.get(tag, 0.0)
        if self.vector is not None and reader.has_dense:
            cosines = reader.dense_cosines(np.asarray(self.vector, dtype=np.float32), docs)
            scores += np.clip(np.nan_to_num(cosines), 0, None)
        return scores


def build_profile(reader: IndexReader, user_hash: str, half_life_days: float) -> UserProfile | None:
    """The profile of one hashed user from their clicks, newer clicks weighing more (a click `half_life_days` older
    than the user's newest counts half); None when the user opened no document of this version."""
    log = QueryLog(reader.root)
    if not log.clicks_dir.is_dir():
        return None
    rows = log.sql("SELECT doc_id, epoch(ts) AS t FROM clicks WHERE user_hash = ? ORDER BY ts", [user_hash])
    return _profile_of(reader, reader.ordinals, user_hash, [(r["doc_id"], float(r["t"])) for r in rows],
                       half_life_days)


def profiles_before(reader: IndexReader, before: float, half_life_days: float, users: Iterable[str],
                    without_queries: Sequence[str] = ()) -> dict[str, UserProfile]:
    """The profiles of `users` from their clicks before `before` (seconds since the epoch) alone, less those on
    searches of the query keys `without_queries`, read in one pass: what each profile was at that time."""
    log = QueryLog(reader.root)
    if not log.clicks_dir.is_dir():
        return {}
    clicks: dict[str, list[tuple[str, float]]] = {}
    for row in log.sql("SELECT c.user_hash, c.doc_id, epoch(c.ts) AS t FROM clicks c LEFT JOIN queries q "
                       "USING (query_id) WHERE list_contains($1, c.user_hash) AND epoch(c.ts) < $2 "
                       "AND NOT list_contains($3, coalesce(lower(trim(q.text)), '')) ORDER BY c.ts",
                       [sorted(users), before, list(without_queries)]):
        clicks.setdefault(row["user_hash"], []).append((row["doc_id"], float(row["t"])))
    ordinals = reader.ordinals
    profiles = {user: _profile_of(reader, ordinals, user, rows, half_life_days) for user, rows in clicks.items()}
    return {user: profile for user, profile in profiles.items() if profile is not None}


def pooled_profile(profiles: list[UserProfile], weights: list[float]) -> UserProfile:
    """The weighted mean of several users' profiles: the affinities of the people who searched a query, for a
    ranker whose labels pool their clicks."""
    total = float(sum(weights))

    def mean(affinities: list[dict[str, float]]) -> dict[str, float]:
        pooled: dict[str, float] = {}
        for part, weight in zip(affinities, weights):
            for key, value in part.items():
                pooled[key] = pooled.get(key, 0.0) + value * weight / total
        return _rounded(pooled)

    vectors = [(np.asarray(p.vector), w) for p, w in zip(profiles, weights) if p.vector is not None]
    return UserProfile("pooled", sum(p.clicks for p in profiles), mean([p.tags for p in profiles]),
                       mean([p.sources for p in profiles]), mean([p.langs for p in profiles]),
                       _unit_mean([v for v, _ in vectors], [w for _, w in vectors]), datetime.now(UTC).isoformat())


def _profile_of(reader: IndexReader, ordinals: dict[str, int], user_hash: str, clicks: list[tuple[str, float]],
                half_life_days: float) -> UserProfile | None:
    """A profile from one user's (doc id, time) clicks in time order; None when none is a document of this
    version."""
    rows = [(ordinals[doc_id], t) for doc_id, t in clicks if doc_id in ordinals]
    if not rows:
        return None
    newest = rows[-1][1]
    weights = np.array([0.5 ** ((newest - t) / 86_400 / half_life_days) for _, t in rows])
    total = weights.sum()
    tags: dict[str, float] = {}
    sources: dict[str, float] = {}
    langs: dict[str, float] = {}
    vectors, vector_weights = [], []
    for (d, _), w in zip(rows, weights):
        row = reader.metadata.row(d)
        for tag in set(row.get("tags") or ()):
            tags[tag] = tags.get(tag, 0.0) + w / total
        for affinities, value in ((sources, row.get("source")), (langs, row.get("lang"))):
            if value:
                affinities[value] = affinities.get(value, 0.0) + w / total
        vector = reader.dense.doc_vector(d) if reader.has_dense else None
        if vector is not None:
            vectors.append(vector)
            vector_weights.append(w)
    return UserProfile(user_hash, len(rows), _rounded(tags), _rounded(sources), _rounded(langs),
                       _unit_mean(vectors, vector_weights), datetime.now(UTC).isoformat())


def _unit_mean(vectors: list[np.ndarray], weights: list[float]) -> list[float] | None:
    """The weighted mean of vectors scaled to unit length, as stored; None without vectors."""
    if not vectors:
        return None
    combined = np.average(np.stack(vectors), axis=0, weights=weights)
    return (combined / max(float(np.linalg.norm(combined)), 1e-12)).round(6).tolist()


def _rounded(affinities: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in sorted(affinities.items(), key=lambda item: -item[1])}


def profile_for(reader: IndexReader, user_id: str, half_life_days: float) -> UserProfile | None:
    """The stored profile of `user_id` (hashed with the log's salt), rebuilt and stored again when the log has
    clicks newer than it; None for a user with no clicks. Only this user's own file is ever read."""
    log = QueryLog(reader.root)
    user_hash = log.hash_id(user_id)
    if user_hash is None:
        return None
    path = log.profile_path(user_hash)
    if path.is_file() and path.stat().st_mtime >= log.clicks_changed_at():
        return UserProfile(**json.loads(path.read_text(encoding="utf-8")))
    profile = build_profile(reader, user_hash, half_life_days)
    if profile is None:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(profile)))
    return profile
