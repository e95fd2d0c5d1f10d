"""Command line: ``hefestus run | check | analyze | eval | serve | state | remediation | unclassified``.

Parses arguments, calls :mod:`hefestus.app` (the composition root) and prints: it
builds nothing itself.

Exit codes: 0 fine, 1 a check failed or an event could not be handled,
2 bad configuration, rules or patterns (the message names file and line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hefestus import __version__, logs
from hefestus.config import ApiSettings, Settings, find_config, load_settings
from hefestus.errors import ConfigError, StateError, ZabbixError
from hefestus.redact import Redactor

if TYPE_CHECKING:
    from hefestus.analysis.analyzer import Analyzer
    from hefestus.app.reload import KnowledgeHolder

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hefestus", description="Self-healing companion for Zabbix.")
    p.add_argument("--config", "-c", metavar="PATH",
                   help="configuration file (default: $HEFESTUS_CONFIG, ./hefestus.toml, /etc/hefestus/hefestus.toml)")
    p.add_argument("--version", action="version", version=f"hefestus {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="poll Zabbix and acknowledge new problems")
    run.add_argument("--once", action="store_true", help="one poll cycle, then exit")
    run.add_argument("--poll-interval", type=float, metavar="SECONDS",
                     help="override intake.poll_interval")
    run.add_argument("--dry-run", action="store_true",
                     help="classify and print the messages; write nothing to Zabbix or the state")
    sub.add_parser("check", help="validate configuration, rules and patterns; test Zabbix access")
    an = sub.add_parser("analyze", help="classify one error text offline")
    an.add_argument("text", help="the error text, or - to read standard input")
    an.add_argument("--domain", "-d", help="dictionary to use (default: the best match of all)")
    an.add_argument("--json", action="store_true", help="print the classification as JSON")
    an.add_argument("--no-model", action="store_true", help="patterns only, even when a model is configured")
    ev = sub.add_parser("eval", help="score the dictionaries (and the model) on labelled JSON-lines corpora")
    ev.add_argument("corpus", nargs="+", type=Path, metavar="CORPUS.jsonl",
                    help='one {"text", "domain" (or "none"), "category"?, "source"?} object a line')
    ev.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ev.add_argument("--domain", "-d", help="classify every text with this dictionary (default: routing, as the daemon)")
    ev.add_argument("--misses", action="store_true", help="also list each text that got the wrong domain")
    use = ev.add_mutually_exclusive_group()
    use.add_argument("--model", dest="model", action="store_true",
                     help="also ask the configured model where the daemon would, and time its answers")
    use.add_argument("--no-model", dest="model", action="store_false", help="patterns only (the default)")
    sv = sub.add_parser("serve", help="serve the HTTP API alone (POST /api/errors/{domain}), without "
                                      "polling Zabbix: for teams that only want the CI-pipeline endpoint")
    sv.add_argument("--listen", metavar="HOST:PORT", help="override api.listen (default 127.0.0.1:8080)")
    rm = sub.add_parser("remediation", help="the self-healing audit trail: every decision, run and outcome")
    rm.add_argument("--limit", type=int, default=20)
    rm.add_argument("--event", type=int, metavar="EVENTID", help="only this event")
    st = sub.add_parser("state", help="show the backend, the cursor and the latest handled events")
    st.add_argument("--limit", type=int, default=20)
    st.add_argument("--state", choices=["pending", "done", "failed", "skipped"])
    st_sub = st.add_subparsers(dest="state_command", metavar="migrate")
    mg = st_sub.add_parser("migrate", help="copy the configured state into an empty PostgreSQL database")
    mg.add_argument("--to", required=True, metavar="postgresql://USER@HOST:PORT/DB",
                    help="the target (password: in the URL, PGPASSWORD or ~/.pgpass)")
    un = sub.add_parser("unclassified", help="the event kinds no pattern matched, most frequent first "
                                             "(--draft: a [[pattern]] to start from for each)")
    un.add_argument("--since", default="7d", metavar="AGE", help="last seen within this long (7d, 12h, 30m; default 7d)")
    un.add_argument("--limit", type=int, default=20)
    un.add_argument("--draft", action="store_true",
                    help="print a [[pattern]] skeleton per kind, to paste into patterns/<domain>.toml")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"hefestus: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StateError as exc:
        print(f"hefestus: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except ZabbixError as exc:
        print(f"hefestus: zabbix: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(find_config(args.config, os.environ))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "analyze":
        return _analyze(args)
    if args.command == "eval":
        return _eval(args)
    if args.command == "serve":
        return _serve(args)
    settings = _settings(args)
    logs.setup(settings.logging.level, settings.logging.format,
               redact=Redactor(settings.redaction.patterns))
    if args.command == "check":
        return _check(settings)
    if args.command == "state":
        return _state(settings, args)
    if args.command == "remediation":
        return _remediation(settings, args)
    if args.command == "unclassified":
        return _unclassified(settings, args)
    from hefestus.app.build import build
    from hefestus.app.daemon import run_once, serve_forever

    if args.poll_interval:
        intake = settings.intake.model_copy(update={"poll_interval": args.poll_interval})
        settings = settings.model_copy(update={"intake": intake})
    app = build(settings)
    if args.dry_run:
        report = app.pipeline.run_once(dry_run=True)
        for plan in report.planned:
            p = plan.problem
            print(f"--- event {p.eventid} on {p.host or '?'}: {p.name}")
            print(plan.message if plan.message else f"(skipped: {plan.skip_reason})")
        print(f"--- {len(report.planned)} event(s); nothing was written", file=sys.stderr)
        return EXIT_OK
    if args.once:
        done = run_once(app)
        if done is None:
            return EXIT_FAIL
        print(json.dumps(done.as_dict()))
        return EXIT_FAIL if done.failed else EXIT_OK
    return serve_forever(app)


def _offline_settings(args: argparse.Namespace) -> Settings:
    """analyze works without Zabbix credentials, and without a config file at all."""
    try:
        path = find_config(args.config, os.environ)
    except ConfigError:
        return Settings.model_validate({"zabbix": {}, "source": Path("hefestus.toml").resolve()},
                                       context={"need_zabbix": False})
    return load_settings(path, need_zabbix=False)


def _serve(args: argparse.Namespace) -> int:
    from hefestus.app.daemon import serve_api

    settings = _offline_settings(args)
    api = settings.api
    if args.listen:
        api = ApiSettings.model_validate({**settings.api.model_dump(), "listen": args.listen})
    logs.setup(settings.logging.level, settings.logging.format, redact=Redactor(settings.redaction.patterns))

    def listening(url: str) -> None:
        print(f"hefestus: serving the API on {url} (Swagger UI: {url}/swagger/index.html)", file=sys.stderr)

    return serve_api(settings, api, listening=listening)


def _offline(args: argparse.Namespace, *, model: bool) -> tuple[Settings, KnowledgeHolder, Analyzer, Redactor]:
    """What `analyze` and `eval` classify and ask with, as the daemon would, but offline (no
    Zabbix, no state file); the model only when ``model``. ``--domain`` must name a dictionary."""
    from hefestus.app.build import build_offline

    settings = _offline_settings(args)
    if not model:
        settings = settings.model_copy(update={"ollama": settings.ollama.model_copy(update={"model": ""})})
    knowledge, analyzer, _, redact = build_offline(settings)
    catalog = knowledge().catalog
    if args.domain and args.domain not in catalog:
        analyzer.close()
        raise ConfigError(f"unknown domain {args.domain!r}; known: {', '.join(catalog.domains)}")
    return settings, knowledge, analyzer, redact


def _analyze(args: argparse.Namespace) -> int:
    from hefestus.api.backend import problem_from_text, redacted
    from hefestus.pipeline.render import render
    from hefestus.values import valid_text

    # Bytes that are not UTF-8 arrive as lone surrogates (stdin and argv): U+FFFD, as in the pipeline.
    text = valid_text(sys.stdin.read() if args.text == "-" else args.text)
    _, knowledge, analyzer, redact = _offline(args, model=not args.no_model)
    c = knowledge().analyze(text, args.domain)
    try:
        s = redacted(analyzer.suggest([(problem_from_text(text), c)], remember=False)[0], redact)
    finally:
        analyzer.close()
    if args.json:  # values redacted, then serialised: redacting JSON text could eat an escape
        out = {**s.classification.as_dict(), "cause": s.cause, "solutions": list(s.steps),
               "confidence": round(s.confidence, 3), "confidence_verified": s.verified_confidence is not None,
               "rejected": list(s.rejected), "source": s.source, "model": s.model, "note": s.note}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(redact(render(s)))  # as the pipeline writes it: the whole message redacted once more
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from hefestus.api.backend import problem_from_text
    from hefestus.classify.evaluate import CorpusError, evaluate, format_table, load_corpus, misses
    from hefestus.values import Classification, Suggestion

    if args.model and not _offline_settings(args).ollama.model:
        raise ConfigError("--model: no model is configured ([ollama] model)")
    settings, knowledge, analyzer, redact = _offline(args, model=args.model)
    # Logs (model calls, retries) go to stderr: stdout is the report, --json must stay parseable.
    logs.setup(settings.logging.level, settings.logging.format, redact=redact)
    k = knowledge()
    try:
        samples = load_corpus(args.corpus, domains=k.catalog.domains)
    except CorpusError as exc:
        print(f"hefestus: bad corpus:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG

    def classify(text: str) -> Classification:  # the daemon's path: routing, then dictionaries
        return k.analyze(text, args.domain) if args.domain else k.classify(problem_from_text(text))

    def suggest(text: str, c: Classification) -> Suggestion | None:
        if not analyzer.wants_model(c):
            return None
        return analyzer.suggest([(problem_from_text(text), c)], remember=False)[0]

    try:
        report = evaluate(samples, classify, suggest=suggest if args.model else None)
    finally:
        analyzer.close()
    if args.json:
        out = report.as_dict()
        if args.model and "model" in out:
            # Whatever counters the analyzer keeps (bad answers, gate rejections...), as they are.
            stats = dataclasses.asdict(analyzer.stats)
            out["model"]["analyzer_stats"] = {n: v for n, v in stats.items() if isinstance(v, int | float)}
        print(json.dumps(out, indent=2))
    else:
        print(format_table(report))
    if args.misses:
        for o in misses(report):
            print(redact(f"{o.sample.origin}: {o.sample.domain} -> {o.got}/{o.category or '-'}: "
                         f"{o.sample.text[:160]!r}"), file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def _check(settings: Settings) -> int:
    from hefestus.app.build import checks

    ok = True
    for status, what, detail in checks(settings):
        ok = ok and status != "FAIL"
        print(f"[{status:>4}] {what}{': ' + detail if detail else ''}")
    return EXIT_OK if ok else EXIT_FAIL


def _remediation(settings: Settings, args: argparse.Namespace) -> int:
    from hefestus.app.build import open_store
    from hefestus.remediation.remediator import audit_lines

    state = open_store(settings)
    try:
        print(f"mode: {settings.remediation.mode}")
        lines = audit_lines(state.remediations, args.limit, eventid=args.event)
        for text in lines:
            print(text)
        if not lines:
            print("(no remediation decisions yet)")
    finally:
        state.close()
    return EXIT_OK


def _state(settings: Settings, args: argparse.Namespace) -> int:
    from hefestus.app.build import leader_line, open_store

    if args.state_command == "migrate":
        return _migrate(settings, args.to)
    state = open_store(settings)
    try:
        print(f"backend: {state.database.dialect} {state.database.describe()}")
        lead = leader_line(state, settings)
        if lead:
            print(f"leader: {lead}")
        print(f"cursor: {state.ledger.cursor}")
        for e in state.ledger.recent(args.limit, args.state):
            what = f"{e.domain}/{e.category or 'unclassified'}" if e.domain else "-"
            print(f"{e.eventid:>10}  {e.state:<8} {what:<40} {e.detail}")
    finally:
        state.close()
    return EXIT_OK


def _migrate(settings: Settings, url: str) -> int:
    from hefestus.app.build import open_store
    from hefestus.config.sections import POSTGRESQL_SCHEMES
    from hefestus.state import open_state
    from hefestus.state.transfer import copy_state

    if not url.startswith(POSTGRESQL_SCHEMES):
        print("hefestus: state migrate --to: a postgresql://user@host:port/dbname URL", file=sys.stderr)
        return EXIT_CONFIG
    source = open_store(settings)
    try:
        target = open_state(url)
        try:
            counts = copy_state(source.database, target.database)
        finally:
            target.close()
    finally:
        source.close()
    print(f"copied {source.database.describe()} -> {target.database.describe()}")
    for table, n in counts.items():
        print(f"{table:<22}{n:>10}")
    print("now set [state] url (or HEFESTUS_STATE_URL) to the target and restart Hefestus")
    return EXIT_OK


def _unclassified(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from hefestus.analysis.teach import draft, listing, parse_since
    from hefestus.app.build import open_store

    try:
        since = time.time() - parse_since(args.since)
    except ValueError as exc:
        print(f"hefestus: --since: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    redact = Redactor(settings.redaction.patterns)  # samples were redacted when stored; today's rules too
    state = open_store(settings)
    try:
        kinds = [dataclasses.replace(k, sample=redact(k.sample))
                 for k in state.unclassified.kinds(since=since, limit=args.limit)]
    finally:
        state.close()
    if not kinds:
        print(f"(no unclassified events in the last {args.since})")
    # Not the printed draft: redacting its regex could turn a `\\S+` into a marker.
    for text in ([draft(k) for k in kinds] if args.draft else listing(kinds)):
        print(text)
    return EXIT_OK
