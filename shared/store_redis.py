"""The Redis store: records in hashes, events in Redis Streams (ids `SEQ-0`), the shared fitness cache."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.exceptions

from evoprune.shared.events import ExperimentStatus
from evoprune.shared.fitness_cache import FitnessCache
from evoprune.shared.fitness_cache_redis import RedisFitnessCache
from evoprune.shared.redis_client import open_redis
from evoprune.shared.store import (
    ExperimentActiveError,
    ExperimentRecord,
    FrontState,
    Snapshot,
    Store,
    StoredEvent,
    StoreError,
    StoreUnavailableError,
    TooManyActiveError,
    valid_experiment_id,
)

MAX_BLOCK_S = 2.0  # below redis_client.SOCKET_TIMEOUT_S
# Connections of a store, at most: MAX_CONNECTIONS (16) for ordinary calls, these for the calls that must
# answer at once and for the blocking event reads. A waiter for a blocking read's connection waits for
# several reads of MAX_BLOCK_S to end (the API follows up to 256 experiments at once).
ONCE_CONNECTIONS = 8
BLOCKING_CONNECTIONS = 32
BLOCKING_POOL_TIMEOUT_S = 10.0
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
T = TypeVar("T")

# Appends the events whose numbers are new, then replaces the record (and front), indexes the experiment and
# keeps it in (or takes it out of) the index of active experiments — all in one atomic step, so a reader's
# (record, front) is always consistent with the stream.
# With expect_existing, a record without the events before the first one sent counts as lost too: the API may
# have put it back from the submission's record copy (no events) after Redis restarted empty, and appending
# would leave a follower from the start a stream with a hole.
# KEYS: hash, stream, index, active. ARGV: expect_existing, record, front ('' keeps it), id, created_at,
# active ('1' queued or running), then (seq, event JSON) pairs.
PUBLISH_SCRIPT = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = 0
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
if ARGV[1] == '1' and #ARGV >= 7 and tonumber(ARGV[7]) > last + 1 then return 0 end
for i = 7, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[2], ARGV[i] .. '-0', 'e', ARGV[i + 1])
    last = seq
  end
end
redis.call('HSET', KEYS[1], 'record', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'front', ARGV[3]) end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
if ARGV[6] == '1' then redis.call('SADD', KEYS[4], ARGV[4]) else redis.call('SREM', KEYS[4], ARGV[4]) end
return 1
"""

# Counts the active experiments and creates the record in one atomic step, so concurrent submissions cannot
# all pass the cap. The count reads only the members of the active index (about the cap's worth), checking
# each against its record so an index left stale (a crash between steps of older code) heals itself; the
# index is built once from every record where it never existed.
# KEYS: hash, index, active, active-built marker. ARGV: record, id, created_at, cap ('' = none), the prefix
# of record keys, then the statuses that count as active. Returns {1 created | 0 cap reached | -1 id taken,
# active count}. Record keys are derived from ids inside the script: fine on one Redis, not on a cluster.
CREATE_SCRIPT = """
local statuses = {}
for i = 6, #ARGV do statuses[ARGV[i]] = true end
local function active(id)
  local raw = redis.call('HGET', ARGV[5] .. id, 'record')
  if not raw then return false end
  return statuses[cjson.decode(raw)['status']] == true
end
if redis.call('EXISTS', KEYS[4]) == 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if active(id) then redis.call('SADD', KEYS[3], id) end
  end
  redis.call('SET', KEYS[4], '1')
end
local count = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if active(id) then count = count + 1 else redis.call('SREM', KEYS[3], id) end
end
if ARGV[4] ~= '' and count >= tonumber(ARGV[4]) then return {0, count} end
if redis.call('HSETNX', KEYS[1], 'record', ARGV[1]) == 0 then return {-1, count} end
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
return {1, count + 1}
"""
# Removes an ended experiment's keys and its index entries in one atomic step, after checking its status, so
# a record cannot be queued again in between. KEYS: hash, stream, cancel flag, index, active. ARGV: id, then
# the statuses that count as active. Returns {1 removed | 0 unknown | -1 active, status}.
DELETE_SCRIPT = """
local raw = redis.call('HGET', KEYS[1], 'record')
if not raw then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('SREM', KEYS[5], ARGV[1])
  return {0, ''}
end
local status = cjson.decode(raw)['status']
for i = 2, #ARGV do
  if ARGV[i] == status then return {-1, status} end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
return {1, status}
"""
ACTIVE_STATUSES = [status.value for status in ExperimentStatus if not status.terminal]


class RedisStore(Store):
    """Experiments in Redis, under keys that start with `PREFIX:`.

    `exp:<id>` (hash: record, front), `exp:<id>:events` (stream), `exp:<id>:cancel` (flag), `experiments`
    (sorted set by creation time), `active` (set of the queued or running ids), `fitness:<key>` (the
    fitness cache).

    Event sequence numbers become stream ids `SEQ-0`, so a re-sent event lands on the same id and is
    skipped, and the SSE ids are the stream ids.
    """

    kind = "redis"

    def __init__(self, url: str, prefix: str = "evoprune", client: redis.Redis | None = None) -> None:
        self.url = url
        self.prefix = prefix
        # retries happen inside redis-py (redis_client.RETRIES); `_once` is for the calls that must answer at
        # once: the health check, and the cancel and event polls, which their callers repeat anyway
        self._client = client or open_redis(url)
        self._once = client or open_redis(url, retries=0, max_connections=ONCE_CONNECTIONS)
        # blocking XREADs hold a connection for up to MAX_BLOCK_S: a pool of their own, so followed streams
        # never take the connections of the health check, the API's reads and the runners' publishes
        self._blocking = client or open_redis(
            url, retries=0, max_connections=BLOCKING_CONNECTIONS, pool_timeout_s=BLOCKING_POOL_TIMEOUT_S
        )
        self._publish = self._client.register_script(PUBLISH_SCRIPT)
        self._create = self._client.register_script(CREATE_SCRIPT)
        self._delete = self._client.register_script(DELETE_SCRIPT)

    def _key(self, experiment_id: str, suffix: str = "") -> str:
        return f"{self.prefix}:exp:{experiment_id}{suffix}"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}:experiments"

    @property
    def _active_key(self) -> str:
        return f"{self.prefix}:active"

    def _call(self, operation: Callable[[], T]) -> T:
        """Run one Redis operation, turning redis-py's errors (after its own retries) into the store's."""
        try:
            return operation()
        except TRANSIENT as error:
            raise StoreUnavailableError(f"Redis at {self._safe_url} cannot be reached: {error}") from None
        except redis.exceptions.RedisError as error:
            raise StoreError(f"Redis at {self._safe_url} refused a command: {error}") from None

    @property
    def _safe_url(self) -> str:
        # never echo a password into messages or logs
        scheme, separator, rest = self.url.partition("://")
        return f"{scheme}{separator}{rest.rpartition('@')[2]}"

    # ---- records ---------------------------------------------------------------------------------------

    def create(self, record: ExperimentRecord, max_active: int | None = None) -> None:
        if not valid_experiment_id(record.id):
            raise StoreError(f"{record.id!r} is not an experiment id")
        keys = [self._key(record.id), self._index_key, self._active_key, f"{self._active_key}:built"]
        arguments = [
            json.dumps(record.to_dict()),
            record.id,
            record.created_at,
            "" if max_active is None else max_active,
            self._key(""),
            *ACTIVE_STATUSES,
        ]
        outcome, active = self._call(lambda: self._create(keys=keys, args=arguments))
        if outcome == 0 and max_active is not None:
            raise TooManyActiveError(int(active), max_active)
        if outcome != 1:
            raise StoreError(f"an experiment {record.id} already exists")

    def delete(self, experiment_id: str) -> bool:
        if not valid_experiment_id(experiment_id):
            return False
        keys = [
            self._key(experiment_id),
            self._key(experiment_id, ":events"),
            self._key(experiment_id, ":cancel"),
            self._index_key,
            self._active_key,
        ]
        outcome, status = self._call(lambda: self._delete(keys=keys, args=[experiment_id, *ACTIVE_STATUSES]))
        if outcome == -1:
            raise ExperimentActiveError(experiment_id, status.decode())
        return bool(outcome == 1)

    def active_ids(self) -> list[str]:
        raw: Any = self._call(lambda: self._client.smembers(self._active_key))
        return sorted(member.decode() for member in raw)

    @staticmethod
    def _record(raw: Any) -> ExperimentRecord | None:
        if raw is None:
            return None
        try:
            return ExperimentRecord.from_dict(json.loads(raw))
        except ValueError as error:
            raise StoreError(f"a stored record is corrupt: {error}") from None

    def get(self, experiment_id: str) -> ExperimentRecord | None:
        if not valid_experiment_id(experiment_id):
            return None
        return self._record(self._call(lambda: self._client.hget(self._key(experiment_id), "record")))

    def records(self) -> list[ExperimentRecord]:
        def fetch() -> list[Any]:
            ids: Any = self._client.zrevrange(self._index_key, 0, -1)
            pipeline = self._client.pipeline(transaction=False)
            for raw_id in ids:
                pipeline.hget(self._key(raw_id.decode()), "record")
            return pipeline.execute()

        records = [self._record(raw) for raw in self._call(fetch)]
        return [record for record in records if record is not None]

    def snapshot(self, experiment_id: str) -> Snapshot | None:
        if not valid_experiment_id(experiment_id):
            return None
        raw_record, raw_front = self._call(
            lambda: self._client.hmget(self._key(experiment_id), ["record", "front"])
        )
        record = self._record(raw_record)
        if record is None:
            return None
        try:
            front = FrontState.from_dict(json.loads(raw_front)) if raw_front else FrontState()
        except ValueError as error:
            raise StoreError(f"a stored front is corrupt: {error}") from None
        return Snapshot(record=record, front=front)

    def publish(
        self,
        experiment_id: str,
        events: Sequence[StoredEvent],
        record: ExperimentRecord,
        front: FrontState | None = None,
        expect_existing: bool = True,
    ) -> bool:
        if not valid_experiment_id(experiment_id):
            raise StoreError(f"{experiment_id!r} is not an experiment id")
        arguments: list[Any] = [
            "1" if expect_existing else "0",
            json.dumps(record.to_dict()),
            json.dumps(front.to_dict()) if front is not None else "",
            experiment_id,
            record.created_at,
            "0" if record.terminal else "1",
        ]
        for seq, data in events:
            arguments += [seq, json.dumps(data, separators=(",", ":"))]
        keys = [
            self._key(experiment_id),
            self._key(experiment_id, ":events"),
            self._index_key,
            self._active_key,
        ]
        # the script skips events already stored, so a retry after a lost reply adds nothing twice
        return bool(self._call(lambda: self._publish(keys=keys, args=arguments)))

    # ---- events ----------------------------------------------------------------------------------------

    @staticmethod
    def _events(entries: Any) -> list[StoredEvent]:
        events = []
        for raw_id, fields in entries:
            seq = int(raw_id.split(b"-")[0])
            events.append((seq, json.loads(fields[b"e"])))
        return events

    def read_events(self, experiment_id: str, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        if not valid_experiment_id(experiment_id) or limit <= 0:
            return []
        stream = self._key(experiment_id, ":events")
        entries: Any = self._call(lambda: self._client.xrange(stream, f"{after + 1}-0", "+", count=limit))
        return self._events(entries)

    def wait_events(
        self, experiment_id: str, after: int, timeout_s: float, limit: int = 1000
    ) -> list[StoredEvent]:
        if not valid_experiment_id(experiment_id) or limit <= 0:
            return []
        stream = self._key(experiment_id, ":events")
        block_ms = max(1, int(min(timeout_s, MAX_BLOCK_S) * 1000))
        # XREAD BLOCK holds a pooled connection until an event arrives or the time is up
        answer: Any = self._call(
            lambda: self._blocking.xread({stream: f"{after}-0"}, count=limit, block=block_ms)
        )
        # one stream asked, so the answer is [[stream, entries]]
        return self._events(answer[0][1]) if answer else []

    def event_id(self, seq: int) -> str:
        return f"{seq}-0"

    def parse_event_id(self, text: str) -> int | None:
        head, _, tail = text.strip().partition("-")
        # isdigit() alone admits Unicode digits such as "²", which int() refuses
        if head.isascii() and head.isdigit() and len(head) < 19 and tail in ("", "0"):
            return int(head)
        return None

    # ---- cancellation ----------------------------------------------------------------------------------

    def request_cancel(self, experiment_id: str) -> None:
        if not valid_experiment_id(experiment_id):
            raise StoreError(f"no experiment {experiment_id!r}")
        self._call(lambda: self._client.set(self._key(experiment_id, ":cancel"), "1"))

    def cancel_requested(self, experiment_id: str) -> bool:
        if not valid_experiment_id(experiment_id):
            return False
        return bool(self._call(lambda: self._once.exists(self._key(experiment_id, ":cancel"))))

    # ---- the rest --------------------------------------------------------------------------------------

    def fitness_cache(self) -> FitnessCache:
        return RedisFitnessCache(self.url, prefix=f"{self.prefix}:fitness:")

    def ping(self) -> None:
        self._call(self._once.ping)

    def describe(self) -> str:
        return f"redis {self._safe_url} (prefix {self.prefix})"

    def delete_all(self) -> int:
        """Remove every key under this store's prefix (tests and `reset` tooling).

        Returns:
            How many keys were removed.

        """
        names = list(self._client.scan_iter(match=f"{self.prefix}:*", count=1000))
        return int(self._client.delete(*names)) if names else 0

    def close(self) -> None:
        self._client.close()
        self._once.close()
        self._blocking.close()
