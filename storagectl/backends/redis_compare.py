"""``restore --validate`` key by key for Redis: every record of the archive against the key the server
holds now -- its type, its value and its absolute expiry -- in one script call per batch of keys,
pipelined (batch k+1 is sent before batch k's reply is read), so memory stays at two batches
whatever the keyspace.

The value is first compared as ``DUMP`` output, on the server. ``DUMP`` may differ where the value
does not: a set or hash in a hash table serializes in table order, which a ``RESTORE`` does not keep;
other ``*-max-listpack-*`` settings convert an encoding; a newer server writes another RDB version.
Then, inside the same script call, the archived payload is restored under a scratch key of the same
slot, compared element by element (a set by ``SINTERCARD``, a hash field by field, lists and sorted
sets in ranges, streams by entries, groups and IDs) and deleted again: scripts run atomically, so no
client ever sees the scratch key.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

from storagectl.archive.api import ItemCheck

Record = tuple[bytes, bytes, int]  # key, DUMP payload, absolute expiry in ms (0: none)
REASONS = ("missing", "type", "value", "expiry")  # the script's codes 1..4 (0: equal)
EXAMPLES = 5
METHOD = "type, value (DUMP, else element by element) and absolute expiry to the millisecond"

# ARGV: per key: key, expire-at (absolute ms, 0 = none), DUMP payload, scratch key of the key's slot.
# Returns a code per key: 0 equal, 1 missing, 2 type, 3 value, 4 expiry. A key whose expiry has
# passed may be missing. Touches keys of any slot the node serves (Redis >= 7.0), as the restore does.
COMPARE_LUA = r"""#!lua flags=allow-cross-slot-keys
local CHUNK = 1000
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

local function same_arrays(x, y)
  if #x ~= #y then return false end
  for i = 1, #x do
    if type(x[i]) == 'table' then
      if type(y[i]) ~= 'table' or not same_arrays(x[i], y[i]) then return false end
    elseif x[i] ~= y[i] then return false end
  end
  return true
end

local function same_ranges(a, b, length, command, ...)
  for start = 0, length - 1, CHUNK do
    local x = redis.call(command, a, start, start + CHUNK - 1, ...)
    if not same_arrays(x, redis.call(command, b, start, start + CHUNK - 1, ...)) then return false end
  end
  return true
end

local function same_hash(a, b)
  if redis.call('HLEN', a) ~= redis.call('HLEN', b) then return false end
  local cursor = '0'
  repeat
    local reply = redis.call('HSCAN', a, cursor, 'COUNT', CHUNK)
    cursor = reply[1]
    for i = 1, #reply[2], 2 do
      if redis.call('HGET', b, reply[2][i]) ~= reply[2][i + 1] then return false end
    end
  until cursor == '0'
  return true
end

local function stream_ids(key)
  local info, ids = redis.call('XINFO', 'STREAM', key), {}
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' or info[i] == 'max-deleted-entry-id' or info[i] == 'entries-added'
       or info[i] == 'length' then
      ids[#ids + 1] = info[i + 1]
    end
  end
  return ids
end

local function same_stream(a, b)
  if not same_arrays(stream_ids(a), stream_ids(b)) then return false end
  if not same_arrays(redis.call('XINFO', 'GROUPS', a), redis.call('XINFO', 'GROUPS', b)) then return false end
  local from = '-'
  while true do
    local x = redis.call('XRANGE', a, from, '+', 'COUNT', CHUNK)
    if not same_arrays(x, redis.call('XRANGE', b, from, '+', 'COUNT', CHUNK)) then return false end
    if #x < CHUNK then return true end
    from = '(' .. x[#x][1]
  end
end

local function same_value(a, b, kind)
  if kind == 'string' then return redis.call('GET', a) == redis.call('GET', b) end
  if kind == 'list' then
    local n = redis.call('LLEN', a)
    return n == redis.call('LLEN', b) and same_ranges(a, b, n, 'LRANGE')
  end
  if kind == 'set' then
    local n = redis.call('SCARD', a)
    return n == redis.call('SCARD', b) and redis.call('SINTERCARD', 2, a, b) == n
  end
  if kind == 'zset' then
    local n = redis.call('ZCARD', a)
    return n == redis.call('ZCARD', b) and same_ranges(a, b, n, 'ZRANGE', 'WITHSCORES')
  end
  if kind == 'hash' then return same_hash(a, b) end
  if kind == 'stream' then return same_stream(a, b) end
  return false -- a module's type: equal only as DUMP
end

local function compare(key, expire_at, payload, scratch)
  local dumped = redis.call('DUMP', key)
  if not dumped then
    if expire_at ~= 0 and expire_at <= now_ms then return 0 end
    return 1
  end
  if dumped ~= payload then
    if redis.call('EXISTS', scratch) == 1 then
      return redis.error_reply('the scratch key ' .. scratch .. ' exists: delete it and validate again')
    end
    redis.call('RESTORE', scratch, 0, payload)
    local kind = redis.call('TYPE', key)['ok']
    local code = 0
    if kind ~= redis.call('TYPE', scratch)['ok'] then code = 2
    elseif not same_value(key, scratch, kind) then code = 3 end
    redis.call('UNLINK', scratch)
    if code ~= 0 then return code end
  end
  local at = redis.call('PEXPIRETIME', key)
  if (expire_at == 0 and at ~= -1) or (expire_at ~= 0 and at ~= expire_at) then return 4 end
  return 0
end

local codes = {}
for i = 1, #ARGV / 4 do
  local code = compare(ARGV[4 * i - 3], tonumber(ARGV[4 * i - 2]), ARGV[4 * i - 1], ARGV[4 * i])
  if type(code) == 'table' then return code end
  codes[i] = code
end
return codes
"""


@lru_cache(maxsize=1)
def scratch_keys() -> list[bytes]:
    """A scratch key name per cluster slot (``storagectl:validate:{N}``, N chosen so its tag hashes to
    the slot): the script restores an archived payload there, beside the key it is compared with."""
    from storagectl.backends.redis_topology import SLOTS

    names: list[bytes | None] = [None] * SLOTS
    missing, number = SLOTS, 0
    while missing:
        tag = b"%d" % number
        slot = crc_hqx(tag, 0) % SLOTS
        if names[slot] is None:
            names[slot] = b"storagectl:validate:{%s}" % tag
            missing -= 1
        number += 1
    return names  # type: ignore[return-value]


def compare_request(head: bytes, records: list[Record]) -> bytes:
    """EVALSHA of COMPARE_LUA (``head``: ``redis_wire.evalsha_head``) for one batch, as RESP bytes."""
    from storagectl.backends.redis_topology import key_slot

    scratch = scratch_keys()
    parts = [b"*%d\r\n" % (3 + 4 * len(records)), head]
    for key, payload, expire_at in records:
        expiry, spare = b"%d" % expire_at, scratch[key_slot(key)]
        parts.append(_ARGS % (len(key), key, len(expiry), expiry, len(payload), payload, len(spare), spare))
    return b"".join(parts)


_ARGS = b"$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"


class KeyComparison:
    """The tally of one server's comparisons; mismatching keys are kept (up to ``keep``) so keys that
    SCAN returned twice in the backup can be looked at again."""

    def __init__(self, unit: str, keep: int = 10_000, collect_equal: bool = False) -> None:
        self.check = ItemCheck(unit, method=METHOD)
        self.keys: dict[bytes, str] = {}  # mismatching key -> reason
        self.keep = keep
        self.equal: set[bytes] | None = set() if collect_equal else None  # keys found equal (a second look)

    def count(self, records: list[Record], codes: list[int]) -> None:
        self.check.checked += len(records)
        for (key, _payload, _expire_at), code in zip(records, codes, strict=True):
            if code:
                self.mismatch(key, REASONS[code - 1])
            elif self.equal is not None:
                self.equal.add(key)

    def mismatch(self, key: bytes, reason: str) -> None:
        mismatched = self.check.mismatched
        mismatched[reason] = mismatched.get(reason, 0) + 1
        if len(self.check.examples) < EXAMPLES:
            self.check.examples.append(f"{key.decode('utf-8', 'backslashreplace')} ({reason})")
        if len(self.keys) < self.keep:
            self.keys[key] = reason


def compare_batches(client: Any, batches: Iterable[list[Record]], comparison: KeyComparison) -> KeyComparison:
    """Compare every batch on ``client``'s server (a single-connection redis.Redis), pipelined."""
    from storagectl.backends.redis_wire import RespSocket, evalsha_head

    head = evalsha_head(client.script_load(COMPARE_LUA))
    commands = RespSocket(client.connection)
    waiting: list[Record] | None = None
    for batch in batches:
        commands.send(compare_request(head, batch))
        if waiting is not None:
            comparison.count(waiting, commands.reply())
        waiting = batch
    if waiting is not None:
        comparison.count(waiting, commands.reply())
    return comparison


def suspects(comparisons: list[KeyComparison]) -> set[bytes]:
    """Every mismatching key kept by the comparisons."""
    return set().union(*(comparison.keys for comparison in comparisons))


def forgive_duplicates(comparisons: list[KeyComparison], matched: set[bytes], unit: str) -> ItemCheck:
    """The comparisons added up, less the mismatches of keys another record of which matched: a key
    SCAN returned twice in a backup has two records, and only the first was restored."""
    total = ItemCheck(unit, method=METHOD)
    for comparison in comparisons:
        part = comparison.check
        for key in matched & comparison.keys.keys():
            reason = comparison.keys.pop(key)
            part.mismatched[reason] -= 1
        if matched:
            part.examples = [f"{key.decode('utf-8', 'backslashreplace')} ({reason})"
                             for key, reason in list(comparison.keys.items())[:EXAMPLES]]
        total.add(part)
    total.mismatched = {reason: count for reason, count in total.mismatched.items() if count}
    return total


def compare_all(compare: Callable[[Iterable[Record], bool], list[KeyComparison]],
                records: Callable[[], Iterator[Record]], unit: str, skipped: int) -> ItemCheck:
    """Every record compared (``compare(records, collect_equal)``: one comparison per server); when the
    restore skipped keys as present, the records of the keys that did not match are compared once more
    and a key passes if any of its records matches."""
    first = compare(records(), False)
    matched: set[bytes] = set()
    if skipped and (doubtful := suspects(first)):
        again = compare((record for record in records() if record[0] in doubtful), True)
        matched = set().union(*(comparison.equal or set() for comparison in again))
    return forgive_duplicates(first, matched, unit)


def compare_on(client: Any, records: Iterable[Record], unit: str, collect_equal: bool) -> KeyComparison:
    """Every record compared on one server, in batches (``client``: single-connection, closed here)."""
    from storagectl.backends.redis import batches

    try:
        return compare_batches(client, batches(records), KeyComparison(unit, collect_equal=collect_equal))
    finally:
        client.close()
