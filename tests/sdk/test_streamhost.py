"""Unit tests of the Python SDK's pure parts (reading a packed batch as rows and as columns),
run natively by CPython: `python3 tests/sdk/test_streamhost.py`. The modules componentize-py
generates are replaced by stand-ins, which these parts never call. tests/tests/all/sdk_units.rs
runs this file; the conformance suite runs the SDK in Wasm. (It lives outside
guest-sdk/python, whose every file is carried into each Python plugin.)"""

import struct
import sys
import types
import unittest
from pathlib import Path


class _StandIn:
    """Any attribute of a generated module the SDK's module body reads (enum cases, records)."""

    def __getattr__(self, name):
        return _StandIn()

    def __call__(self, *args, **kwargs):
        return _StandIn()


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StandIn()


def _install_generated_stand_ins():
    sys.modules["componentize_py_types"] = _StandInModule("componentize_py_types")
    sys.modules["componentize_py_types"].Err = Exception
    world = _StandInModule("wit_world")
    world.exports = _StandIn()
    sys.modules["wit_world"] = world
    imports = types.ModuleType("wit_world.imports")
    sys.modules["wit_world.imports"] = imports
    for name in ["clock", "counters", "log", "types"]:
        module = _StandInModule(f"wit_world.imports.{name}")
        setattr(imports, name, module)
        sys.modules[module.__name__] = module


_install_generated_stand_ins()
sys.dont_write_bytecode = True  # no __pycache__ beside the SDK
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-sdk" / "python"))
import streamhost  # noqa: E402
from streamhost import Batch, Row  # noqa: E402

TEXT, INTEGER, NUMBER, JSON, NULL, TRUE, ABSENT = 6, 4, 5, 7, 1, 3, 0


def packed(rows, names, values):
    """A `packed-batch` as the bindings hand it over: `rows` (token, text), and per row one
    (kind, scalar, text) per name of `names`."""
    texts = [text for _, text in rows] + [text for row in values for _, _, text in row]
    ends, at = [], 0
    for text in texts:
        at += len(text.encode())
        ends.append(at)
    return types.SimpleNamespace(
        stream="messages", instance="master", prev_token=4, token=rows[-1][0],
        tokens=[token for token, _ in rows], texts="".join(texts), text_ends=ends,
        field_kinds=[kind for row in values for kind, _, _ in row],
        field_scalars=[scalar for row in values for _, scalar, _ in row])


def bits(number):
    return struct.unpack("<q", struct.pack("<d", number))[0]


ROWS = [(5, '{"room":"!a","n":1}'), (6, '{"room":"!é","n":1.5}'), (8, '{"n":[1]}'),
        (8, '{"room":null,"n":true}')]
VALUES = [[(TEXT, 0, "!a"), (INTEGER, 1, "")], [(TEXT, 0, "!é"), (NUMBER, bits(1.5), "")],
          [(ABSENT, 0, ""), (JSON, 0, "[1]")], [(NULL, 0, ""), (TRUE, 0, "")]]
EXPECTED_ROWS = [Row(5, ROWS[0][1], {"room": "!a", "n": 1}),
                 Row(6, ROWS[1][1], {"room": "!é", "n": 1.5}),
                 Row(8, ROWS[2][1], {"n": [1]}),
                 Row(8, ROWS[3][1], {"room": None, "n": True})]


class PackedBatchTest(unittest.TestCase):
    def batch(self):
        return Batch._from_packed(packed(ROWS, ["room", "n"], VALUES), ["room", "n"])

    def test_rows_carry_their_tokens_texts_and_fields(self):
        batch = self.batch()
        self.assertEqual(batch.rows, EXPECTED_ROWS)
        self.assertEqual((batch.stream, batch.instance, batch.prev_token, batch.token),
                         ("messages", "master", 4, 8))

    def test_columns_match_the_rows_without_building_them(self):
        batch = self.batch()
        self.assertEqual(batch.texts, [text for _, text in ROWS])
        self.assertEqual(batch.tokens, [5, 6, 8, 8])
        self.assertEqual(batch.column("room"), ["!a", "!é", None, None])
        self.assertEqual(batch.column("room", "-"), ["!a", "!é", "-", None])
        self.assertEqual(batch.column("n"), [1, 1.5, [1], True])
        self.assertIsNone(batch._rows, "reading columns built the rows")

    def test_a_column_of_text_values_only_takes_the_fast_path(self):
        rows = [(1, '{"room":"!a"}'), (2, '{"room":"!b"}')]
        values = [[(TEXT, 0, "!a")], [(TEXT, 0, "!b")]]
        batch = Batch._from_packed(packed(rows, ["room"], values), ["room"])
        self.assertEqual(batch.column("room"), ["!a", "!b"])
        self.assertEqual([row.fields for row in batch.rows], [{"room": "!a"}, {"room": "!b"}])

    def test_a_column_not_asked_for_is_refused_by_name_even_once_rows_are_made(self):
        batch = self.batch()
        with self.assertRaisesRegex(KeyError, "'body' is not one of the plugin's `fields`"):
            batch.column("body")
        self.assertEqual(batch.rows, EXPECTED_ROWS)
        with self.assertRaisesRegex(KeyError, "'body' is not one of the plugin's `fields`"):
            batch.column("body")
        self.assertEqual(batch.column("room", "-"), ["!a", "!é", "-", None])
        self.assertEqual(batch.texts, [text for _, text in ROWS])

    def test_a_batch_made_by_hand_answers_the_same(self):
        batch = Batch("messages", "master", 4, 8, EXPECTED_ROWS)
        self.assertEqual(batch, self.batch())
        self.assertEqual(batch.texts, self.batch().texts)
        self.assertEqual(batch.tokens, self.batch().tokens)
        self.assertEqual(batch.column("room", "-"), self.batch().column("room", "-"))
        self.assertEqual(batch.column("n"), self.batch().column("n"))

    def test_a_batch_without_fields_has_rows_of_empty_fields(self):
        batch = Batch._from_packed(packed(ROWS, [], [[], [], [], []]), [])
        self.assertEqual([(row.token, row.data, row.fields) for row in batch.rows],
                         [(token, text, {}) for token, text in ROWS])


if __name__ == "__main__":
    unittest.main()
