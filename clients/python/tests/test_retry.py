"""Tests of the client's retries, against a FeatureService served in this
process that answers UNAVAILABLE as larder's server does: after sending
its headers (the request id), which keeps gRPC's own retry policy from
retrying the call."""

import os
import sys
import threading
import time
import unittest
from concurrent import futures

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import larder  # noqa: E402
from larder.v1 import larder_pb2 as pb  # noqa: E402
from larder.v1 import larder_pb2_grpc  # noqa: E402


class _Service(larder_pb2_grpc.FeatureServiceServicer):
    """Answers the first `failures` calls with `code`, each after sending
    an x-request-id header, and the next ones with a response of one row."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0
        self.failures = 0
        self.code = grpc.StatusCode.UNAVAILABLE

    def _answer(self, context, response):
        with self.lock:
            self.calls += 1
            fail = self.calls <= self.failures
        context.send_initial_metadata((("x-request-id", f"req-{self.calls}"),))
        if fail:
            context.abort(self.code, "the store cannot be reached")
        return response

    def GetFeatures(self, request, context):
        self.keys = [k.string_value if k.HasField("string_value") else k.int64_value for k in request.keys]
        return self._answer(context, pb.GetFeaturesResponse(row_count=len(request.keys)))

    def Rank(self, request, context):
        self.candidates = [k.string_value if k.HasField("string_value") else k.int64_value for k in request.candidate_keys]
        return self._answer(context, pb.RankResponse(model_version="v1"))

    def ListViews(self, request, context):
        return self._answer(context, pb.ListViewsResponse())


class RetryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.service = _Service()
        cls.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        larder_pb2_grpc.add_FeatureServiceServicer_to_server(cls.service, cls.server)
        port = cls.server.add_insecure_port("127.0.0.1:0")
        cls.server.start()
        cls.target = f"127.0.0.1:{port}"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(None)

    def setUp(self):
        self.service.calls = 0
        self.service.code = grpc.StatusCode.UNAVAILABLE

    def test_retries_unavailable(self):
        self.service.failures = 2
        with larder.Client(self.target) as c:
            f = c.get_features([1, 2], ["u:x"])
        self.assertEqual(f.row_count, 2)
        self.assertEqual(self.service.calls, 3)

    def test_without_a_deadline(self):
        self.service.failures = 1
        with larder.Client(self.target, timeout=None) as c:
            self.assertEqual(c.get_features([1], ["u:x"]).row_count, 1)
        self.assertEqual(self.service.calls, 2)

    def test_every_method(self):
        with larder.Client(self.target) as c:
            self.service.calls, self.service.failures = 0, 1
            self.assertEqual(c.rank("r", 1).model_version, "v1")
            self.assertEqual(self.service.calls, 2)
            self.service.calls, self.service.failures = 0, 1
            self.assertEqual(c.list_views(), [])
            self.assertEqual(self.service.calls, 2)

    def test_gives_up_after_4_attempts(self):
        self.service.failures = 100
        with larder.Client(self.target) as c:
            with self.assertRaises(larder.LarderError) as e:
                c.get_features([1], ["u:x"])
        self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertIn("the store cannot be reached", e.exception.details)
        self.assertEqual(self.service.calls, 4)

    def test_within_the_deadline(self):
        # 4 attempts wait at least 40 + 80 + 160 ms between them: a deadline
        # of 100 ms leaves room for 2 at most.
        self.service.failures = 100
        with larder.Client(self.target, timeout=0.1) as c:
            start = time.monotonic()
            with self.assertRaises(larder.LarderError) as e:
                c.get_features([1], ["u:x"])
            took = time.monotonic() - start
        self.assertIn(e.exception.code, (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))
        self.assertLessEqual(self.service.calls, 2)
        self.assertLess(took, 0.5)

    def test_no_retry_of_other_codes(self):
        self.service.failures, self.service.code = 100, grpc.StatusCode.INVALID_ARGUMENT
        with larder.Client(self.target) as c:
            with self.assertRaises(larder.LarderError) as e:
                c.get_features([1], ["u:x"])
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.service.calls, 1)

    def test_one_key(self):
        # A str (or an int) is one key, as a str is one feature reference,
        # not a list of one-character keys.
        self.service.failures = 0
        with larder.Client(self.target) as c:
            self.assertEqual(c.get_features("abc", "u:x").row_count, 1)
            self.assertEqual(self.service.keys, ["abc"])
            self.assertEqual(c.get_features(42, ["u:x"]).row_count, 1)
            self.assertEqual(self.service.keys, [42])

    def test_one_candidate(self):
        # As with get_features' keys, a str (or an int) is one candidate.
        self.service.failures = 0
        with larder.Client(self.target) as c:
            c.rank("r", 1, "abc")
            self.assertEqual(self.service.candidates, ["abc"])
            c.rank("r", 1, 7)
            self.assertEqual(self.service.candidates, [7])
            c.rank("r", 1, ["a", "b"])
            self.assertEqual(self.service.candidates, ["a", "b"])
            # None, as an empty list, asks for the ranker's stored list.
            c.rank("r", 1, None)
            self.assertEqual(self.service.candidates, [])

    def test_timeouts(self):
        # A deadline is a positive number of seconds; None, or an infinity,
        # is none. NaN, 0 and negative ones are refused before any call.
        for bad in (0, -1, float("nan"), "5", True):
            with self.assertRaisesRegex((ValueError, TypeError), "timeout"):
                larder.Client(self.target, timeout=bad)
            with larder.Client(self.target) as c:
                with self.assertRaisesRegex((ValueError, TypeError), "timeout"):
                    c.get_features([1], ["u:x"], timeout=bad)
        self.service.failures = 0
        with larder.Client(self.target, timeout=float("inf")) as c:
            self.assertEqual(c.get_features([1], ["u:x"]).row_count, 1)
            self.assertEqual(c.list_views(timeout=float("inf")), [])
            self.assertEqual(c.rank("r", 1, timeout=0.5).model_version, "v1")

    def test_token_in_clear_text(self):
        # A bearer token crosses the network only over TLS; in clear text it
        # goes to a loopback address only, as with the Go client.
        for target in ("example.com:443", "10.0.0.1:50051", "localhost.evil.com:1", "dns:///example.com:443", "127.0.0.1"):
            with self.assertRaisesRegex(ValueError, "clear text"):
                larder.Client(target, token="t")
        for target in ("127.0.0.1:1", "127.1.2.3:1", "localhost:1", "[::1]:1"):
            larder.Client(target, token="t").close()
        larder.Client("example.com:443", token="t", tls=True).close()
        with self.assertRaisesRegex(ValueError, "line break"):
            larder.Client("127.0.0.1:1", token="t\r\nx-role: admin")

    def test_top_k_out_of_range(self):
        # Named, as an int64 key out of range is, not protobuf's bare
        # "Value out of range", and before any call.
        self.service.failures = 0
        with larder.Client(self.target) as c:
            with self.assertRaisesRegex(ValueError, "^top_k: 2147483648 is out of the range of an int32"):
                c.rank("r", 1, top_k=2**31)
            self.assertEqual(self.service.calls, 0)
            self.assertEqual(c.rank("r", 1, top_k=2**31 - 1).model_version, "v1")


class _Big(larder_pb2_grpc.FeatureServiceServicer):
    """Answers GetFeatures with 1000 rows of a 6 KiB string: 6 MiB, past
    gRPC's default limit of 4 MiB, within the 64 MiB a larder server
    answers by default (server.max_response_bytes)."""

    def GetFeatures(self, request, context):
        r = pb.GetFeaturesResponse(row_count=1000)
        r.columns.add(name="doc:text", type=pb.VALUE_TYPE_STRING, string_values=["x" * 6144] * 1000)
        r.views.add(view="doc", statuses=[pb.FEATURE_STATUS_PRESENT] * 1000, event_time_micros=[1] * 1000)
        return r


class LargeResponseTest(unittest.TestCase):
    def test_reads_past_4_mib(self):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        larder_pb2_grpc.add_FeatureServiceServicer_to_server(_Big(), server)
        target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        server.start()
        try:
            with larder.Client(target) as c:
                f = c.get_features([1], ["doc:text"])
            self.assertEqual(f.row_count, 1000)
            self.assertEqual(len(f.values("doc:text")[999]), 6144)
            # A limit of the caller's own, in options, wins.
            with larder.Client(target, options=[("grpc.max_receive_message_length", 1 << 20)]) as c:
                with self.assertRaises(larder.LarderError) as e:
                    c.get_features([1], ["doc:text"])
            self.assertEqual(e.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        finally:
            server.stop(None)


if __name__ == "__main__":
    unittest.main()
