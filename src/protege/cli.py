"""The `protege` command line: a thin layer over the library. Each command's docstring is its help."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.console import Console
from rich.table import Table

from protege.config import ConfigError, load_settings
from protege.store import CallFilter

app = typer.Typer(help="protege: log your agent's LLM calls and turn the recurring ones into small specialist models.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
logs_app = typer.Typer(help="Read the call log.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage gateway API keys.", no_args_is_help=True)
app.add_typer(logs_app, name="logs")
models_app = typer.Typer(help="The small models protege can serve and distil into.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
flywheel_app = typer.Typer(help="The loop: curate, analyze, select, train, evaluate and gate, again and again.",
                           no_args_is_help=True)
app.add_typer(flywheel_app, name="flywheel")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="Settings file (default $PROTEGE_HOME/protege.toml).")]
DatabaseOpt = Annotated[Optional[str], typer.Option("--database", help="SQLite path or postgresql://user:password@host/db URL (default $PROTEGE_DATABASE_URL, else $PROTEGE_HOME/protege.db).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output (stable; see docs/cli.md).")]
WorkloadOpt = Annotated[Optional[str], typer.Option(help="Only this workload.")]
SinceOpt = Annotated[Optional[str], typer.Option(help="Only calls at or after this time (ISO date or Unix time).")]
UntilOpt = Annotated[Optional[str], typer.Option(help="Only calls before this time (ISO date or Unix time).")]


def fail(message: str) -> None:
    err.print(f"[bold red]Error:[/] {message}")
    raise typer.Exit(1)


def _settings(config: Path | None = None, **overrides):
    try:
        return load_settings(config, **overrides)
    except ConfigError as e:
        fail(str(e))


def _store(database: str | None, config: Path | None = None):
    try:
        return _settings(config).open_store(database)
    except (RuntimeError, ValueError) as e:
        fail(str(e))


def _time(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        fail(f"{flag} {value!r} is neither a Unix time nor an ISO date such as 2026-01-31 or 2026-01-31T12:00.")


def _filter(workload: str | None, since: str | None, until: str | None) -> CallFilter:
    return CallFilter(workload=workload, since=_time(since, "--since"), until=_time(until, "--until"))


@app.command()
def serve(
    upstream: Annotated[Optional[str], typer.Option(help="Base URL of the OpenAI-compatible upstream, e.g. https://api.openai.com/v1.")] = None,
    upstream_key_env: Annotated[Optional[str], typer.Option(help="Environment variable with the upstream's API key.")] = None,
    host: Annotated[Optional[str], typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to listen on (default 8787).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes sharing the port (uvicorn workers; a dead one is restarted). They share the database: SQLite on this host, PostgreSQL for several hosts.")] = None,
    local: Annotated[bool, typer.Option(help="Answer requests for local models and specialists (`protege models list`) itself.")] = True,
    open_mode: Annotated[bool, typer.Option("--open", help="Open mode: anyone may call and read the logs, even if keys exist (local use).")] = False,
    allow_open_network: Annotated[bool, typer.Option(help="Allow open mode on a non-loopback --host (the whole log is then readable from the network).")] = False,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run the OpenAI-compatible gateway: forward chat completions upstream and log every call."""
    import uvicorn

    from protege.gateway.app import LOCAL_ENV, SETTINGS_ENV, create_app, local_models_for
    from protege.gateway.auth import KeyRing, is_loopback, open_network_refusal

    settings = _settings(config, upstream=upstream, upstream_key_env=upstream_key_env, host=host, port=port,
                         workers=workers, database=database, open_mode=open_mode or None,
                         allow_open_network=allow_open_network or None)
    g = settings.gateway
    with _store(settings.database, config) as store:
        is_open = KeyRing(store, open_mode=g.open_mode).is_open
    if is_open and not (is_loopback(g.host) or g.allow_open_network):
        fail(open_network_refusal(g.host))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    err.print(f"protege gateway on http://{g.host}:{g.port}/v1  (upstreams: "
              f"{', '.join(f'{u.name}={u.display_url}' for u in settings.upstreams) or 'none'})")
    common = dict(host=g.host, port=g.port, log_level="warning", access_log=False, http="httptools",
                  loop="uvloop", timeout_keep_alive=30)
    if g.workers > 1:
        os.environ[SETTINGS_ENV] = settings.model_dump_json()  # each worker builds its own app from these
        os.environ[LOCAL_ENV] = "1" if local else "0"
        uvicorn.run("protege.gateway.app:app_from_env", factory=True, workers=g.workers, **common)
    else:
        uvicorn.run(create_app(settings, local_models=local_models_for(settings) if local else None), **common)


@app.command()
def replay(
    traces: Annotated[list[Path], typer.Argument(help="JSONL (or .jsonl.gz) files of {'request', 'response'} pairs.")],
    host: str = "127.0.0.1",
    port: int = 8799,
) -> None:
    """Run a replay upstream: an OpenAI-compatible server answering with recorded responses."""
    import uvicorn

    from protege.gateway.replay import Recordings, create_replay_app

    missing = [str(p) for p in traces if not p.exists()]
    if missing:
        fail(f"No such trace file: {', '.join(missing)}")
    recordings = Recordings.from_files(*traces)
    err.print(f"replaying {len(recordings)} recorded calls on http://{host}:{port}/v1")
    uvicorn.run(create_replay_app(recordings), host=host, port=port, log_level="warning", access_log=False,
                http="httptools", loop="uvloop")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSONL file (optionally .gz): {'request','response','metadata'} or {'messages'} lines.")],
    workload: Annotated[Optional[str], typer.Option(help="Workload for lines that carry none.")] = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Import OpenAI-style JSONL logs or chat fine-tuning JSONL; bad lines are reported and skipped."""
    from protege.store.jsonl import import_jsonl

    if not file.is_file():
        fail(f"{file} is {'a folder' if file.is_dir() else 'not there'}; pass a JSONL file (optionally .gz).")
    settings = _settings(config)
    with _store(database, config) as store:
        try:
            report = import_jsonl(store, file, prices=settings.price_table(), workload=workload)
        except (OSError, EOFError) as e:  # unreadable, or a .gz that is not gzip
            fail(f"Cannot read {file}: {e}. Pass a JSONL file, gzip-compressed only if it ends in .gz.")
    if json:
        console.print_json(data=report.to_dict())
    if report.read and len(report.bad_lines) == report.read:
        fail(f"None of the {report.read} lines of {file} is a call (line 1: {report.bad_lines[0][1]}); is it JSONL "
             "of {{'request', 'response'}} or {{'messages'}} objects?")
    if json:
        return
    console.print(f"read {report.read} lines: {report.added} calls added, {report.duplicates} already stored, "
                  f"{len(report.bad_lines)} bad")
    for n, reason in report.bad_lines[:20]:
        err.print(f"  line {n}: {reason}")
    if len(report.bad_lines) > 20:
        err.print(f"  ... and {len(report.bad_lines) - 20} more (use --json for all)")


@app.command()
def export(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file (default: standard output).")] = None,
    format: Annotated[str, typer.Option(help="'chat' (fine-tuning messages) or 'raw' (stored calls).")] = "chat",
    workload: WorkloadOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export logged calls as chat fine-tuning JSONL, or with --format raw one stored call per line."""
    from protege.store.jsonl import iter_export

    if format not in ("chat", "raw"):
        fail(f"Unknown --format {format!r}; use chat or raw.")
    flt = _filter(workload, since, until)
    with _store(database, config) as store:
        n = 0
        try:
            with open(out, "wb") if out else contextlib.nullcontext(sys.stdout.buffer) as sink:
                for line in iter_export(store, flt, format):
                    sink.write(line)
                    n += 1
                sink.flush()
        except OSError as e:
            fail(f"Cannot write {out or 'to standard output'}: {e.strerror or e}. Pass -o with a file in a folder "
                 "that exists and has space.")
    if out:
        err.print(f"wrote {n} lines to {out}")


@logs_app.command("list")
def logs_list(
    limit: int = 20,
    workload: WorkloadOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """The most recent calls, newest first."""
    with _store(database, config) as store:
        records = list(store.iter_calls(CallFilter(workload=workload), limit=limit, newest_first=True))
    if json:
        cols = ("id", "ts", "source", "workload", "client", "requested_model", "served_by", "status",
                "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "task_id")
        sys.stdout.write(orjson.dumps([{c: getattr(r, c) for c in cols} for r in records]).decode() + "\n")
        return
    table = Table("id", "time", "workload", "model", "served by", "status", "tokens in/out", "cost $", "ms")
    for r in records:
        table.add_row(r.id, datetime.fromtimestamp(r.ts).strftime("%Y-%m-%d %H:%M:%S"), r.workload or "-",
                      r.requested_model or "-", r.served_by or "-", str(r.status),
                      f"{r.prompt_tokens or '?'}/{r.completion_tokens or '?'}",
                      "?" if r.cost_usd is None else f"{r.cost_usd:.5f}",
                      "-" if r.latency_ms is None else f"{r.latency_ms:.0f}")
    console.print(table)


@logs_app.command("show")
def logs_show(call_id: str, database: DatabaseOpt = None, config: ConfigOpt = None) -> None:
    """One call with its raw request and response, as JSON."""
    with _store(database, config) as store:
        record = store.get_call(call_id)
    if record is None:
        fail(f"No call with id {call_id!r}; `protege logs list` shows recent ids.")
    sys.stdout.write(orjson.dumps(record.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")


def print_stats(stats: dict) -> None:
    t = stats["total"]
    console.print(f"[bold]{t['calls']}[/] calls, {t['errors']} errors, {t['prompt_tokens']:,} prompt + "
                  f"{t['completion_tokens']:,} completion tokens, [bold]${t['cost_usd']:.4f}[/]"
                  + (f" ({t['calls_unknown_cost']} calls of unknown price)" if t["calls_unknown_cost"] else ""))
    for key, title in (("by_task_label", "task (client label)"), ("by_workload", "workload"), ("by_model", "model")):
        rows = stats[key]
        if not rows or (len(rows) == 1 and rows[0]["name"] is None):
            continue
        table = Table(title, "calls", "share", "tokens in", "tokens out", "cost $", "mean ms", title=f"by {title}")
        for row in rows:
            table.add_row(str(row["name"] if row["name"] is not None else "-"), str(row["calls"]),
                          f"{row['calls'] / max(t['calls'], 1):.1%}", f"{row['prompt_tokens']:,}",
                          f"{row['completion_tokens']:,}", f"{row['cost_usd']:.4f}",
                          "-" if row["mean_latency_ms"] is None else f"{row['mean_latency_ms']:.1f}")
        console.print(table)


@logs_app.command("stats")
def logs_stats(
    workload: WorkloadOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Totals of calls, tokens and cost, broken down by task label, workload and model."""
    flt = _filter(workload, since, until)
    with _store(database, config) as store:
        stats = store.stats(flt)
    if json:
        console.print_json(data=stats)
    else:
        print_stats(stats)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key (shown as the caller in logs).")],
    role: Annotated[str, typer.Option(help="'client' (completions only) or 'admin' (also reads logs).")] = "client",
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    from protege.gateway.auth import create_key

    with _store(database, config) as store:
        try:
            key = create_key(store, name, role)
        except ValueError as e:
            fail(str(e))
    err.print(f"Created {role} key {name!r}. Store it now; it cannot be shown again:")
    print(key)


@keys_app.command("list")
def keys_list(database: DatabaseOpt = None, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """The keys with their roles and state (never the keys themselves)."""
    with _store(database, config) as store:
        keys = store.list_keys()
    rows = [{"name": k.name, "role": k.role, "created_ts": k.created_ts, "revoked_ts": k.revoked_ts} for k in keys]
    if json:
        console.print_json(data=rows)
        return
    table = Table("name", "role", "created", "state")
    for k in keys:
        table.add_row(k.name, k.role, datetime.fromtimestamp(k.created_ts).strftime("%Y-%m-%d %H:%M"),
                      "active" if k.is_active else "revoked")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: str,
    force: Annotated[bool, typer.Option(help="Revoke even the last active admin key.")] = False,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a key by name; running gateways stop accepting it within seconds (they never fall back to open mode)."""
    with _store(database, config) as store:
        active = [k for k in store.list_keys() if k.is_active]
        key = next((k for k in active if k.name == name), None)
        if key is None:
            fail(f"No active key named {name!r}; `protege keys list` shows them.")
        last_admin = key.role == "admin" and sum(k.role == "admin" for k in active) == 1
        if last_admin and not force:
            fail(f"{name!r} is the last active admin key: without it nobody can read the logs (the gateway stays "
                 "keyed, it does not fall back to open mode). Create another first with "
                 "`protege keys create --name NAME --role admin`, or pass --force.")
        store.revoke_key(name)
    if last_admin:
        err.print(f"[bold yellow]Warning:[/] {name!r} was the last active admin key; nobody can read the logs now.")
    err.print(f"Revoked {name!r}.")


@keys_app.command("new-data-key")
def keys_new_data_key(
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the key to this file (created with mode 0600, "
                                                "never overwritten) instead of printing it.")] = None,
) -> None:
    """Create a data key for encryption at rest (base64 of 32 random bytes). protege reads it from
    $PROTEGE_DATA_KEY, $PROTEGE_DATA_KEY_FILE, [encryption] key_file or $PROTEGE_HOME/data.key; from then on
    every call is sealed in the store and the spool. Keep a copy: without it the log cannot be read."""
    from protege.store.crypto import new_key_text

    key = new_key_text()
    if out is None:
        print(key)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{out} already exists; a data key is never overwritten (the log sealed with it would be lost). "
             "Pick another --out, or move the old key aside once `protege keys rotate-data` no longer needs it.")
    except OSError as e:
        fail(f"Cannot create {out}: {e.strerror or e}. Pass --out with a writable path.")
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    err.print(f"Wrote a new data key to {out}. Keep a copy somewhere safe: without it the log cannot be read.")


@keys_app.command("rotate-data")
def keys_rotate_data(database: DatabaseOpt = None, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Re-seal every logged call with the current data key ($PROTEGE_DATA_KEY or the key file), reading old
    rows with the previous key in $PROTEGE_OLD_DATA_KEY (or $PROTEGE_OLD_DATA_KEY_FILE); calls logged before
    encryption was turned on are sealed too. Afterwards only the new key is needed."""
    from protege.store.crypto import DataKeyError

    with _store(database, config) as store:
        try:
            result = store.reseal_calls()
        except DataKeyError as e:
            fail(str(e))
    if json:
        console.print_json(data=result)
        return
    err.print(f"Re-sealed {result['calls']} calls and {result['shadow_results']} shadow results with key "
              f"{result['key_id']}" + (f"; retired key {', '.join(result['retired'])}" if result["retired"] else ""))
    if result["not_resealed"]:
        fail(f"{result['not_resealed']} rows were written under an older key while this ran (a gateway still "
             "sealing with it); restart the gateways with the new key and run this again.")


@app.command()
def forget(
    user: Annotated[Optional[str], typer.Option(help="The end user: a request's `user` (or `safety_identifier`), or "
                                                "its metadata.user_id / metadata.user.")] = None,
    match: Annotated[Optional[str], typer.Option(help="Text anywhere in the request, answer, error or metadata "
                                                 "(case-insensitive; works with encryption on).")] = None,
    before: Annotated[Optional[str], typer.Option(help="Calls that started before this time (ISO date or Unix time).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be deleted.")] = False,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Delete calls for good (every given criterion must hold): from the store, from the curated datasets
    `protege curate` wrote, and from answer-reuse specialists; every specialist of their tasks is marked for
    retraining (a `retrain` decision the next `protege flywheel run` acts on)."""
    from protege.retention import Selection, SelectionError
    from protege.retention import forget as forget_calls

    try:
        selection = Selection(user=user, match=match, before=_time(before, "--before"))
    except SelectionError as e:
        fail(str(e))
    with _store(database, config) as store:
        report = forget_calls(store, selection, dry_run=dry_run)
    if json:
        sys.stdout.buffer.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
        return
    verb = "Would delete" if dry_run else "Deleted"
    console.print(f"{verb} {len(report.calls)} calls" + (f": {', '.join(report.calls[:20])}" if report.calls else "")
                  + (f" ... and {len(report.calls) - 20} more (--json lists all)" if len(report.calls) > 20 else ""))
    for path, n in report.curated.items():
        console.print(f"  curated: {n} lines removed from {path}")
    for folder, n in report.reuse_entries.items():
        console.print(f"  answer reuse: {n} entries removed from {folder}")
    for task, folders in report.retrain.items():
        what = ", ".join(folders) or "no specialist yet"
        console.print(f"  {task}: {report.by_task.get(task, 0)} calls; {'would mark' if dry_run else 'marked'} for "
                      f"retraining: {what}")


@app.command()
def demo(
    home: Annotated[Path, typer.Option(help="Folder for the demo's store, specialists and logs (emptied first).")] = Path("protege-demo"),
    calls: Annotated[Optional[int], typer.Option(help="Use only the first N calls of the traces.")] = None,
    max_tasks: Annotated[Optional[int], typer.Option(help="Tasks to build specialists for (most valuable first; default: all).")] = None,
    max_train_calls: Annotated[Optional[int], typer.Option(help="Training calls per LoRA specialist (default: all).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop each training run after this many steps.")] = None,
    eval_calls: Annotated[int, typer.Option(help="Held-out calls per task to evaluate and calibrate on.")] = 30,
    min_examples: Annotated[int, typer.Option(help="Held-out calls the promotion gate needs.")] = 30,
    shadow_calls: Annotated[int, typer.Option(help="At most this many live calls while new specialists are in shadow "
                                              "(reviewed every 40 calls; the phase ends when none is left in shadow); one still in shadow "
                                              "after them is reviewed every this many calls.")] = 200,
    embedder: Annotated[str, typer.Option(help="'minilm' or 'hashing' (no model, faster, for tests).")] = "minilm",
    concurrency: Annotated[int, typer.Option(help="Parallel client connections.")] = 16,
    lora_budget_s: Annotated[float, typer.Option(help="Seconds of LoRA training in the flywheel pass.")] = 540,
    traces: Annotated[Optional[Path], typer.Option(help="Your own calls instead of the bundled traces: JSONL(.gz) of "
                                                        "{'request', 'response'} lines, replayed in file order.")] = None,
    licence: Annotated[Optional[list[str]], typer.Option(help="A licence base models may have (repeatable; default: "
                                                              "permissive licences only).")] = None,
    kind: Annotated[Optional[list[str]], typer.Option(help="A specialist kind to try (repeatable; default: reuse, "
                                                           "classifier, lora; add incontext to try in-context examples "
                                                           "too, which takes minutes more on a CPU).")] = None,
    json: JsonOpt = False,
) -> None:
    """The main job: the whole loop on the bundled agent traces (or --traces FILE), from logging to specialists
    serving, with the savings."""
    from protege.demo import DemoOptions, run_demo

    opts = DemoOptions(calls=calls, max_tasks=max_tasks, max_train_calls=max_train_calls, max_steps=max_steps,
                       eval_calls=eval_calls, min_examples=min_examples, shadow_calls=shadow_calls,
                       embedder=embedder, concurrency=concurrency, traces=traces, licences=licence,
                       lora_budget_s=lora_budget_s, **({"kinds": tuple(kind)} if kind else {}))
    try:
        summary = run_demo(home, opts, console=err if json else console)
    except RuntimeError as e:
        fail(str(e))
    if json:
        sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")


@app.command()
def analyze(
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML report here.")] = None,
    assignments: Annotated[Optional[Path], typer.Option("--assignments", help="Write one JSON line per call: {call_id, task_id}.")] = None,
    embedder: Annotated[str, typer.Option(help="'minilm' (needs protege[analyze]) or 'hashing' (no model).")] = "minilm",
    min_task_size: Annotated[Optional[int], typer.Option(help="Fewest calls a task needs (default: max(10, 1% of calls)).")] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="Task catalog file (default $PROTEGE_HOME/tasks.json).")] = None,
    workload: WorkloadOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Discover the recurring tasks in the log, give them stable ids, and report volume, spend and SLM fit."""
    from protege.cluster.analysis import analyze_calls
    from protege.cluster.discover import DiscoveryOptions
    from protege.report.analysis import render_html, tasks_table

    flt = _filter(workload, since, until)
    with _store(database, config) as store:
        records = list(store.iter_calls(flt))
        if not records:
            fail("No calls in the log yet: log some through `protege serve`, or `protege import FILE`.")
        try:
            with err.status(f"analyzing {len(records)} calls...") as status:
                result = analyze_calls(records, catalog_path=catalog, embedder=embedder,
                                       options=DiscoveryOptions(min_task_size=min_task_size),
                                       progress=lambda msg: status.update(msg))
        except (ImportError, ValueError) as e:
            fail(str(e))
        store.set_task_ids(result.assignments)
    data = result.to_dict()
    if assignments:
        with open(assignments, "wb") as f:
            for cid, tid in result.assignments.items():
                f.write(orjson.dumps({"call_id": cid, "task_id": tid}) + b"\n")
    if html:
        html.write_text(render_html(data), encoding="utf-8")
        err.print(f"wrote {html}")
    if json:
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    else:
        console.print(tasks_table(data))


@app.command()
def curate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the per-task train/test JSONL and report.json.")] = Path("curated"),
    test_share: Annotated[float, typer.Option(help="Held-out share per task.")] = 0.2,
    time_ordered: Annotated[bool, typer.Option(help="Train on older calls, test on newer ones.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the (hash-ordered) split.")] = 0,
    fake: Annotated[bool, typer.Option(help="Replace PII with realistic fake values instead of <TYPE_n> placeholders.")] = False,
    near_duplicates: Annotated[bool, typer.Option(help="Drop near duplicates (MinHash, Jaccard >= 0.9).")] = True,
    workload: WorkloadOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Scrub PII and secrets, drop failed and duplicate calls, and split each task into train and test sets."""
    from protege.curate.pipeline import curate_calls
    from protege.curate.scrub import Scrubber

    flt = _filter(workload, since, until)
    with _store(database, config) as store:
        try:
            with err.status("curating..."):
                result = curate_calls(store.iter_calls(flt), out, scrubber=Scrubber(mode="fake" if fake else "placeholder"),
                                      near_duplicate_threshold=0.9 if near_duplicates else None,
                                      test_share=test_share, time_ordered=time_ordered, seed=seed)
        except (ImportError, ValueError) as e:
            fail(str(e))
    data = result.to_dict()
    if json:
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        return
    f = data["filters"]
    console.print(f"kept {f['kept']} of {f['total']} calls; dropped: {f['dropped'] or 'none'}")
    console.print(f"scrubbed values: {data['scrubbed'] or 'none'}")
    if not data["splits"]:
        err.print("No call has a task yet: run `protege analyze` first.")
    for task, counts in sorted(data["splits"].items()):
        console.print(f"  {task}: {counts['train']} train / {counts['test']} test")
    console.print(f"wrote {out}/")


def print_eval_table(report) -> None:
    rows = report.table()
    table = Table(*rows[0].keys(), title=f"{report.task}: {report.output_kind}, {report.n_examples} held-out calls")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    console.print(table)


@app.command()
def train(
    task: Annotated[str, typer.Argument(help="Task id (see `protege analyze`), or a task label in --data.")],
    model: Annotated[Optional[str], typer.Option(help="Base SLM from `protege models list` (default: chosen by licence, footprint, context, then a quick probe).")] = None,
    licence: Annotated[Optional[list[str]], typer.Option("--licence", "--license", help="Without --model: a licence the base may have (repeatable; 'permissive' stands for Apache-2.0, MIT, BSD, ...; default: permissive ones only).")] = None,
    max_memory_gb: Annotated[Optional[float], typer.Option(min=0, help="Without --model: the most memory (GiB) the base may need to serve (default: this machine's memory).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Train from this JSONL(.gz) of {request, response, metadata.task} instead of the store.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Specialist folder (default $PROTEGE_HOME/specialists/TASK).")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training calls (early stopping may end sooner).")] = 3,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many optimizer steps.")] = None,
    max_calls: Annotated[Optional[int], typer.Option(help="Use at most this many of the task's calls.")] = None,
    prune: Annotated[bool, typer.Option(help="Leave the prompt parts every call shares out of the specialist's input.")] = True,
    eval_limit: Annotated[int, typer.Option(help="Held-out calls to evaluate on after training (0: skip).")] = 50,
    seed: int = 0,
    database: DatabaseOpt = None,
) -> None:
    """Distil a task's logged calls into a LoRA specialist (resumes if interrupted), then evaluate it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from protege.specialist.examples import task_examples
    from protege.train.commands import train_task
    from protege.train.trainer import TrainConfig

    if model is not None and (licence or max_memory_gb is not None):
        fail("--licence and --max-memory-gb steer the choice of a base model; drop them or drop --model.")
    try:
        config = TrainConfig(epochs=epochs, max_steps=max_steps, seed=seed)
        records = task_examples(task, data=data, store_url=database)[:max_calls] if max_calls else None
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                      TimeRemainingColumn(), console=err) as progress:
            bar = progress.add_task(f"training {task}", total=None, info="")

            def on_progress(p) -> None:
                info = f"step {p.step}/{p.total_steps}" + (f" loss {p.loss:.3f}" if p.loss is not None else "")
                info += (f" val {p.val_loss:.3f}" if p.val_loss is not None else "")
                info += (f" {p.tokens_per_s:,.0f} tok/s" if p.tokens_per_s else "")
                progress.update(bar, total=p.total_steps, completed=p.step, info=f"{p.phase}: {info}")

            outcome = train_task(task, model=model, records=records, data=None if records else data,
                                 store_url=database, out=out, config=config, prune=prune,
                                 evaluate=eval_limit > 0, eval_limit=eval_limit, on_progress=on_progress,
                                 licences=licence or None,
                                 max_memory_bytes=None if max_memory_gb is None else int(max_memory_gb * 2**30))
    except (ValueError, ImportError, FileNotFoundError) as e:
        fail(str(e))
    if model is None and (outcome.folder / "selection.json").is_file():
        chosen = orjson.loads((outcome.folder / "selection.json").read_bytes())["model"]
        err.print(f"base model chosen by selection: {chosen} (evidence in {outcome.folder / 'selection.json'})")
    err.print(f"specialist written to {outcome.folder} ({outcome.result.steps} steps, {outcome.result.wall_s:.0f} s)")
    if outcome.report is not None:
        print_eval_table(outcome.report)


@app.command("eval")
def eval_(
    task: Annotated[str, typer.Argument(help="Task id whose specialist to evaluate.")],
    specialist: Annotated[Optional[Path], typer.Option(help="Specialist folder (default $PROTEGE_HOME/specialists/TASK).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="The JSONL(.gz) the specialist was trained from, if not the store.")] = None,
    limit: Annotated[int, typer.Option(help="Evaluate on at most this many held-out calls.")] = 50,
    few_shot: Annotated[bool, typer.Option(help="Also score the base model with the 3 most similar logged calls in its prompt.")] = False,
    judge_model: Annotated[Optional[str], typer.Option(help="Free-text tasks: also have this LLM grade every answer against the reference (1-5, scaled to 0-1); its score becomes the headline.")] = None,
    upstream: Annotated[Optional[str], typer.Option(help="Base URL of the OpenAI-compatible upstream serving --judge-model (default: protege.toml's upstream for it).")] = None,
    upstream_key_env: Annotated[Optional[str], typer.Option(help="Environment variable with that upstream's API key.")] = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Compare base zero-shot, the specialist and the LLM on the task's held-out calls."""
    from protege.evaluate.commands import eval_task
    from protege.evaluate.judge import JudgeError, LLMJudge

    judge = None
    try:
        if judge_model:
            settings = _settings(config, upstream=upstream, upstream_key_env=upstream_key_env)
            judge = LLMJudge.from_settings(settings, judge_model)
        report = eval_task(task, specialist=specialist, data=data, store_url=database, limit=limit, few_shot=few_shot,
                           judge=judge)
    except (ValueError, ImportError, FileNotFoundError, JudgeError) as e:
        fail(str(e))
    finally:
        if judge is not None:
            judge.close()
    if judge is not None and report.judge is None:
        err.print(f"--judge-model was not used: {task}'s outputs are {report.output_kind}, and the judge grades free text.")
    elif judge is not None:
        err.print(f"judge {judge.model}: {judge.calls} calls, {judge.prompt_tokens:,} prompt + "
                  f"{judge.completion_tokens:,} completion tokens")
    if json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        print_eval_table(report)


@models_app.command("list")
def models_list(json: JsonOpt = False) -> None:
    """The model catalog: built-in SLMs plus those declared in $PROTEGE_HOME/models.toml."""
    from protege.models.commands import list_models

    rows = list_models()
    if json:
        console.print_json(data=rows)
        return
    table = Table("name", "params", "context", "licence", "file", "memory", "source")
    mb = lambda n: f"{n / 1e6:,.0f} MB" if n else "-"  # noqa: E731
    for m in rows:
        table.add_row(m["name"], f"{m['params'] / 1e6:,.0f}M" if m.get("params") else "-", str(m.get("context_length", "-")),
                      str(m.get("license", "-")), mb(m.get("file_size")), mb(m.get("memory_estimate")), str(m.get("source", "-")))
    console.print(table)


@models_app.command("show")
def models_show(name: str) -> None:
    """Everything protege knows about one model, as JSON (the file is checked on the way)."""
    from protege.models.commands import show_model
    from protege.models.errors import ModelError

    try:
        info = show_model(name)
    except ModelError as e:
        fail(str(e))
    console.print_json(data=info)


@app.command()
def report(
    since: Annotated[Optional[str], typer.Option(help="Only calls of the last N hours (a number) or since an ISO date.")] = None,
    until: UntilOpt = None,
    buckets: Annotated[int, typer.Option(help="Points of the time series.")] = 24,
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write the self-contained HTML dashboard here.")] = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Savings against an all-LLM counterfactual, specialist share, quality, latency per route and gate decisions."""
    from protege.report.savings import build_report, render_html, render_terminal

    try:
        start = None if since is None else datetime.now().timestamp() - 3600 * float(since)
    except ValueError:
        start = _time(since, "--since")
    with _store(database, config) as store:
        data = build_report(store, since=start, until=_time(until, "--until"), buckets=buckets)
    if html:
        html.write_text(render_html(data), encoding="utf-8")
        err.print(f"wrote {html}")
    if json:
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        render_terminal(data, console)


@app.command()
def tasks(
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Each task's route (mode, specialist kind, confidence threshold), its latest gate decision and the
    specialist kinds tried (`--json`: every candidate's evidence; `protege report` explains them)."""
    from protege.cluster.catalog import TaskCatalog
    from protege.report.candidates import latest_gates, specialist_kind

    with _store(database, config) as store:
        routes, decisions = store.routes(), store.decisions(limit=200)
        counts = {row["name"]: row["calls"] for row in store.stats()["by_task"]}
    catalog = TaskCatalog.load()
    gates = latest_gates(decisions)
    ids = sorted(set(catalog.tasks) | set(routes), key=lambda t: -counts.get(t, 0))
    rows = []
    for task_id in ids:
        route = routes.get(task_id)
        latest = next((d for d in decisions if d.task_id == task_id), None)
        rows.append({"task": task_id, "calls": counts.get(task_id, 0), "mode": route.mode if route else "off",
                     "specialist": route.specialist if route else None,
                     "kind": specialist_kind(route.specialist if route else None, decisions),
                     "min_confidence": route.min_confidence if route else None,
                     "candidates": gates.get(task_id, {}).get("candidates", []),
                     "last_decision": None if latest is None else {
                         "action": latest.action, "mode": latest.mode_to, "reason": latest.reason,
                         "actor": latest.actor, "ts": latest.ts}})
    if json:
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        return
    if not rows:
        err.print("No tasks yet: run `protege analyze` (or `protege flywheel run`).")
        return
    table = Table("task", "calls", "mode", "threshold", "last decision")
    for r in rows:
        d = r["last_decision"]
        table.add_row(r["task"], str(r["calls"]), r["mode"] + (f" ({r['kind']})" if r["kind"] else ""),
                      "-" if r["min_confidence"] is None else f"{r['min_confidence']:.3f}",
                      "-" if d is None else f"{d['action']} → {d['mode']} ({d['actor']}): {d['reason']}")
    console.print(table)


@app.command()
def promote(
    task: Annotated[str, typer.Argument(help="Task id (see `protege tasks`).")],
    mode: Annotated[str, typer.Option(help="off, shadow, canary or on.")],
    specialist: Annotated[Optional[Path], typer.Option(help="Specialist folder (default: the task's current one).")] = None,
    canary_share: Annotated[Optional[float], typer.Option(help="Share of calls the specialist answers in canary mode.")] = None,
    min_confidence: Annotated[Optional[float], typer.Option(help="Fall back to the LLM below this confidence.")] = None,
    reason: Annotated[str, typer.Option(help="Recorded with the decision.")] = "set by hand",
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set a task's routing mode by hand (recorded like a gate decision; a running gateway picks it up)."""
    from protege.route.gates import set_mode
    from protege.store import MODES

    if mode not in MODES:
        fail(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    with _store(database, config) as store:
        try:
            route = set_mode(store, task, mode, specialist=str(specialist.resolve()) if specialist else None,
                             min_confidence=min_confidence, canary_share=canary_share, reason=reason)
        except ValueError as e:
            fail(str(e))
    err.print(f"{task}: {route.mode} (specialist {route.specialist})")


@flywheel_app.command("run")
def flywheel_run(
    max_tasks: Annotated[Optional[int], typer.Option(help="Train at most this many tasks (most valuable first).")] = None,
    task: Annotated[Optional[list[str]], typer.Option(help="Only this task id (repeatable).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Base model for every specialist (default: chosen per task).")] = None,
    min_calls: Annotated[int, typer.Option(help="Fewest calls a task needs.")] = 40,
    max_train_calls: Annotated[Optional[int], typer.Option(help="Training calls per LoRA specialist (default: all).")] = None,
    eval_calls: Annotated[int, typer.Option(help="Held-out calls to evaluate and calibrate a LoRA specialist on.")] = 40,
    kind: Annotated[Optional[list[str]], typer.Option(help="Only this specialist kind: reuse, classifier, incontext, lora "
                                                           "(repeatable; default: every kind, cheapest first).")] = None,
    licence: Annotated[Optional[list[str]], typer.Option(help="A licence the base model may have (repeatable; "
                                                              "default: permissive licences only).")] = None,
    train_text: Annotated[bool, typer.Option(help="Also train LoRA specialists for free-text tasks.")] = False,
    lora_budget_s: Annotated[Optional[float], typer.Option(help="Start no LoRA training after this many seconds of "
                                                                "them in the pass (most saving per token first).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for training and evaluation (default: all "
                                                        "cores but one, which stays with serving).")] = None,
    epochs: int = 3,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop training after this many optimizer steps.")] = None,
    embedder: Annotated[str, typer.Option(help="'minilm' or 'hashing'.")] = "minilm",
    review_only: Annotated[bool, typer.Option(help="Only judge live evidence (shadow → on, demotions).")] = False,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """One pass: review live routes, analyze, curate, train, evaluate as served and gate."""
    from protege.flywheel import FlywheelOptions, review_routes, run_pass

    settings = _settings(config)
    say = err.print
    opts = FlywheelOptions(min_calls=min_calls, max_tasks=max_tasks, tasks=task, model=model,
                           max_train_calls=max_train_calls, eval_calls=eval_calls, epochs=epochs,
                           max_steps=max_steps, embedder=embedder, kinds=kind, licences=licence,
                           train_text=train_text, lora_budget_s=lora_budget_s, threads=threads)
    with _store(database, config) as store:
        try:
            data = ({"reviewed": review_routes(store, settings, say)} if review_only
                    else run_pass(store, settings, opts, say=say).to_dict())
        except (ImportError, ValueError, FileNotFoundError) as e:
            fail(str(e))
    if json:
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


@flywheel_app.command("watch")
def flywheel_watch(
    interval: Annotated[float, typer.Option(help="Seconds between live reviews.")] = 60.0,
    min_new_calls: Annotated[int, typer.Option(help="Run a training pass when this many new calls arrived.")] = 200,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Keep the loop running: review live routes every --interval, retrain in a child process as calls arrive."""
    from protege.flywheel import watch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    watch(database, interval_s=interval, min_new_calls=min_new_calls, config=str(config) if config else None,
          say=err.print)


def main() -> None:
    from protege.store.crypto import DataKeyError

    try:
        app()
    except DataKeyError as e:  # a sealed value that does not open, met mid-command: the message names the fix
        err.print(f"[bold red]Error:[/] {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
