// Unit tests of the JavaScript SDK's pure parts (reading a packed batch as rows and as
// columns), run natively by Node: `node tests/sdk/test_streamhost.mjs`. The SDK is loaded from a
// scratch folder beside an empty `streamhost-imports.js` (the host interfaces, which these
// parts never call). tests/tests/all/sdk_units.rs runs this file; the conformance suite runs
// the SDK in Wasm. (It lives outside guest-sdk/javascript, whose every file is carried into
// each JavaScript plugin's build.)

import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const scratch = mkdtempSync(join(tmpdir(), "streamhost-sdk-"));
const sdk = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "guest-sdk", "javascript");
copyFileSync(join(sdk, "streamhost.js"), join(scratch, "streamhost.js"));
writeFileSync(join(scratch, "streamhost-imports.js"), "export {};\n");
const { Batch, Row } = await import(pathToFileURL(join(scratch, "streamhost.js")).href);
rmSync(scratch, { recursive: true });

const [ABSENT, NULL, TRUE, INTEGER, NUMBER, TEXT, JSON_VALUE] = [0, 1, 3, 4, 5, 6, 7];
const encoder = new TextEncoder();

// A `packed-batch` as the bindings hand it over: `rows` ([token, text]), and per row one
// [kind, scalar, text] per field.
function packed(rows, values) {
  const texts = [...rows.map(([, text]) => text), ...values.flat().map(([, , text]) => text)];
  let at = 0;
  const textEnds = texts.map((text) => (at += encoder.encode(text).length));
  return {
    stream: "messages",
    instance: "master",
    prevToken: 4n,
    token: rows[rows.length - 1][0],
    tokens: BigInt64Array.from(rows.map(([token]) => token)),
    texts: texts.join(""),
    textEnds: Uint32Array.from(textEnds),
    fieldKinds: Uint8Array.from(values.flat().map(([kind]) => kind)),
    fieldScalars: BigInt64Array.from(values.flat().map(([, scalar]) => scalar)),
  };
}

const bitsOf = (number) => new BigInt64Array(new Float64Array([number]).buffer)[0];

const ROWS = [
  [5n, '{"room":"!a","n":1}'],
  [6n, '{"room":"!é","n":1.5}'],
  [8n, '{"n":[1]}'],
  [8n, '{"room":null,"n":true}'],
];
const VALUES = [
  [[TEXT, 0n, "!a"], [INTEGER, 1n, ""]],
  [[TEXT, 0n, "!é"], [NUMBER, bitsOf(1.5), ""]],
  [[ABSENT, 0n, ""], [JSON_VALUE, 0n, "[1]"]],
  [[NULL, 0n, ""], [TRUE, 0n, ""]],
];
const FIELDS = [{ room: "!a", n: 1 }, { room: "!é", n: 1.5 }, { n: [1] }, { room: null, n: true }];

const batch = () => Batch.fromPacked(packed(ROWS, VALUES), ["room", "n"]);
const plain = (row) => ({ token: row.token, data: row.data, fields: { ...row.fields } });

test("rows carry their tokens, texts and fields", () => {
  const b = batch();
  assert.deepEqual(b.rows.map(plain), ROWS.map(([token, data], i) => ({ token, data, fields: FIELDS[i] })));
  assert.ok(b.rows.every((row) => row instanceof Row));
  assert.deepEqual([b.stream, b.instance, b.prevToken, b.token], ["messages", "master", 4n, 8n]);
});

test("columns match the rows", () => {
  const b = batch();
  assert.deepEqual(b.texts, ROWS.map(([, text]) => text));
  assert.deepEqual(b.tokens, [5n, 6n, 8n, 8n]);
  assert.deepEqual(b.column("room"), ["!a", "!é", undefined, null]);
  assert.deepEqual(b.column("room", "-"), ["!a", "!é", "-", null]);
  assert.deepEqual(b.column("n"), [1, 1.5, [1], true]);
});

test("text lengths are in UTF-8 bytes, as an encoder counts them", () => {
  const bytes = ROWS.map(([, text]) => encoder.encode(text).length);
  assert.deepEqual(batch().textBytes, bytes);
  assert.notDeepEqual(bytes, ROWS.map(([, text]) => text.length), "a row is not ASCII");
  const b = batch();
  assert.equal(b.rows.length, 4);
  assert.deepEqual(b.textBytes, bytes);
});

test("a column not asked for is refused by name, even once rows are made", () => {
  const b = batch();
  const refusal = { name: "TypeError", message: '"body" is not one of the plugin\'s `fields` (room, n)' };
  assert.throws(() => b.column("body"), refusal);
  assert.equal(b.rows.length, 4);
  assert.throws(() => b.column("body"), refusal);
  assert.deepEqual(b.column("room", "-"), ["!a", "!é", "-", null]);
  assert.deepEqual(b.texts, ROWS.map(([, text]) => text));
});

test("a batch made by hand answers the same", () => {
  const rows = ROWS.map(([token, data], i) => new Row(token, data, Object.assign(Object.create(null), FIELDS[i])));
  const byHand = new Batch("messages", "master", 4n, 8n, rows);
  const b = batch();
  assert.deepEqual(byHand.texts, b.texts);
  assert.deepEqual(byHand.textBytes, b.textBytes);
  assert.deepEqual(byHand.tokens, b.tokens);
  assert.deepEqual(byHand.column("room", "-"), b.column("room", "-"));
  assert.deepEqual(byHand.column("n"), b.column("n"));
  assert.deepEqual(new Batch("messages", "master", 4n, 4n).rows, []);
});

test("a batch without fields has rows of empty fields", () => {
  const b = Batch.fromPacked(packed(ROWS, [[], [], [], []]), []);
  assert.deepEqual(b.rows.map(plain), ROWS.map(([token, data]) => ({ token, data, fields: {} })));
});
