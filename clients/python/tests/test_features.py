"""Unit tests of the columnar decoding, on hand-built responses: no server.
Run with `/usr/bin/python3 -m unittest discover -s tests` from
clients/python: Debian's python3, which has python3-grpcio and
python3-protobuf (the Go test client/python_test.go runs them too)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import larder  # noqa: E402
from larder import client as larder_client  # noqa: E402
from larder.v1 import larder_pb2 as pb  # noqa: E402


def response():
    r = pb.GetFeaturesResponse(row_count=3)
    r.views.add(view="u", statuses=[pb.FEATURE_STATUS_PRESENT, pb.FEATURE_STATUS_NOT_FOUND, pb.FEATURE_STATUS_STALE], event_time_micros=[5, 0, 7])
    r.generations.add(view="u", generation=4)
    r.columns.add(name="u:x", type=pb.VALUE_TYPE_FLOAT64, view=0, null_rows=[1], float64_values=[1.5, 0, -2.25])
    r.columns.add(name="u:s", type=pb.VALUE_TYPE_STRING, view=0, null_rows=[1], string_values=["a", "", "c"])
    r.columns.add(name="u:l", type=pb.VALUE_TYPE_INT64_LIST, view=0, null_rows=[1], list_lengths=[2, 0, 1], int64_list_values=[7, 8, 9])
    return r


class FeaturesTest(unittest.TestCase):
    def test_columns(self):
        f = larder.Features(response())
        self.assertEqual(f.names, ["u:x", "u:s", "u:l"])
        self.assertEqual(f.row_count, 3)
        self.assertEqual(f.type("u:l"), "int64_list")
        self.assertEqual(list(f.nulls("u:x")), [False, True, False])
        self.assertEqual(f.values("u:l"), [[7, 8], None, [9]])
        self.assertEqual(f.values("u:s"), ["a", None, "c"])
        self.assertEqual(list(f.statuses("u")), [larder.PRESENT, larder.NOT_FOUND, larder.STALE])
        self.assertEqual(list(f.event_times("u")), [5, 0, 7])
        self.assertEqual(f.generations, {"u": 4})
        self.assertEqual(f.row(0), {"u:x": 1.5, "u:s": "a", "u:l": [7, 8]})
        self.assertEqual(f.row(1), {"u:x": None, "u:s": None, "u:l": None})
        x = f.values("u:x")
        if larder_client.numpy is not None:
            self.assertEqual(str(x.dtype), "float64")
            self.assertEqual(list(x), [1.5, 0.0, -2.25])
        else:
            self.assertEqual(x, [1.5, None, -2.25])

    def test_without_numpy(self):
        saved = larder_client.numpy
        larder_client.numpy = None
        try:
            f = larder.Features(response())
            self.assertEqual(f.values("u:x"), [1.5, None, -2.25])
            self.assertEqual(f.values("u:s"), ["a", None, "c"])
            self.assertEqual(f.nulls("u:s"), [False, True, False])
        finally:
            larder_client.numpy = saved

    def test_unknown_names(self):
        f = larder.Features(response())
        with self.assertRaisesRegex(KeyError, "no column 'u:y'"):
            f.values("u:y")
        with self.assertRaisesRegex(KeyError, "no view 'v'"):
            f.statuses("v")
        with self.assertRaises(IndexError):
            f.row(3)

    def test_keys(self):
        self.assertEqual(larder_client._key(5, "k").int64_value, 5)
        self.assertEqual(larder_client._key("a", "k").string_value, "a")
        with self.assertRaisesRegex(TypeError, "keys\\[0\\]: a key is an int or a str, not a bool"):
            larder_client._key(True, "keys[0]")
        with self.assertRaisesRegex(TypeError, "not float"):
            larder_client._key(1.5, "k")
        self.assertEqual(larder_client._key(-(2**63), "k").int64_value, -(2**63))
        with self.assertRaisesRegex(ValueError, "^keys\\[0\\]: 9223372036854775808 is out of the range of an int64 key"):
            larder_client._key(2**63, "keys[0]")
        with self.assertRaisesRegex(ValueError, "^context_key: -9223372036854775809 is out of the range of an int64 key"):
            larder_client._key(-(2**63) - 1, "context_key")
        with self.assertRaisesRegex(ValueError, "^request_features\\['n'\\]: 9223372036854775808 is out of the range of an int64"):
            larder_client._value(2**63, "request_features['n']")

    def test_refuses_a_response_that_does_not_hold_together(self):
        # As the Go client does: a null row out of range (a negative one
        # would mark another row), arrays of the wrong length, a view index
        # out of range, each named; no larder server sends one.
        def bad(edit):
            r = response()
            edit(r)
            return r

        cases = [
            (lambda r: r.columns[0].null_rows.append(-1), "column 'u:x': null row -1 out of range"),
            (lambda r: r.columns[1].null_rows.append(3), "column 'u:s': null row 3 out of range"),
            (lambda r: r.columns[0].float64_values.pop(), "column 'u:x': 2 values for 3 rows"),
            (lambda r: r.columns[2].list_lengths.append(1), "column 'u:l': 4 list lengths for 3 rows"),
            (lambda r: r.columns[2].int64_list_values.append(1), "column 'u:l': 4 list elements where its lengths add up to 3"),
            (lambda r: setattr(r.columns[2], "view", 1), "column 'u:l': view 1 out of range"),
            (lambda r: r.views[0].statuses.pop(), "view 'u': 2 statuses and 3 event times for 3 rows"),
        ]
        for edit, want in cases:
            with self.assertRaisesRegex(ValueError, "^the response does not hold together: " + want.replace("(", "\\(")):
                larder.Features(bad(edit))

    def test_int_like_keys(self):
        # A key may be any int-like object but a bool (anything with
        # __index__), as numpy's integers are: the ids of a DataFrame's column.
        class Id:
            def __init__(self, n):
                self.n = n

            def __index__(self):
                return self.n

        self.assertEqual(larder_client._key(Id(7), "k").int64_value, 7)
        with self.assertRaisesRegex(ValueError, "^keys\\[1\\]: 9223372036854775808 is out of the range"):
            larder_client._key(Id(2**63), "keys[1]")
        np = larder_client.numpy
        if np is not None:
            self.assertEqual(larder_client._key(np.int64(7), "k").int64_value, 7)
            self.assertEqual(larder_client._key(np.uint16(7), "k").int64_value, 7)
            self.assertEqual(larder_client._key(np.str_("a"), "k").string_value, "a")
            with self.assertRaisesRegex(TypeError, "not a bool"):
                larder_client._key(np.bool_(True), "k")
            with self.assertRaisesRegex(TypeError, "not float64"):
                larder_client._key(np.float64(1), "k")

    def test_readme_status_example(self):
        # The README's example of statuses, with and without numpy.
        saved = larder_client.numpy
        try:
            for np in {saved, None}:
                larder_client.numpy = np
                f = larder.Features(response())
                self.assertEqual([s == larder.PRESENT for s in f.statuses("u")], [True, False, False])
        finally:
            larder_client.numpy = saved


if __name__ == "__main__":
    unittest.main()
