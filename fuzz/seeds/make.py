#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the project's own test vectors: the
protocol vectors (host/proto/tests/fixtures/vectors.json), the real Synapse capture
(host/server/tests/fixtures/real-session-1.txt), the example plugins' plugin.toml and the
deployment configurations. Run from the repository root; the output is committed."""
import hashlib, json, pathlib, re

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
# Read size 64, line cap 2,040 bytes: the two bytes the line targets read first.
LINE_PREFIX = b"\x3f\xff"


def put(target, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


vectors = json.loads((ROOT / "host/proto/tests/fixtures/vectors.json").read_text())
capture = (ROOT / "host/server/tests/fixtures/real-session-1.txt").read_text().splitlines()
server, client, redis = [], [], []
for line in capture:
    if line.startswith("S "):
        server.append(line[2:])
    elif line.startswith("C "):
        client.append(line[2:])
    elif line.startswith("P "):
        redis.append(line[2:].split(" ", 1)[1])

for v in vectors["valid"]:
    if v["direction"] != "server->client":
        put("lines_from_client", LINE_PREFIX + v["line"].encode() + b"\n")
    if v["direction"] != "client->server":
        put("lines_from_server", LINE_PREFIX + v["line"].encode() + b"\n")
for v in vectors["invalid"]:
    line = v["line"].encode() if "line" in v else bytes.fromhex(v["line_hex"])
    for target in ("lines_from_server", "lines_from_client"):
        put(target, LINE_PREFIX + line + b"\n")
put("lines_from_client", LINE_PREFIX + "\n".join(client).encode() + b"\n")
for lines in (server, redis):
    for i in range(0, len(lines), 8):
        put("lines_from_server", LINE_PREFIX + "\n".join(lines[i : i + 8]).encode() + b"\n")

rows = []
for line in server + redis:
    parts = line.split(" ", 4)
    if parts[0] == "RDATA" and len(parts) == 5:
        rows.append((parts[1], parts[4]))
for _, row in rows:
    put("json_row", row.encode())
for text in ["[]", "{}", '" \\u00e9\\ud83d\\ude00"', "1e5", "-0.0", "1.5E-7", "12345678901234567890123",
             '{"a":1,"a":[true,false,null]}', " [ 1 , 2 ]\r\n", "[[[[[[[[]]]]]]]]"]:
    put("json_row", text.encode())

rows_src = (ROOT / "host/server/src/reader/upstream/synapse/rows.rs").read_text()
table = rows_src[rows_src.index("const STREAMS") : rows_src.index("const EVENT_KINDS")]
streams = ["events", "federation"] + re.findall(r'^    \(\n        "([a-z_]+)"', table, re.M)
for stream, row in rows:
    pick = streams.index(stream) if stream in streams else len(streams)
    put("synapse_rows", bytes([pick]) + row.encode())

for i in range(0, len(rows), 6):
    put("append_body", b"\x0f[" + ",".join(r for _, r in rows[i : i + 6]).encode() + b"]")
put("append_body", b"\x00[]")


def bulk(data):
    return b"$%d\r\n%s\r\n" % (len(data), data)


def message(body):
    return b"*3\r\n" + bulk(b"message") + bulk(b"matrix.example") + bulk(body)


subscribed = b"*3\r\n" + bulk(b"subscribe") + bulk(b"matrix.example") + b":1\r\n"
pong = b"*2\r\n" + bulk(b"pong") + bulk(b"")
for i in range(0, len(redis), 10):
    messages = b"".join(message(line.encode()) for line in redis[i : i + 10])
    put("redis_replies", bytes([i % 256]) + subscribed + messages + pong)
put("redis_replies", b"\x80+OK\r\n-ERR wrong\r\n:-42\r\n$-1\r\n*-1\r\n*2\r\n*1\r\n:1\r\n+PONG\r\n")

for uri in ["/_synapse/replication/get_repl_stream_updates/events/x?from_token=10&upto_token=25",
            "/x?from_token=-1&upto_token=%2B5", "/v1/admin/plugins/p/dead-letters?limit=10",
            "/x?b=2&a=%21x%3A1&a=no&c&d=a+b&&e=%zz", "/v1/query/q?room=%21abc%3Aexample.org&since=0"]:
    put("query_string", uri.encode())

for path in sorted(ROOT.glob("plugins/**/plugin.toml")):
    put("plugin_manifest", path.read_bytes())
for path in sorted(ROOT.glob("deploy/**/*.toml")):
    put("config_toml", path.read_bytes())
docs = (ROOT / "docs/configuration.md").read_text()
for block in re.findall(r"```toml\n(.*?)```", docs, re.S):
    put("config_toml", block.encode())
