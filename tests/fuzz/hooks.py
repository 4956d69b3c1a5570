"""Schemathesis hooks and a check for the fuzz run (`tests/fuzz/run` loads them).

A generated case alone never gets past 401 on a member call: the token comes
from a join, and the room and member ids must be the token's own. So before a
case is sent, this module may give it an identity: it makes a fresh room (an
owner and a peer join, the peer signals the owner, the owner locks the room)
and puts the owner's token and ids into the case, or the admin token. Which
identity a case gets follows from a checksum of its content, so a case
replayed while schemathesis shrinks a failure is sent the same way again.
Authorized long-polls and streams are kept short (see `_short_poll` and
`_resume_from_start`).

The document gives an inbox event's data as JSON in a string (SSE) or an
untyped object (long-poll), with one schema per kind (`ReadyData`, …); the
check `inbox_events_match_their_schemas` holds each event to its schema.

It also counts the requests sent and their status codes per operation, and
writes them to `$SIGNALPOST_FUZZ_STATS` at exit for the runner's summary.
"""

import atexit
import itertools
import json
import os
import threading
import uuid
import zlib
from collections import Counter, defaultdict

import jsonschema_rs
import requests
import schemathesis

BASE_URL = os.environ["SIGNALPOST_FUZZ_URL"].rstrip("/")
ADMIN_TOKEN = os.environ["SIGNALPOST_FUZZ_ADMIN_TOKEN"]
STATS_PATH = os.environ.get("SIGNALPOST_FUZZ_STATS")

# "as-generated": the case is sent as schemathesis made it (mostly 400/401).
# "member": the owner's token and its own room and member ids.
# "stranger": the owner's token with the generated ids (403, 404).
# "peer": the owner's token, and the peer as the member acted on or `to`.
# "admin": the admin token with the fresh room's ids; "admin-generated": with
# the generated ones.
PLANS = {
    ("GET", "/healthz"): ["as-generated"],
    ("POST", "/rooms/{room_id}/join"): ["as-generated"],
    ("GET", "/rooms"): ["as-generated", "admin", "admin", "stranger"],
    ("GET", "/rooms/{room_id}"): ["as-generated", "member", "member", "stranger", "admin", "admin-generated"],
    ("PATCH", "/rooms/{room_id}"): ["as-generated", "member", "member", "stranger", "admin", "admin-generated"],
    ("DELETE", "/rooms/{room_id}/members/{member_id}"): [
        "as-generated", "member", "peer", "stranger", "admin", "admin-generated",
    ],
    ("GET", "/rooms/{room_id}/members/{member_id}/poll"): ["as-generated", "member", "member", "stranger", "admin"],
    ("GET", "/rooms/{room_id}/members/{member_id}/events"): ["as-generated", "member", "stranger", "admin"],
    ("POST", "/signals"): ["as-generated", "member", "peer", "peer", "admin"],
}

# Longest long-poll wait a case may ask for once it is authorized: the wait
# itself is tested in tests/api; here it would only stretch the run.
POLL_WAIT_MAX = 1

_lock = threading.Lock()
_local = threading.local()
_rooms = itertools.count(1)
_run = uuid.uuid4().hex[:8]
_requests: defaultdict = defaultdict(Counter)
_setup_requests = 0

# What the peer's signal to the owner carries. API.md allows any JSON value,
# `null` when omitted; the document must describe every one of them.
_OMITTED = object()
PAYLOADS = [_OMITTED, None, {"type": "offer", "sdp": "v=0"}, ["a", 1], "hello", 3.5, True]


def _session() -> requests.Session:
    # Workers are threads and a `requests.Session` is not safe to share.
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def _setup(method: str, path: str, expected: int, token: str | None = None, body=_OMITTED) -> dict | None:
    global _setup_requests
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs = {} if body is _OMITTED else {"json": body}
    response = _session().request(method, f"{BASE_URL}{path}", headers=headers, timeout=10, **kwargs)
    with _lock:
        _setup_requests += 1
    if response.status_code != expected:
        raise RuntimeError(f"setup {method} {path} answered {response.status_code}: {response.text}")
    return response.json() if response.content else None


def _fresh_room(checksum: int) -> tuple[str, dict, dict]:
    """A new room whose owner's inbox holds one event of each kind a live
    room makes: `member-joined` (1), `signal` (2), `room-updated` (3)."""
    room = f"fuzz-{_run}-{next(_rooms)}"
    owner = _setup("POST", f"/rooms/{room}/join", 201, body={"name": "owner"})
    peer = _setup("POST", f"/rooms/{room}/join", 201, body={"name": "peer"})
    signal = {"to": owner["member"]["id"], "type": "chat"}
    payload = PAYLOADS[(checksum >> 8) % len(PAYLOADS)]
    if payload is not _OMITTED:
        signal["payload"] = payload
    _setup("POST", "/signals", 202, token=peer["token"], body=signal)
    _setup("PATCH", f"/rooms/{room}", 200, token=owner["token"], body={"locked": True})
    return room, owner, peer


def _checksum(case) -> int:
    body = case.body if isinstance(case.body, (dict, list, str, int, float, bool, type(None))) else repr(type(case.body))
    key = json.dumps(
        [case.path_parameters, dict(case.query or {}), body],
        sort_keys=True,
        default=repr,
    )
    return zlib.crc32(key.encode())


def _whole(value) -> int | None:
    """The value as the server would read a non-negative integer, else None."""
    text = str(value).strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _short_poll(query: dict) -> None:
    if "timeout" not in query:
        # Absent means 25 seconds.
        query["timeout"] = 0
        return
    secs = _whole(query["timeout"])
    # Malformed or out-of-range values answer 400 before any wait: keep them.
    if secs is not None and secs <= 60:
        query["timeout"] = min(secs, POLL_WAIT_MAX)


def _resume_from_start(case) -> None:
    # A resume after the owner's last event would leave the stream idle
    # (keep-alive comments only) until the read timeout; a resume after 0
    # shows `ready` and the three events, which ends the read (see
    # `max-stream-events`). Malformed ids answer 400 first: keep them.
    for container, name in ((case.headers, "Last-Event-ID"), (case.query, "last_event_id")):
        if container is not None and name in container and _whole(container[name]) is not None:
            container[name] = "0" if container is case.headers else 0


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def sdp_text(ctx, value):
    # WHIP and WHEP bodies are text: the generated string, as it is.
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@schemathesis.hook
def before_call(context, case, **kwargs):
    checksum = _checksum(case)
    plans = PLANS.get((case.method.upper(), case.path), ["as-generated"])
    plan = plans[checksum % len(plans)]
    if plan == "as-generated":
        return
    room, owner, peer = _fresh_room(checksum)
    token = ADMIN_TOKEN if plan.startswith("admin") else owner["token"]
    case.headers["Authorization"] = f"Bearer {token}"
    if plan in ("member", "peer", "admin"):
        params = dict(case.path_parameters)
        if "room_id" in params:
            params["room_id"] = room
        if "member_id" in params:
            params["member_id"] = (peer if plan == "peer" else owner)["member"]["id"]
        case.path_parameters = params
    if plan == "peer" and isinstance(case.body, dict) and "to" in case.body:
        case.body = {**case.body, "to": peer["member"]["id"]}
    if case.path.endswith("/poll"):
        query = dict(case.query or {})
        _short_poll(query)
        case.query = query
    if case.path.endswith("/events") and plan == "member":
        case.query = dict(case.query or {})
        _resume_from_start(case)


# Which schema each event's data follows, and whether the event has an id
# (`ready` and a streamed `gap` are not part of the inbox, so they have none).
EVENT_SCHEMAS = {
    "ready": ("ReadyData", False),
    "gap": ("GapData", False),
    "member-joined": ("MemberJoinedData", True),
    "member-left": ("MemberLeftData", True),
    "signal": ("SignalData", True),
    "room-updated": ("RoomUpdatedData", True),
}
_validators: dict = {}


def _validator(document: dict, name: str):
    with _lock:
        if name not in _validators:
            root = {"components": document["components"], "$ref": f"#/components/schemas/{name}"}
            _validators[name] = jsonschema_rs.Draft202012Validator(root, validate_formats=True)
        return _validators[name]


def _stream_events(text: str) -> list[dict]:
    """The events of an SSE body: `field: value` lines, a blank line after each."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
        if "data" in fields:
            events.append(fields)
    return events


@schemathesis.check
def inbox_events_match_their_schemas(ctx, response, case):
    if response.status_code != 200:
        return None
    document = case.operation.schema.raw_schema
    if case.path.endswith("/events"):
        events = []
        for fields in _stream_events(response.content.decode("utf-8")):
            try:
                data = json.loads(fields["data"])
            except ValueError as error:
                raise AssertionError(f"`{fields.get('event')}` data is not JSON ({error}): {fields['data']}")
            events.append((fields.get("event"), data, fields.get("id")))
        if not events or events[0][0] != "ready":
            raise AssertionError(f"the stream does not open with `ready`: {response.content[:200]!r}")
        kinds = EVENT_SCHEMAS
    elif case.path.endswith("/poll"):
        events = [(event["event"], event["data"], event["id"]) for event in response.json()["events"]]
        # A poll has no `ready`, and its `gap` carries the id of the last lost event.
        kinds = {kind: (schema, True) for kind, (schema, _) in EVENT_SCHEMAS.items() if kind != "ready"}
    else:
        return None
    for kind, data, event_id in events:
        if kind not in kinds:
            raise AssertionError(f"unknown event kind {kind!r}")
        schema, has_id = kinds[kind]
        if has_id != (event_id is not None):
            raise AssertionError(f"`{kind}` {'lacks' if has_id else 'has'} an id: {event_id!r}")
        errors = [error.message for error in _validator(document, schema).iter_errors(data)]
        if errors:
            raise AssertionError(f"`{kind}` data does not match {schema}: {'; '.join(errors)}\n{data}")
    return True


@schemathesis.hook
def filter_failure(context, failure, case, response):
    # Before OpenAPI 3.2 (`itemSchema`), schemathesis reads the `schema` of a
    # `text/event-stream` response as the schema of each event. The document
    # means the whole body, as OpenAPI 3.1 says, and stays at 3.1; each
    # event is held to its own schema by `inbox_events_match_their_schemas`.
    return not (case.path.endswith("/events") and failure.title == "SSE event violates schema")


@schemathesis.hook
def after_call(context, case, response):
    with _lock:
        _requests[f"{case.method.upper()} {case.path}"][response.status_code] += 1


def _write_stats() -> None:
    if not STATS_PATH:
        return
    stats = {
        "requests": sum(sum(codes.values()) for codes in _requests.values()),
        "setup_requests": _setup_requests,
        "by_operation": {op: dict(sorted(codes.items())) for op, codes in sorted(_requests.items())},
    }
    with open(STATS_PATH, "w", encoding="utf-8") as file:
        json.dump(stats, file, indent=1)


atexit.register(_write_stats)
