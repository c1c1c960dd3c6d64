// Streamhost plugins in JavaScript: the helper layer over the bindings componentize-js makes
// from the WIT in wit/ (the twin of guest-sdk/python/streamhost.py; see
// docs/plugins-javascript.md).
//
// A plugin is a class extending `Plugin`; its module (`plugin.js`) imports this file as
// "streamhost" and ends with `export const handler = exportPlugin(MyPlugin);`. Rows come as
// `Row` objects, effects are plain objects made by `invalidate`, `invalidateAll` and `notify`,
// and failures are the exceptions `Retry`, `Skip` and `Fatal`. Any other exception escaping a
// handler becomes a `fatal` plugin error whose message starts with the file, line and column
// it was thrown at (`plugin.js:7:13: TypeError: ...`); its stack goes to the guest's stderr.
// Tokens are BigInt (WIT s64), as componentize-js passes them.
//
//     import { Plugin, exportPlugin, invalidate } from "streamhost";
//
//     class Counter extends Plugin {
//       static name = "counter";
//       static streams = ["messages"];
//       static queries = [{ name: "count", cache: "count", key: "all" }];
//       count = 0;
//       onBatch(batch) {
//         this.count += batch.rows.length;
//         return [invalidate("count", "all")];
//       }
//       query(name, args) {
//         return String(this.count);
//       }
//     }
//
//     export const handler = exportPlugin(Counter);
//
// `streamhost plugin build` writes `streamhost-imports.js` beside this file: it re-exports the
// host interfaces the plugin's world imports, and only those (`kv` with `kv = true`, `rows`
// with `read_rows`, `push` with `push = [...]`), because the host refuses a component importing what it did not ask for.

import * as host from "./streamhost-imports.js";

// ---------------------------------------------------------------------------------------------
// Rows and batches

// Only texts matching one of these can break the strict rules of `parseJson`, so only they
// are walked: a surrogate escape, an exponent, a number too long for a double, and (for texts
// long enough to hold them) 128 brackets.
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const BIG_NUMBER = /\d[eE]|\d{309}/;
const MAX_DEPTH = 127;
const STRING_LITERAL = /"(?:[^"\\]|\\.)*"/g;
const MANY_BRACKETS = /^(?:[^[{]*[[{]){128}/;

// Throws a SyntaxError where `value` breaks the rules `parseJson` promises.
function checkStrict(value, depth, strings, numbers) {
  if (typeof value === "string") {
    if (strings && !value.isWellFormed()) {
      throw new SyntaxError("JSON string holds a lone surrogate");
    }
  } else if (typeof value === "number") {
    if (numbers && !Number.isFinite(value)) {
      throw new SyntaxError("JSON number out of range");
    }
  } else if (value !== null && typeof value === "object") {
    if (depth > MAX_DEPTH) {
      throw new SyntaxError(`JSON nested deeper than ${MAX_DEPTH} levels`);
    }
    if (Array.isArray(value)) {
      for (const item of value) checkStrict(item, depth + 1, strings, numbers);
    } else {
      for (const key of Object.keys(value)) {
        checkStrict(key, depth, strings, false);
        checkStrict(value[key], depth + 1, strings, numbers);
      }
    }
  }
}

/**
 * Parses JSON text exactly as the Rust SDK (serde_json) does, so plugins agree across
 * languages: no NaN or Infinity, no lone surrogate escapes, numbers finite as a double,
 * nesting at most 127 levels, the last of duplicate keys wins. Throws a SyntaxError otherwise.
 */
export function parseJson(text) {
  // StarlingMonkey's JSON.parse skips a byte-order mark, which RFC 8259 (and serde_json) do
  // not allow anywhere outside a string.
  if (text.includes("\uFEFF") && text.replace(STRING_LITERAL, '""').includes("\uFEFF")) {
    throw new SyntaxError("byte-order mark outside a JSON string");
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // JSON.parse may also throw an InternalError ("too much recursion").
    throw error instanceof SyntaxError ? error : new SyntaxError(String(error));
  }
  const strings = SURROGATE_ESCAPE.test(text);
  const numbers = BIG_NUMBER.test(text);
  if (strings || numbers || (text.length >= 256 && MANY_BRACKETS.test(text))) {
    checkStrict(value, 1, strings, numbers);
  }
  return value;
}

/**
 * One row of the log: its token (BigInt), its JSON text exactly as the writer stored it, and
 * `fields`: the values of the plugin's `static fields` the host extracted from it, by name (an
 * object without prototype; a name the row lacks is not in it; integers are Numbers as
 * `JSON.parse` makes them; arrays and objects come parsed).
 */
export class Row {
  constructor(token, data, fields = Object.create(null)) {
    this.token = token;
    this.data = data;
    this.fields = fields;
  }

  /** The row parsed as JSON (see `parseJson`); throws a SyntaxError when it is not. */
  json() {
    return parseJson(this.data);
  }
}

/** How far the plugin has applied one (stream, instance): every row up to `token` (BigInt). */
export class Cursor {
  constructor(stream, instance, token) {
    this.stream = stream;
    this.instance = instance;
    this.token = token;
  }
}

// `texts` cut at the byte offsets `ends` (piece i ends at ends[i], piece 0 starts at 0): by
// UTF-16 offset when `texts` is ASCII (its length in code units is then its length in bytes),
// else through its UTF-8 bytes.
function slices(texts, ends) {
  const pieces = new Array(ends.length);
  let start = 0;
  if (texts.length === (ends.length === 0 ? 0 : ends[ends.length - 1])) {
    for (let i = 0; i < ends.length; i += 1) {
      pieces[i] = texts.slice(start, ends[i]);
      start = ends[i];
    }
    return pieces;
  }
  const raw = utf8.encode(texts);
  for (let i = 0; i < ends.length; i += 1) {
    pieces[i] = utf8Strict.decode(raw.subarray(start, ends[i]));
    start = ends[i];
  }
  return pieces;
}

// The codes of `packed-batch`'s `field-kinds` (wit/types.wit) that carry a value of their own.
const NULL = 1;
const TRUE = 3;
const INTEGER = 4;
const NUMBER = 5;
const TEXT = 6;
const JSON_VALUE = 7;

// Field value k of a packed batch as JavaScript (kind 0, absent, is never asked for); `numbers`
// is `field-scalars` read as doubles.
function fieldValue(kind, k, batch, numbers, texts) {
  switch (kind) {
    case TEXT:
      return texts[k];
    case INTEGER:
      return Number(batch.fieldScalars[k]);
    case NUMBER:
      return numbers[k];
    case JSON_VALUE:
      return parseJson(texts[k]);
    case NULL:
      return null;
    default:
      return kind === TRUE;
  }
}

// `field-scalars` (a BigInt64Array, or an array of BigInts) read as the doubles their bits are.
function asDoubles(scalars) {
  if (scalars instanceof BigInt64Array) {
    return new Float64Array(scalars.buffer, scalars.byteOffset, scalars.length);
  }
  return new Float64Array(BigInt64Array.from(scalars).buffer);
}

// The rows of a packed batch (0.4.0) with their extracted fields (row i's field j is field
// value i * n + j, its text the batch's text rows + i * n + j), `texts` its texts cut out. The
// interpreter pays per operation, so text values (the usual kind) are taken in line.
function toRows(batch, names, texts) {
  const tokens = batch.tokens;
  const rows = tokens.length;
  const typed = new Array(rows);
  const n = names.length;
  if (n === 0) {
    for (let i = 0; i < rows; i += 1) typed[i] = new Row(tokens[i], texts[i]);
    return typed;
  }
  const kinds = batch.fieldKinds;
  const values = texts.slice(rows);
  let numbers;
  for (let i = 0; i < rows; i += 1) {
    const fields = Object.create(null);
    for (let j = 0; j < n; j += 1) {
      const k = i * n + j;
      const kind = kinds[k];
      if (kind === TEXT) fields[names[j]] = values[k];
      else if (kind !== 0) {
        if (kind === NUMBER && numbers === undefined) numbers = asDoubles(batch.fieldScalars);
        fields[names[j]] = fieldValue(kind, k, batch, numbers, values);
      }
    }
    typed[i] = new Row(tokens[i], texts[i], fields);
  }
  return typed;
}

/**
 * Consecutive rows of one stream from one writer instance, tokens (BigInt) ascending.
 *
 * `rows` is an array of `Row`. An interpreter pays for every object it makes, so a plugin that
 * only needs each row's text and a few of its `fields` can read them as columns instead, without
 * a `Row` or a fields object per row: `texts` (each row's JSON text, in order), `textBytes`
 * (their lengths in UTF-8 bytes), `tokens` and `column(name)`. The host hands the batch over as
 * such columns, so `rows` is only built when it is first read.
 */
export class Batch {
  #rows;
  #packed;
  #names;
  #texts;

  constructor(stream, instance, prevToken, token, rows = []) {
    this.stream = stream;
    this.instance = instance;
    this.prevToken = prevToken;
    this.token = token;
    this.#rows = rows;
  }

  // The batch a 0.4.0 `onBatch` was given (`packed-batch`), with the fields `names`: every text
  // (rows' and text values') is cut out at once, rows wait to be asked for.
  static fromPacked(batch, names) {
    const typed = new Batch(batch.stream, batch.instance, batch.prevToken, batch.token);
    typed.#rows = undefined;
    typed.#packed = batch;
    typed.#names = names;
    typed.#texts = slices(batch.texts, batch.textEnds);
    return typed;
  }

  /** The rows, each a `Row` with its token, text and fields. */
  get rows() {
    if (this.#rows === undefined) this.#rows = toRows(this.#packed, this.#names, this.#texts);
    return this.#rows;
  }

  /** Each row's token (BigInt), in order. */
  get tokens() {
    if (this.#packed === undefined) return this.#rows.map((row) => row.token);
    return Array.from(this.#packed.tokens);
  }

  /** Each row's JSON text exactly as the writer stored it (`row.data`), in order. */
  get texts() {
    if (this.#packed === undefined) return this.#rows.map((row) => row.data);
    return this.#texts.slice(0, this.#packed.tokens.length);
  }

  /**
   * Each row's text's length in UTF-8 bytes, in order: what `new TextEncoder().encode(text)
   * .length` gives for each of `texts`, read from where the host cut the texts instead of
   * encoding them (one encode costs about as much as the rest of a row's work in a plugin that
   * only stores texts).
   */
  get textBytes() {
    if (this.#packed === undefined) return this.#rows.map((row) => utf8.encode(row.data).length);
    const ends = this.#packed.textEnds;
    const sizes = new Array(this.#packed.tokens.length);
    let start = 0;
    for (let i = 0; i < sizes.length; i += 1) {
      sizes[i] = ends[i] - start;
      start = ends[i];
    }
    return sizes;
  }

  /**
   * Field `name` of each row, in order (as in `row.fields`), `absent` (by default `undefined`)
   * where the row lacks it. `name` must be one of the plugin's `static fields` (a batch made by
   * hand from rows has no such list and reads `row.fields`).
   */
  column(name, absent = undefined) {
    if (this.#packed === undefined) {
      return this.#rows.map((row) => (name in row.fields ? row.fields[name] : absent));
    }
    const j = this.#names.indexOf(name);
    if (j < 0) {
      throw new TypeError(`"${name}" is not one of the plugin's \`fields\` (${this.#names.join(", ")})`);
    }
    const batch = this.#packed;
    const kinds = batch.fieldKinds;
    const rows = batch.tokens.length;
    const n = this.#names.length;
    const values = this.#texts.slice(rows);
    const column = new Array(rows);
    let numbers;
    for (let i = 0, k = j; i < rows; i += 1, k += n) {
      const kind = kinds[k];
      if (kind === TEXT) column[i] = values[k];
      else if (kind === 0) column[i] = absent;
      else {
        if (kind === NUMBER && numbers === undefined) numbers = asDoubles(batch.fieldScalars);
        column[i] = fieldValue(kind, k, batch, numbers, values);
      }
    }
    return column;
  }
}

// ---------------------------------------------------------------------------------------------
// Effects and errors

/** Evict `key` from the query cache `cache`. */
export function invalidate(cache, key) {
  return { type: "invalidate", cache, key };
}

/** Evict every key of the query cache `cache`. */
export function invalidateAll(cache) {
  return { type: "invalidate-all", cache };
}

/** Wake the clients waiting on `topic` with `payload`. */
export function notify(topic, payload) {
  return { type: "notify", topic, payload };
}

/** Base of the failures a plugin reports; throw one of the subclasses. */
export class PluginError extends Error {
  name = "PluginError";
  get kind() {
    return "fatal";
  }
}

/** Something transient: the host calls again with the same batch. */
export class Retry extends PluginError {
  name = "Retry";
  get kind() {
    return "retry";
  }
}

/** This batch can never be handled: the host records a dead letter and moves on. */
export class Skip extends PluginError {
  name = "Skip";
  get kind() {
    return "skip";
  }
}

/** The plugin cannot go on: the host retries on a fresh instance, then quarantines it. */
export class Fatal extends PluginError {
  name = "Fatal";
}

// The WIT `effect` variant of one of the plain effect objects above.
function toWitEffect(effect) {
  switch (effect?.type) {
    case "invalidate":
      return { tag: "invalidate", val: { cache: effect.cache, key: effect.key } };
    case "invalidate-all":
      return { tag: "invalidate-all", val: effect.cache };
    case "notify":
      return { tag: "notify", val: { topic: effect.topic, payload: effect.payload } };
    default:
      throw new Fatal(
        `not an effect: ${JSON.stringify(effect)} (use invalidate, invalidateAll or notify)`,
      );
  }
}

// ---------------------------------------------------------------------------------------------
// Host interfaces

/** Log lines for the operator (rate-limited by the host, each cut to 1 KiB). */
export const log = {
  debug: (message) => host.log.log("debug", String(message)),
  info: (message) => host.log.log("info", String(message)),
  warn: (message) => host.log.log("warn", String(message)),
  error: (message) => host.log.log("error", String(message)),
};

/** Counters exported on the host's `/metrics`. */
export const counters = {
  add: (name, delta = 1) => host.counters.add(name, BigInt(delta)),
};

/** Wall-clock time. */
export const clock = {
  /** Milliseconds since the Unix epoch, as a Number (like `Date.now()`). */
  nowMs: () => Number(host.clock.nowMs()),
};

// The `kv` interface, when the plugin's world imports it.
function kvImport() {
  if (!host.kv) {
    throw new Fatal("the key-value store is not imported: set `kv = true` in plugin.toml");
  }
  return host.kv;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/**
 * The plugin's key-value store (needs `kv = true` in plugin.toml). Writes made in `onBatch`
 * commit with the plugin's cursor; a failed call's writes are discarded.
 */
export const kv = {
  /** The bytes (Uint8Array) under `key`, or undefined when absent. */
  get: (key) => kvImport().get(key),

  /** Stores `value` (a Uint8Array, or a string stored as UTF-8); throws Fatal when refused. */
  set(key, value) {
    const bytes = typeof value === "string" ? utf8.encode(value) : value;
    try {
      kvImport().set(key, bytes);
    } catch (error) {
      throw new Fatal(`kv set of ${JSON.stringify(key)} refused: ${error.payload ?? error}`);
    }
  },

  /** Removes `key`; removing a missing key does nothing. */
  delete: (key) => kvImport().delete(key),

  /** The value under `key` parsed as JSON (see `parseJson`), or undefined when absent. */
  getJson(key) {
    const bytes = kv.get(key);
    if (bytes === undefined) return undefined;
    try {
      return parseJson(utf8Strict.decode(bytes));
    } catch (error) {
      throw new Fatal(`kv value of ${JSON.stringify(key)} is not JSON: ${error.message}`);
    }
  },

  /** Stores `value` as compact JSON text. */
  setJson: (key, value) => kv.set(key, JSON.stringify(value)),
};

/** Read-only access to the writer's log (needs the stream in `read_rows`). */
export const rows = {
  /** Up to `limit` rows of `stream` above `fromToken` (BigInt); throws Retry on failure. */
  read(stream, fromToken, limit = 1000) {
    if (!host.rows) {
      throw new Fatal("rows are not imported: list the stream in `read_rows` in plugin.toml");
    }
    let found;
    try {
      found = host.rows.read(stream, BigInt(fromToken), limit);
    } catch (error) {
      throw new Retry(`reading ${stream} failed: ${error.payload ?? error}`);
    }
    return found.map((r) => new Row(r.token, r.data));
  },
};

/**
 * Pushes to destinations the operator declared (needs the destination in `push = [...]` in
 * plugin.toml and the grant). A push made in `onBatch` is written to the reader's outbox with
 * the plugin's cursor and delivered later with `key` as its `Idempotency-Key`; the pushes of a
 * failed call are discarded. A refused push throws: Skip when this input cannot be pushed
 * (`too-large`, `bad-key`, `too-many`), Fatal when nothing can be (`not-granted`,
 * `not-in-batch`); the message names the refusal.
 */
export const push = {
  /** Queues `body` (a Uint8Array, or a string sent as UTF-8) for `destination` under `key`. */
  push(destination, key, body) {
    if (!host.push) {
      throw new Fatal("push is not imported: list the destination in `push` in plugin.toml");
    }
    const bytes = typeof body === "string" ? utf8.encode(body) : body;
    try {
      host.push.push(destination, key, bytes);
    } catch (error) {
      const reason = error.payload ?? String(error);
      const message = `push ${JSON.stringify(key)} to ${JSON.stringify(destination)} refused: ${reason}`;
      if (["too-large", "bad-key", "too-many"].includes(reason)) throw new Skip(message);
      throw new Fatal(message);
    }
  },

  /** Queues `value` as compact JSON text. */
  pushJson: (destination, key, value) => push.push(destination, key, JSON.stringify(value)),
};

// ---------------------------------------------------------------------------------------------
// The plugin and its export

/**
 * Base class of a plugin. Subclasses set the static fields and override what they need;
 * `constructor(config, resumeAfter)` receives the operator's configuration (parsed JSON) and
 * the cursors the next batches follow.
 */
export class Plugin {
  // `static name`, the plugin's name, must equal the `name` in plugin.toml (without it, the
  // class's own name would be described).

  /** The plugin's own version, for operators. */
  static version = "0.1.0";
  /** The streams whose batches it wants (`*` = every granted stream). */
  static streams = [];
  /** The reads it answers: `{ name, cache, key }`, `key` a template such as `room:{room}`. */
  static queries = [];
  /** Whether `snapshot` and `restore` carry its state across a reload. */
  static snapshots = false;
  /**
   * Row fields the host extracts into `Row.fields`: top-level names (`"room"`) or paths through
   * nested objects, keys joined by dots (`"content.body"`). Reading them needs no JSON parsing.
   */
  static fields = [];

  constructor(config, resumeAfter) {}

  /** Handles one batch; returns its effects. */
  onBatch(batch) {
    return [];
  }

  /** Answers a read; `args` maps each parameter to its first value (no prototype). */
  query(name, args) {
    throw new Fatal(`unknown query \`${name}\``);
  }

  /** In-memory state to carry across a reload (when `snapshots` is true), as a Uint8Array. */
  snapshot() {
    return new Uint8Array();
  }

  /** A new instance from what `snapshot` saved; by default a fresh one. */
  static restore(config, state, resumeAfter) {
    return new this(config, resumeAfter);
  }
}

// A stack frame's place, as StarlingMonkey writes it: `name@file:line:column`.
const STACK_PLACE = /@(?:.*\/)?([^/@]+):(\d+):(\d+)$/;

// `plugin.js:7:13: ` for the innermost frame of `error`'s stack in the plugin's own files
// (not this helper layer); else that of the innermost frame; empty without a stack.
function where(error) {
  const places = String(error.stack ?? "")
    .split("\n")
    .map((line) => STACK_PLACE.exec(line.trim()))
    .filter((place) => place !== null);
  const own = places.filter((place) => !place[1].startsWith("streamhost"));
  const place = own[0] ?? places[0];
  return place ? `${place[1]}:${place[2]}:${place[3]}: ` : "";
}

// The WIT error of anything a handler threw: a PluginError keeps its kind, anything else is
// `fatal`, its message starting with the file, line and column it was thrown at, and its
// stack on stderr.
function toWitError(error) {
  if (error instanceof PluginError) {
    return { kind: error.kind, message: error.message };
  }
  const message =
    error instanceof Error
      ? `${where(error)}${error.name}: ${error.message}`
      : `${typeof error}: ${error}`;
  console.error(error instanceof Error ? `${message}\n${error.stack}` : message);
  return { kind: "fatal", message };
}

// Runs `call` and returns the WIT result componentize-js expects, never throwing (a throw
// would trap instead of reporting the error).
function guarded(call) {
  try {
    return { tag: "ok", val: call() };
  } catch (error) {
    return { tag: "err", val: toWitError(error) };
  }
}

function parseConfig(config) {
  try {
    return JSON.parse(config);
  } catch (error) {
    throw new Fatal(`configuration is not JSON: ${error.message}`);
  }
}

const toCursors = (resumeAfter) => resumeAfter.map((c) => new Cursor(c.stream, c.instance, c.token));

/**
 * The `handler` interface componentize-js exports for `PluginClass`: assign it to the
 * module's `handler` export. One plugin object lives per instance, made by `init` or `restore`.
 */
export function exportPlugin(PluginClass) {
  if (!(PluginClass.prototype instanceof Plugin)) {
    throw new TypeError("exportPlugin() takes a class extending Plugin");
  }
  let plugin;
  const current = () => {
    if (plugin === undefined) throw new Fatal("called before init");
    return plugin;
  };
  return {
    describe: () => ({
      name: PluginClass.name,
      version: PluginClass.version,
      streams: [...PluginClass.streams],
      queries: PluginClass.queries.map((q) => ({ name: q.name, cache: q.cache, key: q.key })),
      snapshots: Boolean(PluginClass.snapshots),
    }),

    init: (config, resumeAfter) =>
      guarded(() => {
        plugin = new PluginClass(parseConfig(config), toCursors(resumeAfter));
      }),

    wantedFields: () => [...PluginClass.fields],

    onBatch: (batch) =>
      guarded(() => {
        const typed = Batch.fromPacked(batch, PluginClass.fields);
        const effects = current().onBatch(typed) ?? [];
        return Array.from(effects, toWitEffect);
      }),

    query: (name, args) =>
      guarded(() => {
        const byName = Object.create(null);
        for (const [key, value] of args) {
          if (!(key in byName)) byName[key] = value;
        }
        const answer = current().query(name, byName);
        if (typeof answer !== "string") {
          throw new Fatal(`query \`${name}\` returned ${typeof answer}, not a string`);
        }
        return answer;
      }),

    snapshot: () => guarded(() => new Uint8Array(current().snapshot())),

    restore: (config, state, resumeAfter) =>
      guarded(() => {
        const restored = PluginClass.restore(parseConfig(config), state, toCursors(resumeAfter));
        if (!(restored instanceof PluginClass)) {
          throw new Fatal("restore() must return an instance of the plugin class");
        }
        plugin = restored;
      }),
  };
}
