"""Streamhost plugins in Python: the helper layer over the bindings componentize-py generates.

A plugin is a subclass of `Plugin`; its module ends with `Handler = export(MyPlugin)`. Rows
come as `Row` objects, effects are plain `Invalidate`, `InvalidateAll` and `Notify` objects,
and failures are the exceptions `Retry`, `Skip` and `Fatal`. Any other exception escaping a
handler becomes a `fatal` plugin error whose message starts with the file and line it was
raised at (`plugin.py:12: KeyError: 'body'`); its whole traceback goes to stderr, which the
host keeps in the failure report. See docs/plugins-python.md.

    class Counter(streamhost.Plugin):
        name = "counter"
        version = "0.1.0"
        streams = ["messages"]
        queries = [streamhost.Query("count", cache="count", key="all")]

        def __init__(self, config, resume_after):
            self.count = 0

        def on_batch(self, batch):
            self.count += len(batch.rows)
            return [streamhost.Invalidate("count", "all")]

        def query(self, name, args):
            return str(self.count)

    Handler = streamhost.export(Counter)
"""

import importlib
import json
import math
import re
import struct
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Union

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import clock as _clock
from wit_world.imports import counters as _counters
from wit_world.imports import log as _log
try:
    from wit_world.imports import types as _types
except ImportError:  # a world importing wasi:http too names it after its package
    from wit_world.imports import streamhost_plugin_types as _types

__all__ = [
    "Batch", "Cursor", "Fatal", "Invalidate", "InvalidateAll", "Notify", "Plugin", "PluginError",
    "Query", "Retry", "Row", "Skip", "clock", "counters", "export", "kv", "log", "push", "rows",
]


# ----------------------------------------------------------------------------------------------
# Rows and batches


# Only texts matching one of these can break the strict rules below, so only they are walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BIG_NUMBER = re.compile(r"\d[eE]|\d{309}")  # an exponent follows a digit; "hello" is not one
_MAX_DEPTH = 127


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_strict(value: Any, depth: int, check_strings: bool, check_numbers: bool) -> None:
    """Raises ValueError where `value` breaks the rules `parse_json` promises."""
    if isinstance(value, (dict, list)):
        if depth > _MAX_DEPTH:
            raise ValueError(f"JSON nested deeper than {_MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if check_strings and isinstance(key, str):
                key.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError (a ValueError)
            _check_strict(item, depth + 1, check_strings, check_numbers)
    elif check_strings and isinstance(value, str):
        value.encode("utf-8")
    elif check_numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise ValueError("JSON number out of range")


def parse_json(text: str) -> Any:
    """Parses JSON text exactly as the Rust SDK (serde_json) does, so plugins agree across
    languages: no NaN or Infinity, no lone surrogate escapes, numbers finite as a double,
    nesting at most 127 levels, the last of duplicate keys wins. Raises ValueError otherwise."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    check_strings = _SURROGATE_ESCAPE.search(text) is not None
    check_numbers = _BIG_NUMBER.search(text) is not None
    deep = text.count("[") + text.count("{") > _MAX_DEPTH
    if check_strings or check_numbers or deep:
        try:
            _check_strict(value, 1, check_strings, check_numbers)
        except OverflowError:
            raise ValueError("JSON number out of range") from None
    return value


class Row:
    """One row of the log: its token, its JSON text exactly as the writer stored it, and
    `fields`: the values of the plugin's `fields` the host extracted from it, by name (a name
    the row lacks is not in the dict; JSON null is None, arrays and objects come parsed)."""

    __slots__ = ("token", "data", "fields")

    def __init__(self, token: int, data: str, fields: Optional[Dict[str, Any]] = None):
        self.token = token
        self.data = data
        self.fields = {} if fields is None else fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and (self.token, self.data, self.fields) == (
            other.token, other.data, other.fields)

    def __repr__(self) -> str:
        return f"Row(token={self.token!r}, data={self.data!r}, fields={self.fields!r})"

    def json(self) -> Any:
        """The row parsed as JSON (see `parse_json`); raises ValueError when it is not."""
        return parse_json(self.data)


def _slices(texts: str, ends: List[int]) -> List[str]:
    """`texts` cut at the byte offsets `ends` (piece i ends at ends[i], piece 0 starts at 0):
    by character offset when `texts` is ASCII (its length in characters is then its length in
    bytes), else through its UTF-8 bytes."""
    starts = [0]
    starts += ends[:-1]
    if len(texts) == (ends[-1] if ends else 0):
        return [texts[a:b] for a, b in zip(starts, ends)]
    raw = texts.encode()
    return [raw[a:b].decode() for a, b in zip(starts, ends)]


# The codes of `packed-batch`'s `field-kinds` (wit/types.wit) that carry a value of their own.
_NULL, _FALSE, _TRUE, _INTEGER, _NUMBER, _TEXT, _JSON = 1, 2, 3, 4, 5, 6, 7
_AS_DOUBLE = struct.Struct("<d")
_AS_S64 = struct.Struct("<q")


def _field(kind: int, k: int, batch: Any, texts: List[str]) -> Any:
    """Field value k of a packed batch as Python (kind 0, absent, is never asked for)."""
    if kind == _TEXT:
        return texts[k]
    if kind == _INTEGER:
        return batch.field_scalars[k]
    if kind == _NUMBER:
        return _AS_DOUBLE.unpack(_AS_S64.pack(batch.field_scalars[k]))[0]
    if kind == _JSON:
        return parse_json(texts[k])
    return None if kind == _NULL else kind == _TRUE


def _field_or(kind: int, k: int, batch: Any, texts: List[str], default: Any) -> Any:
    """Field value k of a packed batch as Python, `default` when it is absent."""
    return default if kind == 0 else _field(kind, k, batch, texts)


@dataclass(frozen=True)
class Cursor:
    """How far the plugin has applied one (stream, instance): every row up to `token`."""

    stream: str
    instance: str
    token: int


class Batch:
    """Consecutive rows of one stream from one writer instance, tokens ascending.

    `rows` is a list of `Row`. An interpreter pays for every object it makes, so a plugin that
    only needs each row's text and a few of its `fields` can read them as columns instead,
    without a `Row` or a dict per row: `texts` (each row's JSON text, in order), `tokens` and
    `column(name)`. The host hands the batch over as such columns, so `rows` is only built
    when it is first read."""

    __slots__ = ("stream", "instance", "prev_token", "token", "_rows", "_packed", "_names",
                 "_texts")

    def __init__(self, stream: str, instance: str, prev_token: int, token: int,
                 rows: List[Row]):
        self.stream = stream
        self.instance = instance
        self.prev_token = prev_token
        self.token = token
        self._rows: Optional[List[Row]] = rows
        self._packed: Any = None
        self._names: List[str] = []
        self._texts: List[str] = []

    @classmethod
    def _from_packed(cls, batch: Any, names: List[str]) -> "Batch":
        """The batch a 0.4.0 `on-batch` was given (`packed-batch`), with the fields `names`:
        every text (rows' and text values') is cut out at once, rows wait to be asked for."""
        typed = cls(batch.stream, batch.instance, batch.prev_token, batch.token, [])
        typed._rows = None
        typed._packed = batch
        typed._names = names
        typed._texts = _slices(batch.texts, batch.text_ends)
        return typed

    @property
    def rows(self) -> List[Row]:
        """The rows, each a `Row` with its token, text and fields."""
        if self._rows is None:
            self._rows = self._packed_rows()
        return self._rows

    @property
    def tokens(self) -> List[int]:
        """Each row's token, in order."""
        if self._packed is None:
            return [row.token for row in self.rows]
        return list(self._packed.tokens)

    @property
    def texts(self) -> List[str]:
        """Each row's JSON text exactly as the writer stored it (`row.data`), in order."""
        if self._packed is None:
            return [row.data for row in self.rows]
        return self._texts[:len(self._packed.tokens)]

    def column(self, name: str, default: Any = None) -> List[Any]:
        """Field `name` of each row, in order (as in `row.fields`), `default` where the row
        lacks it. `name` must be one of the plugin's `fields` (a batch made by hand from rows
        has no such list and reads `row.fields`)."""
        if self._packed is None:
            return [row.fields.get(name, default) for row in self.rows]
        if name not in self._names:
            raise KeyError(f"{name!r} is not one of the plugin's `fields` {self._names!r}")
        batch, n, j = self._packed, len(self._names), self._names.index(name)
        rows = len(batch.tokens)
        kinds = batch.field_kinds[j::n]
        values = self._texts[rows + j::n]
        if kinds.count(_TEXT) == rows:
            return values
        texts = self._texts[rows:]
        return [value if kind == _TEXT else _field_or(kind, i * n + j, batch, texts, default)
                for i, (kind, value) in enumerate(zip(kinds, values))]

    def _packed_rows(self) -> List[Row]:
        """The rows of the packed batch with their extracted fields (row i's field j is field
        value i * n + j, its text the batch's text rows + i * n + j).

        The interpreter pays per operation, so text values (the usual kind) are taken in line
        and one wanted field, the usual case, has a loop of its own."""
        batch, names, texts = self._packed, self._names, self._texts
        tokens = batch.tokens
        if not names:
            return [Row(token, data) for token, data in zip(tokens, texts)]
        kinds = batch.field_kinds
        values = texts[len(tokens):]
        typed = []
        if len(names) == 1:
            name = names[0]
            for k, (token, data, kind) in enumerate(zip(tokens, texts, kinds)):
                if kind == _TEXT:
                    typed.append(Row(token, data, {name: values[k]}))
                elif kind:
                    typed.append(Row(token, data, {name: _field(kind, k, batch, values)}))
                else:
                    typed.append(Row(token, data, {}))
            return typed
        n = len(names)
        for i, (token, data) in enumerate(zip(tokens, texts)):
            fields = {}
            for j, name in enumerate(names):
                k = i * n + j
                kind = kinds[k]
                if kind == _TEXT:
                    fields[name] = values[k]
                elif kind:
                    fields[name] = _field(kind, k, batch, values)
            typed.append(Row(token, data, fields))
        return typed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Batch) and (
            self.stream, self.instance, self.prev_token, self.token, self.rows) == (
            other.stream, other.instance, other.prev_token, other.token, other.rows)

    def __repr__(self) -> str:
        return (f"Batch(stream={self.stream!r}, instance={self.instance!r}, "
                f"prev_token={self.prev_token!r}, token={self.token!r}, rows={self.rows!r})")


# ----------------------------------------------------------------------------------------------
# Effects, queries and errors


@dataclass(frozen=True)
class Invalidate:
    """Evict `key` from the query cache `cache`."""

    cache: str
    key: str


@dataclass(frozen=True)
class InvalidateAll:
    """Evict every key of the query cache `cache`."""

    cache: str


@dataclass(frozen=True)
class Notify:
    """Wake the clients waiting on `topic` with `payload`."""

    topic: str
    payload: str


Effect = Union[Invalidate, InvalidateAll, Notify]


@dataclass(frozen=True)
class Query:
    """A read the plugin answers: `GET /v1/query/<plugin>/<name>`, cached in `cache` under the
    key template `key` (its `{arg}` parts are the request's arguments)."""

    name: str
    cache: str
    key: str


class PluginError(Exception):
    """Base of the failures a plugin reports; raise one of the subclasses."""

    kind = _types.ErrorKind.FATAL


class Retry(PluginError):
    """Something transient: the host calls again with the same batch."""

    kind = _types.ErrorKind.RETRY


class Skip(PluginError):
    """This batch can never be handled: the host records a dead letter and moves on."""

    kind = _types.ErrorKind.SKIP


class Fatal(PluginError):
    """The plugin cannot go on: the host retries on a fresh instance, then quarantines it."""

    kind = _types.ErrorKind.FATAL


def _to_wit_effect(effect: Effect) -> _types.Effect:
    if isinstance(effect, Invalidate):
        return _types.Effect_Invalidate(_types.Invalidation(effect.cache, effect.key))
    if isinstance(effect, InvalidateAll):
        return _types.Effect_InvalidateAll(effect.cache)
    if isinstance(effect, Notify):
        return _types.Effect_Notify(_types.Notification(effect.topic, effect.payload))
    raise Fatal(f"not an effect: {effect!r} (use Invalidate, InvalidateAll or Notify)")


# ----------------------------------------------------------------------------------------------
# Host interfaces


class log:
    """Log lines for the operator (rate-limited by the host, each cut to 1 KiB)."""

    @staticmethod
    def debug(message: str) -> None:
        _log.log(_log.Level.DEBUG, message)

    @staticmethod
    def info(message: str) -> None:
        _log.log(_log.Level.INFO, message)

    @staticmethod
    def warn(message: str) -> None:
        _log.log(_log.Level.WARN, message)

    @staticmethod
    def error(message: str) -> None:
        _log.log(_log.Level.ERROR, message)


class counters:
    """Counters exported on the host's `/metrics`."""

    @staticmethod
    def add(name: str, delta: int = 1) -> None:
        _counters.add(name, delta)


class clock:
    """Wall-clock time."""

    @staticmethod
    def now_ms() -> int:
        return _clock.now_ms()


# The host interfaces a plugin's world may leave out (kv, rows, push), kept once imported: an
# import statement runs importlib's Python code on every call, which costs as much as the call.
_imported: Dict[str, Any] = {}


def _host_interface(name: str, missing: str) -> Any:
    """The host interface `wit_world.imports.<name>`; Fatal(`missing`) when the plugin's world
    does not import it (its plugin.toml did not ask for it)."""
    if name not in _imported:
        try:
            _imported[name] = importlib.import_module(f"wit_world.imports.{name}")
        except ImportError:
            raise Fatal(missing) from None
    return _imported[name]


def _import_kv() -> Any:
    return _host_interface("kv", "the key-value store is not imported: set `kv = true` in plugin.toml")


class kv:
    """The plugin's key-value store (needs `kv = true` in plugin.toml). Writes made in
    `on_batch` commit with the plugin's cursor; a failed call's writes are discarded."""

    @staticmethod
    def get(key: str) -> Optional[bytes]:
        return _import_kv().get(key)

    @staticmethod
    def set(key: str, value: Union[bytes, str]) -> None:
        """Stores `value` (str is stored as UTF-8); raises Fatal over quota or for a bad key."""
        store = _import_kv()
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        try:
            store.set(key, data)
        except Err as refused:
            raise Fatal(f"kv set of {key!r} refused: {refused.value.name.lower()}") from None

    @staticmethod
    def delete(key: str) -> None:
        _import_kv().delete(key)

    @staticmethod
    def get_json(key: str) -> Any:
        """The value under `key` parsed as JSON, or None when absent."""
        data = kv.get(key)
        if data is None:
            return None
        try:
            return parse_json(data.decode("utf-8"))
        except ValueError as error:
            raise Fatal(f"kv value of {key!r} is not JSON: {error}") from None

    @staticmethod
    def set_json(key: str, value: Any) -> None:
        kv.set(key, json.dumps(value, separators=(",", ":"), ensure_ascii=False))


class rows:
    """Read-only access to the writer's log (needs the stream in `read_rows`)."""

    @staticmethod
    def read(stream: str, from_token: int, limit: int = 1000) -> List[Row]:
        reader = _host_interface(
            "rows", "rows are not imported: list the stream in `read_rows` in plugin.toml")
        try:
            return [Row(r.token, r.data) for r in reader.read(stream, from_token, limit)]
        except Err as refused:
            raise Retry(f"reading {stream} failed: {refused.value}") from None


class push:
    """Pushes to destinations the operator declared (needs the destination in `push = [...]`
    in plugin.toml and the grant). A push made in `on_batch` is written to the reader's outbox
    with the plugin's cursor and delivered later with `key` as its `Idempotency-Key`; the
    pushes of a failed call are discarded. A refused push raises: `Skip` when this input
    cannot be pushed (`too-large`, `bad-key`, `too-many`), `Fatal` when nothing can be
    (`not-granted`, `not-in-batch`); the message names the refusal."""

    @staticmethod
    def push(destination: str, key: str, body: Union[bytes, str]) -> None:
        """Queues `body` (str is sent as UTF-8) for `destination` under `key`."""
        interface = _host_interface(
            "push", "push is not imported: list the destination in `push` in plugin.toml")
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        try:
            interface.push(destination, key, data)
        except Err as refused:
            reason = refused.value.name.lower().replace("_", "-")
            message = f"push {key!r} to {destination!r} refused: {reason}"
            if reason in ("too-large", "bad-key", "too-many"):
                raise Skip(message) from None
            raise Fatal(message) from None

    @staticmethod
    def push_json(destination: str, key: str, value: Any) -> None:
        """Queues `value` as compact JSON text."""
        push.push(destination, key, json.dumps(value, separators=(",", ":"), ensure_ascii=False))


# ----------------------------------------------------------------------------------------------
# The plugin and its export


class Plugin:
    """Base class of a plugin. Subclasses set the class attributes and override what they
    need; `__init__(config, resume_after)` receives the operator's configuration (parsed JSON)
    and the cursors the next batches follow."""

    name: str = ""
    version: str = "0.1.0"
    streams: List[str] = []
    queries: List[Query] = []
    snapshots: bool = False
    # Row fields the host extracts into `Row.fields`: top-level names ("room") or paths through
    # nested objects, keys joined by dots ("content.body"). Reading them needs no JSON parsing.
    fields: List[str] = []

    def __init__(self, config: Any, resume_after: List[Cursor]) -> None:
        pass

    def on_batch(self, batch: Batch) -> List[Effect]:
        """Handles one batch; returns its effects."""
        return []

    def query(self, name: str, args: Dict[str, str]) -> str:
        """Answers a read; `args` are the request's parameters (first of a repeated name)."""
        raise Fatal(f"unknown query `{name}`")

    def snapshot(self) -> bytes:
        """In-memory state to carry across a reload (when `snapshots` is true)."""
        return b""

    @classmethod
    def restore(cls, config: Any, state: bytes, resume_after: List[Cursor]) -> "Plugin":
        """A new instance from what `snapshot` saved; by default a fresh one."""
        return cls(config, resume_after)


# Where componentize-py mounts the plugin's folder in the guest: its files are `/0/<path>`.
_PLUGIN_ROOT = "/0/"


def _where(error: BaseException) -> str:
    """`plugin.py:12: ` for the innermost frame of `error`'s traceback in the plugin's own
    files (not this helper layer, not the standard library); else that of the innermost
    frame; empty without a traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    own = [
        f for f in frames
        if f.filename.startswith(_PLUGIN_ROOT) and not f.filename.endswith("/streamhost.py")
    ]
    frame = (own or frames)[-1]
    filename = frame.filename
    if filename.startswith(_PLUGIN_ROOT):
        filename = filename[len(_PLUGIN_ROOT):]
    return f"{filename}:{frame.lineno}: "


def _plugin_error(error: BaseException) -> Err:
    if isinstance(error, PluginError):
        return Err(_types.PluginError(error.kind, str(error)))
    traceback.print_exception(error, file=sys.stderr)
    message = f"{_where(error)}{type(error).__name__}: {error}"
    return Err(_types.PluginError(_types.ErrorKind.FATAL, message))


def _guarded(call: Callable[[], Any]) -> Any:
    """Runs `call`, turning every exception into the WIT error the host understands."""
    try:
        return call()
    except Err:
        raise
    except Exception as error:  # noqa: BLE001 - any exception is the plugin's failure
        raise _plugin_error(error) from None


def _parse_config(config: str) -> Any:
    try:
        return json.loads(config)
    except ValueError as error:
        raise Fatal(f"configuration is not JSON: {error}") from None


def _cursors(resume_after: List[_types.Cursor]) -> List[Cursor]:
    return [Cursor(c.stream, c.instance, c.token) for c in resume_after]


def export(plugin_class: type) -> type:
    """The `Handler` class componentize-py exports for `plugin_class`: assign it to a module
    global named `Handler`. One plugin object lives per instance, created by `init` or
    `restore`."""
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, Plugin)):
        raise TypeError("export() takes a subclass of streamhost.Plugin")
    instance: List[Plugin] = []

    def plugin() -> Plugin:
        if not instance:
            raise Fatal("called before init")
        return instance[0]

    def start(make: Callable[[], Plugin]) -> None:
        instance.clear()
        instance.append(make())

    class Handler(exports.Handler):
        def describe(self) -> _types.Description:
            return _types.Description(
                plugin_class.name,
                plugin_class.version,
                list(plugin_class.streams),
                [_types.QuerySpec(q.name, q.cache, q.key) for q in plugin_class.queries],
                bool(plugin_class.snapshots),
            )

        def init(self, config: str, resume_after: List[_types.Cursor]) -> None:
            _guarded(lambda: start(
                lambda: plugin_class(_parse_config(config), _cursors(resume_after))))

        def wanted_fields(self) -> List[str]:
            return list(plugin_class.fields)

        def on_batch(self, batch: _types.PackedBatch) -> List[_types.Effect]:
            def run() -> List[_types.Effect]:
                typed = Batch._from_packed(batch, plugin_class.fields)
                effects = plugin().on_batch(typed)
                return [_to_wit_effect(e) for e in effects or []]

            return _guarded(run)

        def query(self, name: str, args: List[tuple]) -> str:
            def run() -> str:
                by_name: Dict[str, str] = {}
                for key, value in args:
                    by_name.setdefault(key, value)
                answer = plugin().query(name, by_name)
                if not isinstance(answer, str):
                    raise Fatal(f"query `{name}` returned {type(answer).__name__}, not str")
                return answer

            return _guarded(run)

        def snapshot(self) -> bytes:
            return _guarded(lambda: bytes(plugin().snapshot()))

        def restore(self, config: str, state: bytes, resume_after: List[_types.Cursor]) -> None:
            _guarded(lambda: start(lambda: plugin_class.restore(
                _parse_config(config), bytes(state), _cursors(resume_after))))

    Handler.__name__ = Handler.__qualname__ = "Handler"
    return Handler
