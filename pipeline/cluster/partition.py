"""Split a published index into document shards that keep its vocabulary, and the collection statistics they share."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import Settings
from ..dense.ann import AnnIndex
from ..dense.index import DENSE_DIR, DenseIndex, _passages_table, _target_spec, _write
from ..dense.passages import Passage
from ..errors import InputError
from ..index.build import Staging, shard_bounds, stage_finalize, stage_write_documents
from ..index.forward import ForwardField, ForwardIndex
from ..index.postings import InvertedIndex
from ..index.store import publish
from ..ingest.ingest import IngestResult
from ..rank.model import RANKERS_DIR
from ..retrieval.weights import FUSION_DIR
from ..search.bm25 import CollectionStats
from ..search.reader import IndexReader

LAYOUT = "cluster.json"  # CLUSTER/cluster.json: the shards, their first document ordinals, the statistics
STATS_DIR = "stats"  # CLUSTER/stats/FIELD.df.npy: documents per term over every shard


@dataclass(frozen=True)
class RecordedEncoder:
    """What a dense folder records of its encoder, for shards whose vectors are copied, not encoded again."""

    model_id: str
    normalized: bool


@dataclass
class Layout:
    """A partitioned index: shard folders, the global ordinal each starts at, and the collection's statistics."""

    root: Path
    shards: list[str]  # folder names under root, in document order
    offsets: list[int]  # global ordinal of each shard's first document; the last entry is the document count
    tokens: dict[str, int]  # tokens per field over every shard
    languages: dict[str, float]  # share of the documents per detected language
    newest_us: int | None  # the newest document date, microseconds since the epoch

    @property
    def n_docs(self) -> int:
        return self.offsets[-1]

    def shard_dir(self, shard: int) -> Path:
        return self.root / self.shards[shard]

    def stats(self, field: str) -> CollectionStats:
        df = np.load(self.root / STATS_DIR / f"{field}.df.npy", mmap_mode="r")
        return CollectionStats(df, self.n_docs, self.tokens[field] / self.n_docs if self.n_docs else 0.0)

    @classmethod
    def read(cls, root: Path | str) -> Layout:
        root = Path(root)
        path = root / LAYOUT
        if not path.is_file():
            raise InputError(f"{root} is not a partitioned index (no {LAYOUT}): run `sousuo cluster partition` first")
        return cls(root=root, **json.loads(path.read_text()))

    def write(self) -> None:
        fields = {k: v for k, v in self.__dict__.items() if k != "root"}
        (self.root / LAYOUT).write_text(json.dumps(fields, indent=2))


def partition(index_dir: Path | str, out_dir: Path | str, shards: int, settings: Settings | None = None) -> Layout:
    """Write `shards` document shards of the published version of `index_dir` under `out_dir`.

    Each shard is an index of its own, a contiguous range of documents in order, that keeps the whole vocabulary
    (term ids mean the same in every shard) and copies its documents' vectors; the published rankers and fusion
    weights are copied beside the shards. Shard scores use the statistics summed here, so they equal the index's."""
    settings = settings or Settings()
    if shards < 1:
        raise InputError(f"--shards must be 1 or more, got {shards}")
    reader = IndexReader.open(index_dir, settings)
    if reader.n_docs < shards:
        raise InputError(f"{reader.n_docs} documents cannot make {shards} shards")
    out_dir = Path(out_dir)
    if (out_dir / LAYOUT).exists():
        raise InputError(f"{out_dir} holds a partitioned index already; choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    dense = reader.dense if reader.has_dense else None
    if dense is not None and dense.manifest.encoder_path:
        raise InputError("indexes embedded with a static encoder cannot be partitioned yet; use a transformer encoder")
    names, offsets, df = [], [], {}
    for number, (start, stop) in enumerate(shard_bounds(reader.n_docs, shards)):
        name = f"shard-{number:03d}"
        inverted = _write_shard(reader, dense, out_dir / name, start, stop, settings)
        for field, postings in inverted.fields.items():
            df[field] = df.get(field, 0) + postings.doc_frequencies()
        names.append(name)
        offsets.append(start)
    (out_dir / STATS_DIR).mkdir(exist_ok=True)
    for field, counts in df.items():
        np.save(out_dir / STATS_DIR / f"{field}.df.npy", counts.astype(np.int64))
    for folder in (RANKERS_DIR, FUSION_DIR):
        if (reader.root / folder).is_dir():
            shutil.copytree(reader.root / folder, out_dir / folder, dirs_exist_ok=True)
    metadata = reader.metadata
    counts = pc.value_counts(metadata.lang).to_pylist()
    layout = Layout(
        root=out_dir, shards=names, offsets=[*offsets, reader.n_docs],
        tokens={field: int(reader.postings(field).doc_lengths.sum(dtype=np.int64)) for field in df},
        languages={c["values"]: c["counts"] / reader.n_docs for c in counts if c["values"] is not None},
        newest_us=int(metadata.published_us[metadata.has_date].max()) if metadata.has_date.any() else None,
    )
    layout.write()
    return layout


def _slice_field(field: ForwardField, start: int, stop: int) -> ForwardField:
    first, last = int(field.indptr[start]), int(field.indptr[stop])
    return ForwardField(np.asarray(field.indptr[start:stop + 1]) - first,
                        *(np.asarray(getattr(field, key)[first:last]) for key in ("term_ids", "positions", "starts",
                                                                                   "ends")))


def _write_shard(reader: IndexReader, dense: DenseIndex | None, shard_dir: Path, start: int, stop: int,
                 settings: Settings) -> InvertedIndex:
    """One shard: documents [start, stop) of `reader` as a published index; returns its postings."""
    version = reader.version
    documents = version.documents.slice(start, stop - start)
    quarantine = pq.read_table(version.path / "quarantine.parquet").slice(0, 0)
    with Staging.start(shard_dir) as staging:
        stage_write_documents(IngestResult(documents, quarantine), staging.folder)
        forward = ForwardIndex({name: _slice_field(field, start, stop) for name, field in version.forward.fields.items()})
        inverted = InvertedIndex.build(forward, len(reader.vocabulary))
        forward.save(staging.folder / "forward", documents.column("doc_id"))
        inverted.save(staging.folder / "inverted", reader.vocabulary)
        counts = {"doc_count": documents.num_rows, "term_count": len(reader.vocabulary),
                  "avgdl": {name: round(postings.avgdl, 6) for name, postings in inverted.fields.items()}}
        dense_manifest = None if dense is None else _copy_dense(dense, version.path / DENSE_DIR, documents,
                                                                staging.folder, start, stop, settings)
        manifest = stage_finalize(staging, settings.model_copy(update={"analyzer": version.analyzer_config}), counts,
                                  dense_manifest, [str(version.path)], {})
    publish(shard_dir, manifest.version)
    return inverted


def _copy_dense(dense: DenseIndex, source: Path, documents: pa.Table, folder: Path, start: int, stop: int,
                settings: Settings) -> dict:
    """The shard's passages with the vectors the index already holds, in a fresh ANN index of the shard's size."""
    table = pq.read_table(source / "passages.parquet")
    doc_ords = table.column("doc_ord").to_numpy()
    live = dense.passage_docs[table.column("passage_id").to_numpy()] >= 0
    mine = live & (doc_ords >= start) & (doc_ords < stop)
    picked = table.filter(pa.array(mine))
    picked = picked.take(pa.array(np.lexsort((picked.column("start").to_numpy(), picked.column("doc_ord").to_numpy()))))
    vectors = np.asarray(dense.ann.vectors[picked.column("passage_id").to_numpy()], dtype=np.float32)
    passages = [Passage(int(d) - start, int(s), int(e), "") for d, s, e in zip(
        picked.column("doc_ord").to_numpy(), picked.column("start").to_numpy(), picked.column("end").to_numpy())]
    rows = _passages_table(np.arange(len(passages)), passages).set_column(4, "text_hash", picked.column("text_hash"))
    manifest = dense.manifest
    ann = AnnIndex.build(vectors, _target_spec(len(vectors), manifest.dim, settings))
    shard_settings = settings.model_copy(update={"dense": settings.dense.model_copy(update={
        "passage_window": manifest.passage_window, "passage_overlap": manifest.passage_overlap})})
    return asdict(_write(folder, documents, rows, ann, RecordedEncoder(manifest.model_id, manifest.normalized),
                         shard_settings, 0, choice=manifest.choice))
