"""`storagectl cache`: Redis cache operations for incidents (core: storagectl.cache), on any redis
backend (`-b NAME`), one server or a cluster. Keys are bytes: arguments are taken as typed (non-UTF-8
bytes included), tables and lines show them escaped, JSON gives them escaped and in base64."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from storagectl.cli import complete
from storagectl.cli.output import confirm, note, print_json, print_table
from storagectl.cli.state import AppState, DryRunOption, OutputFormat, OutputOption, PlainUsage, YesOption, state_of

app = typer.Typer(no_args_is_help=True, help="Redis cache operations: keys, safe invalidation, hit rates, "
                  "pub/sub, keyspace watch, warm-up from a backup.")


def _duration(value: str) -> float:
    from storagectl.config.types import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _ttl_ms(seconds: float, what: str) -> int:
    """A TTL in milliseconds, refused (exit 2) below 1 ms: a TTL of 0 would delete the key at once."""
    from storagectl.errors import UsageError

    ttl_ms = round(seconds * 1000)
    if ttl_ms < 1:
        raise UsageError(f"{what} must be at least 1ms; a TTL of 0 would delete the key",
                         hint="Try: storagectl cache del KEY to delete it, or a TTL such as 30s")
    return ttl_ms


def _fraction(value: str | float) -> float:
    """``10%`` or ``0.1``."""
    if isinstance(value, float):  # the default
        return value
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a share such as 10% or 0.1") from None
    if not 0 <= number <= 1:
        raise typer.BadParameter(f"{value!r} must be between 0% and 100%")
    return number


BackendOption = Annotated[str | None, typer.Option("--backend", "-b", metavar="BACKEND", show_default=False,
                                                   help="A redis backend. Default: the config's only one.",
                                                   autocompletion=complete.backend_names)]
KeyArgument = Annotated[str, typer.Argument(metavar="KEY", help="The key, as typed (any bytes).")]
RateOption = Annotated[float | None, typer.Option("--rate", min=1.0, metavar="OPS",
                                                  help="At most this many keys a second.")]
TypeOption = Annotated[str | None, typer.Option(
    "--type", metavar="TYPE", help="Only keys of this type: string, hash, list, set, zset, stream.")]


def _backend(ctx: typer.Context, name: str | None) -> Any:
    from storagectl.cache.nodes import cache_backend

    return cache_backend(state_of(ctx).config, name)


def _key(text: str) -> bytes:
    from storagectl.cache.keyfmt import arg_bytes

    return arg_bytes(text)


def _emit(state: AppState, output: OutputFormat | None, data: dict[str, Any], line: str) -> None:
    if state.format(output) is OutputFormat.json:
        print_json(data)
    else:
        state.out.print(line, markup=False, highlight=False)


def _ttl_text(ttl_ms: int | None) -> str:
    return "no expiry" if ttl_ms is None else f"{ttl_ms / 1000:g}s"


# -- single keys ------------------------------------------------------------------------------------
@app.command("get", cls=PlainUsage)
def get(ctx: typer.Context, key: KeyArgument, backend: BackendOption = None,
        limit: Annotated[int, typer.Option("--limit", min=1, metavar="N",
                                           help="Elements shown of a collection.")] = 100,
        type_: Annotated[str | None, typer.Option("--type", metavar="TYPE",
                                                  help="Fail (exit 1) unless the key is of this type.")] = None,
        raw: Annotated[bool, typer.Option("--raw", help="A string's bytes exactly, nothing else.")] = False,
        pretty: Annotated[bool, typer.Option("--pretty", help="Indent a string that holds JSON.")] = False,
        output: OutputOption = None) -> None:
    """Show a key's value by its type (string, hash, list, set, zset, stream), with TTL and length."""
    from storagectl.cache import keys
    from storagectl.cache.nodes import key_client, translated
    from storagectl.errors import UsageError

    keys.check_type(type_)  # before connecting: exit 2 even when the server is down
    state, target = state_of(ctx), _backend(ctx, backend)
    with key_client(target) as client, translated(target, "get"):
        value = keys.get(client, _key(key), limit=limit, expect=type_)
    if raw:
        if value.type != "string":
            raise UsageError(f"--raw prints a string's bytes; this key is a {value.type}",
                             hint="Try: -o json (base64 of every element)")
        sys.stdout.buffer.write(value.value)
        sys.stdout.flush()
    elif state.format(output) is OutputFormat.json:
        print_json(value.to_dict())
    else:
        _render_value(state, value, pretty)


def _render_value(state: AppState, value: Any, pretty: bool) -> None:
    from storagectl.cache.keyfmt import escape

    shown = f" (first {value.shown})" if value.truncated else ""
    unit = ("byte" if value.type == "string" else "element") + ("" if value.length == 1 else "s")
    state.out.print(f"{escape(value.key)}  {value.type}, {value.length:,} {unit}{shown}, TTL {_ttl_text(value.ttl_ms)}",
                    markup=False, highlight=False)
    if value.type == "string":
        state.out.print(_pretty_json(value.value) if pretty else escape(value.value), markup=False, highlight=False)
    elif value.type == "hash":
        print_table(state, ["Field", "Value"], [[escape(k), escape(v)] for k, v in value.value.items()])
    elif value.type == "zset":
        print_table(state, ["Member", "Score"], [[escape(m), f"{s:g}"] for m, s in value.value])
    elif value.type == "stream":
        print_table(state, ["Id", "Fields"], [[i.decode(), " ".join(f"{escape(k)}={escape(v)}" for k, v in f.items())]
                                              for i, f in value.value])
    else:
        print_table(state, ["Element"], [[escape(item)] for item in value.value])


def _pretty_json(data: bytes) -> str:
    from storagectl.cache.keyfmt import escape

    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except ValueError:
        return escape(data)


@app.command("set", cls=PlainUsage)
def set_(ctx: typer.Context, key: KeyArgument,
         value: Annotated[str, typer.Argument(metavar="VALUE", help="The value, as typed.")],
         backend: BackendOption = None,
         ttl: Annotated[float | None, typer.Option("--ttl", parser=_duration, metavar="DURATION",
                                                   help="Expire after this long (500ms, 30s, 5m).")] = None,
         nx: Annotated[bool, typer.Option("--nx", help="Only if the key does not exist (exit 1 if it does).")] = False,
         xx: Annotated[bool, typer.Option("--xx", help="Only if the key exists (exit 1 if not).")] = False,
         output: OutputOption = None) -> None:
    """Set a string key, with an optional TTL."""
    from storagectl.cache import keys
    from storagectl.cache.keyfmt import key_json
    from storagectl.cache.nodes import key_client, translated
    from storagectl.errors import UsageError

    if nx and xx:
        raise UsageError("--nx and --xx contradict each other", hint="Try: one of them")
    ttl_ms = None if ttl is None else _ttl_ms(ttl, "--ttl")
    target = _backend(ctx, backend)
    with key_client(target) as client, translated(target, "set"):
        keys.set_value(client, _key(key), _key(value), ttl_ms=ttl_ms,
                       only_if="absent" if nx else "present" if xx else None)
    _emit(state_of(ctx), output, {**key_json(_key(key)), "set": True, "ttl_ms": ttl_ms}, "OK")


@app.command("ttl", cls=PlainUsage)
def ttl(ctx: typer.Context, key: KeyArgument, backend: BackendOption = None, output: OutputOption = None) -> None:
    """Time to live of a key (exit 5 when it does not exist)."""
    from storagectl.cache import keys
    from storagectl.cache.keyfmt import key_json
    from storagectl.cache.nodes import key_client, translated

    target = _backend(ctx, backend)
    with key_client(target) as client, translated(target, "ttl"):
        left = keys.ttl(client, _key(key))
    _emit(state_of(ctx), output, {**key_json(_key(key)), "ttl_ms": left}, _ttl_text(left))


@app.command("expire", cls=PlainUsage)
def expire(ctx: typer.Context, key: KeyArgument,
           duration: Annotated[float, typer.Argument(parser=_duration, metavar="DURATION",
                                                     help="Time to live from now (30s, 5m).")],
           backend: BackendOption = None, output: OutputOption = None) -> None:
    """Set a key's time to live."""
    from storagectl.cache import keys
    from storagectl.cache.keyfmt import key_json
    from storagectl.cache.nodes import key_client, translated

    ttl_ms = _ttl_ms(duration, "DURATION")
    target = _backend(ctx, backend)
    with key_client(target) as client, translated(target, "expire"):
        keys.expire(client, _key(key), ttl_ms)
    _emit(state_of(ctx), output, {**key_json(_key(key)), "ttl_ms": ttl_ms}, f"expires in {_ttl_text(ttl_ms)}")


@app.command("persist", cls=PlainUsage)
def persist(ctx: typer.Context, key: KeyArgument, backend: BackendOption = None, output: OutputOption = None) -> None:
    """Remove a key's time to live."""
    from storagectl.cache import keys
    from storagectl.cache.keyfmt import key_json
    from storagectl.cache.nodes import key_client, translated

    target = _backend(ctx, backend)
    with key_client(target) as client, translated(target, "persist"):
        removed = keys.persist(client, _key(key))
    _emit(state_of(ctx), output, {**key_json(_key(key)), "persisted": removed},
          "expiry removed" if removed else "the key had no expiry")


@app.command("del", cls=PlainUsage)
def delete(ctx: typer.Context,
           keys_: Annotated[list[str], typer.Argument(metavar="KEYS", help="Keys to delete (UNLINK).")],
           backend: BackendOption = None, yes: YesOption = False, output: OutputOption = None) -> None:
    """Delete keys (asked first on a terminal, needs --yes elsewhere); says which did not exist."""
    from storagectl.cache import keys
    from storagectl.cache.nodes import key_client, translated

    state, target = state_of(ctx), _backend(ctx, backend)
    if not yes:
        confirm(state, f"Delete {len(keys_)} key(s) from {target.label}?", refusal=f"deleting keys from "
                f"{target.label} needs confirmation", hint="Try: --yes")
    with key_client(target) as client, translated(target, "del"):
        result = keys.delete(client, [_key(key) for key in keys_])
    missing = ", ".join(item["key"] for item in result["missing"])
    _emit(state, output, result, f"deleted {result['deleted']}" + (f"; not found: {missing}" if missing else ""))


@app.command("type", cls=PlainUsage)
def type_(ctx: typer.Context, key: KeyArgument, backend: BackendOption = None, output: OutputOption = None) -> None:
    """A key's type, TTL, length, encoding and memory."""
    from storagectl.cache import keys
    from storagectl.cache.nodes import key_client, translated

    state, target = state_of(ctx), _backend(ctx, backend)
    with key_client(target) as client, translated(target, "type"):
        facts = keys.describe(client, _key(key))
    if state.format(output) is OutputFormat.json:
        print_json(facts)
    else:
        print_table(state, ["Figure", "Value"], [[name, _ttl_text(value) if name == "ttl_ms" else value]
                                                 for name, value in facts.items() if name != "key_base64"])


# -- many keys ---------------------------------------------------------------------------------------
@app.command("scan")
def scan(ctx: typer.Context, backend: BackendOption = None,
         pattern: Annotated[str | None, typer.Option("--pattern", metavar="PATTERN", help="SCAN MATCH glob.")] = None,
         type_: TypeOption = None,
         count: Annotated[int, typer.Option("--count", min=1, metavar="N", help="SCAN COUNT hint.")] = 1000,
         limit: Annotated[int | None, typer.Option("--limit", min=1, metavar="N", help="Stop after N keys.")] = None,
         details: Annotated[bool, typer.Option("--details", help="Type and TTL of each key too.")] = False,
         output: OutputOption = None) -> None:
    """Stream key names (SCAN, never KEYS) of every primary: one per line (escaped), or JSON lines."""
    from storagectl.cache.keyfmt import escape, escaped_lines, key_json
    from storagectl.cache.scan import ScanOptions, scan_keys

    state, target = state_of(ctx), _backend(ctx, backend)
    options = ScanOptions(_key(pattern) if pattern else None, type_, count, limit, details)
    as_json = state.format(output) is OutputFormat.json
    write = sys.stdout.write
    for batch in scan_keys(target, options):
        if as_json and details:
            write("".join(json.dumps({**key_json(k.key), "type": k.type, "ttl_ms": k.ttl_ms}) + "\n" for k in batch))
        elif as_json:
            write("".join(json.dumps(key_json(key)) + "\n" for key in batch))
        elif details:
            write("".join(f"{escape(k.key)}\t{k.type}\t{_ttl_text(k.ttl_ms)}\n" for k in batch))
        else:
            write(escaped_lines(batch))
    sys.stdout.flush()


@app.command("invalidate")
def invalidate(
    ctx: typer.Context, backend: BackendOption = None,
    pattern: Annotated[str, typer.Option("--pattern", metavar="PATTERN",
                                         help="SCAN MATCH glob of the keys to delete (`*` needs --all).")] = "",
    all_: Annotated[bool, typer.Option("--all", help="Allow a pattern matching every key.")] = False,
    type_: TypeOption = None,
    batch: Annotated[int, typer.Option(
        "--batch", min=10, max=100_000, metavar="N",
        help="SCAN COUNT per round trip (keys deleted per UNLINK are the matches).")] = 1000,
    rate: RateOption = None,
    cursor: Annotated[str | None, typer.Option(
        "--cursor", metavar="CURSOR", help="Resume where an interrupted run stopped (it prints this).")] = None,
    sample: Annotated[int, typer.Option("--sample", min=0, metavar="N", help="Matched keys listed.")] = 10,
    dry_run: DryRunOption = False, yes: YesOption = False, output: OutputOption = None,
) -> None:
    """Delete every key matching a pattern: SCAN + UNLINK in pipelined batches on every primary, with
    progress; --dry-run counts and samples. Ctrl-C prints the --cursor to resume from."""
    from storagectl.cache.invalidate import InvalidateOptions, plan_invalidate, run_invalidate
    from storagectl.cache.scan import check_type
    from storagectl.cli.progress import progress_view

    state = state_of(ctx)
    check_type(type_)
    options = InvalidateOptions(_key(pattern or ("*" if all_ else "")), all_, type_, batch, rate, dry_run, sample,
                                cursor)
    options.check()
    plan = plan_invalidate(_backend(ctx, backend), options)
    if not dry_run and not yes:
        confirm(state, f"{plan.describe()}. Proceed?", refusal=f"invalidate would {plan.describe()}",
                hint="Try: --dry-run to count and sample the keys first, then --yes")
    with progress_view(state) as progress:
        result = run_invalidate(plan, progress)
    _render_invalidate(state, result.to_dict(), output)
    if result.error is not None:
        raise result.error


def _render_invalidate(state: AppState, summary: dict[str, Any], output: OutputFormat | None) -> None:
    if state.format(output) is OutputFormat.json:
        print_json(summary)
        return
    verb = "would delete" if summary["dry_run"] else "deleted"
    count = summary["matched"] if summary["dry_run"] else summary["deleted"]
    state.out.print(f"{verb} {count:,} keys matching '{summary['pattern']}' ({summary['matched']:,} matched of "
                    f"~{summary['scanned']:,} scanned, {summary['duration']:g}s, {summary['errors']} node errors)",
                    markup=False, highlight=False)
    if summary["sample"]:
        print_table(state, ["Sample of matched keys"], [[item["key"]] for item in summary["sample"]])


@app.command("stats")
def stats(
    ctx: typer.Context, backend: BackendOption = None,
    interval: Annotated[float, typer.Option("--interval", parser=_duration, metavar="DURATION",
                                            help="Window between the two INFO reads.")] = 10.0,
    by_prefix: Annotated[bool, typer.Option("--by-prefix", help="Sample keys: estimates per prefix.")] = False,
    delimiter: Annotated[str, typer.Option("--delimiter", metavar="TEXT", help="Ends a prefix.")] = ":",
    sample: Annotated[int, typer.Option("--sample", min=1, max=1_000_000, metavar="N",
                                        help="Keys sampled for --by-prefix.")] = 1000,
    output: OutputOption = None,
) -> None:
    """Hit ratio, evictions, expirations and ops/s over a window (not since boot), memory, fragmentation,
    latency percentiles; --by-prefix estimates keys, memory, TTL and idle time per prefix."""
    from storagectl.cache.stats import StatsOptions, cache_stats
    state = state_of(ctx)
    report = cache_stats(_backend(ctx, backend), StatsOptions(interval, by_prefix, _key(delimiter), sample))
    if state.format(output) is OutputFormat.json:
        print_json(report)
    else:
        _render_stats(state, report)


def _render_stats(state: AppState, report: dict[str, Any]) -> None:
    from storagectl.units import human_bytes

    columns = ["Node", "Hit ratio", "Hits", "Misses", "Evicted", "Expired", "Ops/s", "Keys", "Memory", "Frag."]
    rows = [[row["node"] or "server", _percent(row["hit_ratio"]), row["hits"], row["misses"], row["evicted_keys"],
             row["expired_keys"], row["ops_per_second"], row["keys"], human_bytes(row["used_memory"]),
             row["fragmentation_ratio"]] for row in report["nodes"]]
    if len(rows) > 1:
        rows.append(["total", _percent(report["hit_ratio"]), report["hits"], report["misses"], report["evicted_keys"],
                     report["expired_keys"], report["ops_per_second"], report["keys"],
                     human_bytes(report["used_memory"]), report["fragmentation_ratio"]])
    print_table(state, columns, rows, title=f"over the last {report['window_seconds']:g}s")
    latency = [[row["node"] or "server", command, *(values.get(p) for p in ("p50", "p99", "p99.9"))]
               for row in report["nodes"] for command, values in row["latency_usec_since_start"].items()]
    if latency:
        print_table(state, ["Node", "Command", "p50 µs", "p99 µs", "p99.9 µs"], latency,
                    title="latency since the server started")
    if "prefixes" in report:
        prefixes = report["prefixes"]
        print_table(state, ["Prefix", "Sampled", "~Keys", "~Memory", "With TTL", "TTL s (min/med/max)", "Idle s"],
                    [[row["prefix"], row["sampled"], row["keys"],
                      human_bytes(row["memory_bytes"]) if row["memory_bytes"] is not None else None,
                      _percent(row["with_ttl"]), _spread(row["ttl_seconds"]), _spread(row["idle_seconds"])]
                     for row in prefixes["rows"]],
                    title=f"estimates from {prefixes['sample_size']} sampled keys of {prefixes['population']:,}")


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def _spread(values: dict[str, float] | None) -> str:
    return "-" if values is None else f"{values['min']:g}/{values['median']:g}/{values['max']:g}"


# -- pub/sub and notifications ----------------------------------------------------------------------
@app.command("publish", cls=PlainUsage)
def publish(ctx: typer.Context, channel: Annotated[str, typer.Argument(metavar="CHANNEL", help="Channel.")],
            message: Annotated[str, typer.Argument(metavar="MESSAGE", help="Message, as typed.")],
            backend: BackendOption = None, output: OutputOption = None) -> None:
    """Publish a message; prints how many subscribers received it."""
    from storagectl.cache.keyfmt import escape
    from storagectl.cache.nodes import key_client, translated
    from storagectl.cache.pubsub import publish as publish_message

    target = _backend(ctx, backend)
    with key_client(target) as client, translated(target, "publish"):
        receivers = publish_message(client, _key(channel), _key(message))
    _emit(state_of(ctx), output, {"channel": escape(_key(channel)), "receivers": receivers},
          f"{receivers} subscriber(s) received it")


@app.command("subscribe", cls=PlainUsage)
def subscribe(
    ctx: typer.Context,
    channels: Annotated[list[str], typer.Argument(metavar="CHANNELS", help="Channels (patterns with --pattern).")],
    backend: BackendOption = None,
    pattern: Annotated[bool, typer.Option("--pattern", help="CHANNELs are glob patterns (PSUBSCRIBE).")] = False,
    count: Annotated[int | None, typer.Option("--count", min=1, metavar="N", help="Stop after N messages.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", parser=_duration, metavar="DURATION",
                                                  help="Stop after this long.")] = None,
) -> None:
    """Print messages as JSON lines, in order; reconnects after a lost connection with a warning (messages
    published while disconnected are lost: pub/sub does not buffer)."""
    from storagectl.cache.nodes import translated
    from storagectl.cache.pubsub import Gap, subscriber
    from storagectl.cache.pubsub import subscribe as messages

    state, target = state_of(ctx), _backend(ctx, backend)
    client = subscriber(target)
    try:
        with translated(target, "subscribe"):
            for item in messages(client, [_key(c) for c in channels], patterns=pattern, count=count, timeout=timeout,
                                 describe=target.error_line):
                if isinstance(item, Gap):
                    _warn_gap(state, item, "messages published")
                    continue
                sys.stdout.write(json.dumps(item.to_dict()) + "\n")
                sys.stdout.flush()
    finally:
        client.close()


def _warn_gap(state: AppState, gap: Any, lost: str) -> None:
    where = f" to {gap.node}" if gap.node else ""
    state.err.print(f"warning: connection{where} lost ({gap.error}) and back after {gap.seconds:g}s; {lost} "
                    "meanwhile were lost (pub/sub does not buffer)", markup=False, highlight=False)


@app.command("watch")
def watch(
    ctx: typer.Context, backend: BackendOption = None,
    prefix: Annotated[str, typer.Option("--prefix", metavar="PREFIX", help="Only keys starting with this.")] = "",
    events: Annotated[str, typer.Option("--events", metavar="EVENTS",
                                        help="Comma-separated events (set, del, expired, evicted, expire, hset, "
                                        "...).")] = "set,del,expired,evicted",
    enable: Annotated[bool, typer.Option("--enable-notifications",
                                         help="Turn on the notify-keyspace-events flags needed (with --yes) and "
                                         "put the old value back on exit.")] = False,
    count: Annotated[int | None, typer.Option("--count", min=1, metavar="N", help="Stop after N events.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", parser=_duration, metavar="DURATION",
                                                  help="Stop after this long.")] = None,
    yes: YesOption = False, output: OutputOption = None,
) -> None:
    """Keyspace notifications of every primary as they happen (exit 3 when they are off: the message says
    how to turn them on)."""
    import contextlib

    from storagectl.cache.keyfmt import escape
    from storagectl.cache.pubsub import Gap
    from storagectl.cache.watch import check_notifications, notifications_enabled
    from storagectl.cache.watch import watch as key_events

    state, target = state_of(ctx), _backend(ctx, backend)
    wanted = tuple(event.strip() for event in events.split(",") if event.strip())
    if enable and not yes:
        confirm(state, f"Change notify-keyspace-events on {target.label} while watching?",
                refusal="--enable-notifications changes the server's configuration and needs confirmation",
                hint="Try: --enable-notifications --yes")
    as_json = state.format(output) is OutputFormat.json
    with notifications_enabled(target, wanted) if enable else contextlib.nullcontext() as reapply:
        check_notifications(target, wanted)
        note(state, f"watching {', '.join(wanted)} of keys starting with {prefix!r} (Ctrl-C to stop)")
        for event in key_events(target, prefix=prefix, events=wanted, count=count, timeout=timeout,
                                after_gap=reapply):
            if isinstance(event, Gap):
                _warn_gap(state, event, "events")
                continue
            line = json.dumps(event.to_dict()) if as_json else f"{event.event}\t{escape(event.key)}" + (
                f"\t{event.node}" if event.node else "")
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


@app.command("warm")
def warm(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Option("--from", metavar="BACKUP_ID",
                                           help="A Redis backup (`storagectl backup list`), or `latest`.",
                                           autocompletion=complete.backup_ids_or_latest)],
    backend: BackendOption = None,
    destination: Annotated[str | None, typer.Option("--destination", metavar="DEST",
                                                    help="Where the backup is [default: searched].",
                                                    autocompletion=complete.destination_names)] = None,
    pattern: Annotated[str | None, typer.Option("--pattern", metavar="PATTERN",
                                                help="Only keys matching this glob.")] = None,
    ttl_jitter: Annotated[float, typer.Option("--ttl-jitter", parser=_fraction, metavar="SHARE",
                                              help="Move each TTL by up to ± this share (10%).")] = 0.0,
    rate: RateOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite keys the cache holds (needs --yes).")] = False,
    source_db: Annotated[int | None, typer.Option("--source-db", min=0, metavar="N",
                                                  help="The db of a multi-db backup to load.")] = None,
    yes: YesOption = False, output: OutputOption = None,
) -> None:
    """Load the keys of a Redis backup into a cold cache (RESTORE); keys the cache holds are kept unless
    --replace; keys expired since the backup are skipped."""
    from storagectl.cache.warm import WarmOptions
    from storagectl.cache.warm import warm as warm_cache
    from storagectl.cli.progress import progress_view

    state, target = state_of(ctx), _backend(ctx, backend)
    if replace and not yes:
        confirm(state, f"Overwrite keys of {target.label} with the backup's?",
                refusal="--replace overwrites keys the cache holds and needs confirmation", hint="Try: --replace --yes")
    options = WarmOptions(backup_id, destination, _key(pattern) if pattern else None, ttl_jitter, rate, replace,
                          source_db)
    with progress_view(state) as progress:
        result = warm_cache(state.config, target, options, progress)
    _emit(state, output, result.to_dict(), f"restored {result.restored:,} keys from {result.backup_id} "
          f"({result.present:,} already present, {result.expired:,} expired, {result.filtered:,} not matching) "
          f"in {result.duration:.1f}s")
