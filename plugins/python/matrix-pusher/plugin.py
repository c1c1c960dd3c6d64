"""matrix-pusher-py: the Python twin of the Rust `matrix-pusher` plugin.

For each new event row of Synapse's `events` stream that may notify, it fetches the event and
the room's state at it through Synapse's admin API (outbound HTTP, the token attached by the
host), evaluates the same subset of the default push rules as plugins/matrix-pusher
(src/rules.rs) for each configured user, and pushes one Push Gateway API `notify` body per
pusher, key `<event_id>/<user>/<pushkey>`: byte for byte as the Rust plugin (JSON with sorted
keys and no spaces, as serde_json writes it), checked by the conformance suite.
"""

import json
import urllib.parse

import streamhost
from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import push as _push
from wit_world.imports import wasi_http_types as t


# ----------------------------------------------------------------------------------------------
# Rules (pure): the order and meaning of plugins/matrix-pusher/src/rules.rs

def str_at(value, *path):
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, str) else None


def localpart(user):
    rest = user[1:] if user.startswith("@") else user
    return rest.split(":", 1)[0]


def _is_word(c):
    return c.isalnum() or c == "_"


def contains_word(haystack, needle):
    """`needle` as a whole word of `haystack`, case-insensitively (Synapse's word glob)."""
    if not needle:
        return False
    hay, pat = haystack.lower(), needle.lower()
    start = hay.find(pat)
    while start != -1:
        end = start + len(pat)
        if (start == 0 or not _is_word(hay[start - 1])) and (end == len(hay) or not _is_word(hay[end])):
            return True
        start = hay.find(pat, start + 1)
    return False


def invitee(event):
    if str_at(event, "type") == "m.room.member" and str_at(event, "content", "membership") == "invite":
        return str_at(event, "state_key")
    return None


def candidates(event, joined):
    sender = str_at(event, "sender")
    users = [u for u, _ in joined]
    invited = invitee(event)
    if invited is not None and invited not in users:
        users.append(invited)
    return [u for u in users if u != sender]


def evaluate(event, user, joined, messages):
    """(rule, sound, highlight) when the event notifies `user`, else None."""
    kind = str_at(event, "type") or ""
    body = str_at(event, "content", "body")
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    has_mentions = "m.mentions" in content
    if str_at(event, "content", "msgtype") == "m.notice":
        return None
    if kind == "m.room.member":
        return (".m.rule.invite_for_me", True, False) if invitee(event) == user else None
    mentions = content.get("m.mentions")
    ids = mentions.get("user_ids") if isinstance(mentions, dict) else None
    if isinstance(ids, list) and user in [i for i in ids if isinstance(i, str)]:
        return (".m.rule.is_user_mention", True, True)
    name = next((n for u, n in joined if u == user), None)
    if not has_mentions and body is not None and name is not None and contains_word(body, name):
        return (".m.rule.contains_display_name", True, True)
    if kind == "m.reaction":
        return None
    if str_at(event, "content", "m.relates_to", "rel_type") == "m.replace":
        return None
    if not has_mentions and body is not None and contains_word(body, localpart(user)):
        return (".m.rule.contains_user_name", True, True)
    if kind == "m.room.message":
        if len(joined) == 2:
            return (".m.rule.room_one_to_one", True, False)
        if messages:
            return (".m.rule.message", False, False)
    return None


# ----------------------------------------------------------------------------------------------
# Synapse answers and notify bodies (pure)

def from_state(event, state):
    """(joined [(user, display name)], sender display name, room name) from state events."""
    sender = str_at(event, "sender") or ""
    joined, sender_name, room_name = [], None, None
    for ev in state if isinstance(state, list) else []:
        kind = str_at(ev, "type")
        if kind == "m.room.member":
            user = str_at(ev, "state_key")
            if user is None:
                continue
            display = str_at(ev, "content", "displayname")
            if user == sender:
                sender_name = display
            if str_at(ev, "content", "membership") == "join":
                joined.append((user, display))
        elif kind == "m.room.name" and str_at(ev, "state_key") == "":
            name = str_at(ev, "content", "name")
            room_name = name if name else None
    joined.sort(key=lambda m: (m[0], m[1] is not None, m[1] or ""))
    return joined, sender_name, room_name


def notify_body(event, user, pusher, decision, sender_name, room_name):
    _, sound, highlight = decision
    tweaks = {}
    if sound:
        tweaks["sound"] = "default"
        tweaks["highlight"] = highlight
    elif highlight:
        tweaks["highlight"] = True
    data = {k: v for k, v in pusher.get("data", {}).items() if k not in ("url", "format")}
    n = {
        "id": event.get("event_id"), "event_id": event.get("event_id"),
        "room_id": event.get("room_id"), "type": event.get("type"),
        "sender": event.get("sender"), "prio": "high" if sound or highlight else "low",
        "counts": {},
        "devices": [{"app_id": pusher["app_id"], "pushkey": pusher["pushkey"],
                     "pushkey_ts": pusher.get("pushkey_ts", 0), "data": data, "tweaks": tweaks}],
    }
    if "content" in event:
        n["content"] = event["content"]
    if str_at(event, "type") == "m.room.member":
        membership = str_at(event, "content", "membership")
        if membership is not None:
            n["membership"] = membership
        n["user_is_target"] = str_at(event, "state_key") == user
    if sender_name is not None:
        n["sender_display_name"] = sender_name
    if room_name is not None:
        n["room_name"] = room_name
    return {"notification": n}


def to_json(value):
    """JSON as serde_json writes a `Value`: sorted keys, no spaces, non-ASCII as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def worth_fetching(row):
    if row.get("kind") != "ev" or row.get("rejected") is True or row.get("outlier") is True:
        return False
    if not isinstance(row.get("event_id"), str) or not isinstance(row.get("room_id"), str):
        return False
    kind = row.get("type")
    if kind == "m.room.member":
        return row.get("membership") == "invite"
    if kind == "m.reaction":
        return False
    return row.get("state_key") is None


def encode(segment):
    return urllib.parse.quote(segment, safe="-._~")


# ----------------------------------------------------------------------------------------------
# Host calls: synchronous wasi:http (the bindings componentize-py generates for the world
# `streamhost plugin build` writes when plugin.toml asks for `http`) and the `push` import.

def http_get(url):
    """GET `url` over wasi:http/outgoing-handler; (status, body bytes). Blocks until done."""

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise streamhost.Fatal(f"invalid URL {url}")
    request = t.OutgoingRequest(t.Fields())
    request.set_method(t.Method_Get())
    request.set_scheme(t.Scheme_Https() if parts.scheme == "https" else t.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    try:
        future = outgoing_handler.handle(request, None)
    except Err as error:
        raise _http_error(url, error.value) from None
    with future.subscribe() as pollable:
        pollable.block()
    answer = future.get()  # Optional[Result[Result[IncomingResponse, ErrorCode], None]]
    if answer is None or isinstance(answer, Err):
        raise streamhost.Retry(f"GET {url}: no response")
    inner = answer.value
    if isinstance(inner, Err):
        raise _http_error(url, inner.value)
    response = inner.value
    status = response.status()
    body = response.consume()
    stream = body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(65536))
        except Err as error:
            if isinstance(error.value, streams.StreamError_Closed):
                break
            raise streamhost.Retry(f"GET {url}: reading the body failed") from None
    stream.__exit__(None, None, None)
    body.__exit__(None, None, None)
    response.__exit__(None, None, None)
    return status, b"".join(chunks)


def _http_error(url, code):
    if isinstance(code, (t.ErrorCode_HttpRequestDenied, t.ErrorCode_HttpRequestUriInvalid)):
        return streamhost.Fatal(f"GET {url}: refused by the host ({type(code).__name__})")
    return streamhost.Retry(f"GET {url}: {type(code).__name__}")


def push(destination, key, body):
    """The host's `push` import; a refusal is fatal (it would be refused on every retry)."""
    try:
        _push.push(destination, key, body)
    except Err as error:
        raise streamhost.Fatal(f"push {key} to {destination}: {error.value}") from None


class Missing(Exception):
    """Synapse does not show the event (403/404): it is skipped."""


def get_json(url):
    status, body = http_get(url)
    text = body.decode("utf-8", "replace")
    if 200 <= status < 300:
        try:
            return json.loads(body)
        except ValueError as error:
            raise streamhost.Fatal(f"{url}: answer is not JSON: {error}") from None
    if status in (403, 404):
        raise Missing(f"{url}: {status} {text}")
    if status == 429 or 500 <= status < 600:
        raise streamhost.Retry(f"{url}: {status} {text}")
    raise streamhost.Fatal(f"{url}: {status} {text}")


def process(config, data):
    """[(key, body bytes)] for one row's data."""
    if not data.lstrip().startswith("{"):
        return []
    try:
        row = json.loads(data)
    except ValueError:
        return []
    if not isinstance(row, dict) or not worth_fetching(row):
        return []
    event_id, room_id = row["event_id"], row["room_id"]
    base = config["synapse"].rstrip("/")
    url = f"{base}/_synapse/admin/v1/rooms/{encode(room_id)}/context/{encode(event_id)}?limit=0"
    try:
        answer = get_json(url)
    except Missing:
        return []
    event = answer.get("event") if isinstance(answer, dict) else None
    if event is None:
        raise streamhost.Fatal(f"{url}: no `event` in the answer")
    joined, sender_name, room_name = from_state(event, answer.get("state"))
    users = candidates(event, joined)
    out = []
    for user in config["users"]:
        uid = user["user_id"]
        if uid not in users:
            continue
        decision = evaluate(event, uid, joined, config.get("messages", False))
        if decision is None:
            continue
        for pusher in user["pushers"]:
            body = notify_body(event, uid, pusher, decision, sender_name, room_name)
            out.append((f"{event_id}/{uid}/{pusher['pushkey']}", to_json(body).encode()))
    return out


class MatrixPusher(streamhost.Plugin):
    name = "matrix-pusher-py"
    version = "0.1.0"
    streams = ["events"]

    def __init__(self, config, resume_after):
        # streamhost.py hands the grant's config already parsed.
        self.config = config
        if not isinstance(config, dict) or not {"synapse", "gateway", "users"} <= config.keys():
            raise streamhost.Fatal("matrix-pusher configuration: synapse, gateway and users are required")
        if self.config.get("api", "admin") != "admin":
            raise streamhost.Fatal("matrix-pusher-py reads Synapse's admin API only")

    def on_batch(self, batch):
        for row in batch.rows:
            for key, body in process(self.config, row.data):
                push(self.config["gateway"], key, body)
        return []


Handler = streamhost.export(MatrixPusher)
