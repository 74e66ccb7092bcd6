"""A typed client for larder's FeatureService: GetFeatures, Rank, ListViews.

The generated stubs in larder.v1 do the wire work; this module turns the
columnar GetFeatures response into columns a training or scoring script can
use directly (numpy arrays when numpy is installed, lists otherwise), and
gives the server's errors a Python exception of their own.
"""

import ipaddress
import math
import numbers
import operator
import random
import time

import grpc

from larder.v1 import larder_pb2, larder_pb2_grpc

try:  # numpy is optional: columns are lists without it.
    import numpy
except ImportError:  # pragma: no cover - exercised where numpy is absent
    numpy = None

__all__ = [
    "Client",
    "Features",
    "Ranking",
    "LarderError",
    "PRESENT",
    "NOT_FOUND",
    "STALE",
]

# How a row was found in a view (larder.v1.FeatureStatus).
PRESENT = larder_pb2.FEATURE_STATUS_PRESENT
NOT_FOUND = larder_pb2.FEATURE_STATUS_NOT_FOUND
STALE = larder_pb2.FEATURE_STATUS_STALE

# Every method of FeatureService is read-only, so a call that found the
# server unavailable is tried again, up to _ATTEMPTS times in all, after an
# exponential backoff from _BACKOFF_MIN to _BACKOFF_MAX seconds with 20%
# jitter, within the call's deadline (see Client._call).
_ATTEMPTS = 4
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0
_JITTER = 0.2

# The largest response the client reads: the largest a larder server
# answers by default (server.max_response_bytes), where gRPC's own default
# is 4 MiB. A "grpc.max_receive_message_length" in options wins.
MAX_RESPONSE_BYTES = 64 << 20

# The range of an int64 key or value, and of an int32 such as top_k.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

# The array that holds the values of a column of each scalar type, and the
# numpy type of those values.
_SCALARS = {
    larder_pb2.VALUE_TYPE_INT64: ("int64_values", "int64"),
    larder_pb2.VALUE_TYPE_FLOAT64: ("float64_values", "float64"),
    larder_pb2.VALUE_TYPE_FLOAT32: ("float32_values", "float32"),
    larder_pb2.VALUE_TYPE_BOOL: ("bool_values", "bool"),
    larder_pb2.VALUE_TYPE_STRING: ("string_values", None),
    larder_pb2.VALUE_TYPE_BYTES: ("bytes_values", None),
}
_LISTS = {
    larder_pb2.VALUE_TYPE_FLOAT32_VECTOR: "float32_vector_values",
    larder_pb2.VALUE_TYPE_INT64_LIST: "int64_list_values",
    larder_pb2.VALUE_TYPE_STRING_LIST: "string_list_values",
}


class LarderError(Exception):
    """A call the server refused or could not serve.

    code is the gRPC status code (grpc.StatusCode.INVALID_ARGUMENT for a bad
    request, with the reason in details), details the server's message.
    """

    def __init__(self, method, code, details):
        super().__init__(f"larder {method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


def _key(k, where):
    """Returns the EntityKey of a str, or of an int or an int-like object
    (one with __index__, such as numpy's integers), but not of a bool."""
    if isinstance(k, bool) or (numpy is not None and isinstance(k, numpy.bool_)):
        raise TypeError(f"{where}: a key is an int or a str, not a bool")
    if isinstance(k, str):
        return larder_pb2.EntityKey(string_value=str(k))
    try:
        n = operator.index(k)
    except TypeError:
        raise TypeError(f"{where}: a key is an int or a str, not {type(k).__name__}") from None
    _check_int64(n, where, "an int64 key")
    return larder_pb2.EntityKey(int64_value=n)


def _keys(keys, name):
    """Returns the EntityKeys of keys, the argument name: one str or
    int-like key, or an iterable of them (a list, a numpy array, a pandas
    Series)."""
    if keys is None:
        keys = ()
    elif isinstance(keys, (str, int)) or (numpy is not None and isinstance(keys, numpy.generic)):
        keys = [keys]
    return [_key(k, f"{name}[{i}]") for i, k in enumerate(keys)]


def _check_int64(n, where, what):
    """Raises ValueError, naming where, when n does not fit in an int64."""
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise ValueError(f"{where}: {n} is out of the range of {what} ({_INT64_MIN} to {_INT64_MAX})")


def _int32(n, where):
    """Returns n, an int, or raises ValueError, naming where, when it does
    not fit in an int32. A negative one is left to the server to refuse."""
    n = operator.index(n)
    if not _INT32_MIN <= n <= _INT32_MAX:
        raise ValueError(f"{where}: {n} is out of the range of an int32 ({_INT32_MIN} to {_INT32_MAX})")
    return n


def _value(v, where):
    """Returns the Value of a Python request feature."""
    if isinstance(v, bool):
        return larder_pb2.Value(bool_value=v)
    if isinstance(v, int):
        _check_int64(v, where, "an int64")
        return larder_pb2.Value(int64_value=v)
    if isinstance(v, float):
        return larder_pb2.Value(float64_value=v)
    if numpy is not None and isinstance(v, numpy.generic):
        return _value(v.item(), where)
    raise TypeError(f"{where}: a request feature is a bool, an int or a float, not {type(v).__name__}")


def _check(response):
    """Raises ValueError, naming the column or view at fault, when response
    does not hold together (arrays of a length its row count does not give,
    a null row or a view index out of range), which no larder server sends:
    a negative null row, say, would otherwise mark another row null."""
    n = response.row_count

    def fail(what):
        raise ValueError(f"the response does not hold together: {what}")

    for v in response.views:
        if len(v.statuses) != n or len(v.event_time_micros) != n:
            fail(f"view {v.view!r}: {len(v.statuses)} statuses and {len(v.event_time_micros)} event times for {n} rows")
    for c in response.columns:
        where = f"column {c.name!r}"
        if not 0 <= c.view < len(response.views):
            fail(f"{where}: view {c.view} out of range ({len(response.views)} views)")
        for r in c.null_rows:
            if not 0 <= r < n:
                fail(f"{where}: null row {r} out of range ({n} rows)")
        if c.type in _SCALARS:
            got = len(getattr(c, _SCALARS[c.type][0]))
            if got != n:
                fail(f"{where}: {got} values for {n} rows")
        elif c.type in _LISTS:
            if len(c.list_lengths) != n:
                fail(f"{where}: {len(c.list_lengths)} list lengths for {n} rows")
            if any(k < 0 for k in c.list_lengths):
                fail(f"{where}: a negative list length")
            got, want = len(getattr(c, _LISTS[c.type])), sum(c.list_lengths)
            if got != want:
                fail(f"{where}: {got} list elements where its lengths add up to {want}")


class Features:
    """The columns of one GetFeatures response.

    names lists the columns ("view:feature") in the server's order, and
    row_count the rows, one per requested key, in request order. A numeric
    or bool column comes as a numpy array when numpy is installed, a null
    row holding 0 or False there (nulls(name) says which rows are null);
    without numpy, and for every other type, a column comes as a list with
    None for a null row: a str or bytes per row, or a list per row for lists
    and vectors (a float32 numpy array per row for vectors with numpy).
    A response that does not hold together, which no larder server sends,
    raises ValueError naming the column or view at fault.
    """

    def __init__(self, response):
        _check(response)
        self.response = response
        self.row_count = response.row_count
        self.names = [c.name for c in response.columns]
        self._columns = {c.name: c for c in response.columns}
        self._views = {v.view: i for i, v in enumerate(response.views)}
        self._null_sets = {}
        self.generations = {g.view: g.generation for g in response.generations}

    def _column(self, name):
        try:
            return self._columns[name]
        except KeyError:
            raise KeyError(f"no column {name!r} in the response (columns: {', '.join(self.names)})") from None

    def type(self, name):
        """Returns the type of a column, such as "float64" or "string_list"."""
        t = larder_pb2.ValueType.Name(self._column(name).type)
        return t.removeprefix("VALUE_TYPE_").lower()

    def nulls(self, name):
        """Returns, per row, whether the column's value is null."""
        c = self._column(name)
        mask = [False] * self.row_count
        for r in c.null_rows:
            mask[r] = True
        if numpy is not None:
            return numpy.array(mask, dtype=bool)
        return mask

    def values(self, name):
        """Returns the column's values, one per row (see the class)."""
        c = self._column(name)
        if c.type in _SCALARS:
            field, dtype = _SCALARS[c.type]
            vals = getattr(c, field)
            if numpy is not None and dtype is not None:
                return numpy.array(vals, dtype=dtype)
            out = list(vals)
            for r in c.null_rows:
                out[r] = None
            return out
        if c.type in _LISTS:
            flat = getattr(c, _LISTS[c.type])
            out, at = [], 0
            for n in c.list_lengths:
                part = list(flat[at : at + n])
                if numpy is not None and c.type == larder_pb2.VALUE_TYPE_FLOAT32_VECTOR:
                    part = numpy.array(part, dtype="float32")
                out.append(part)
                at += n
            for r in c.null_rows:
                out[r] = None
            return out
        raise ValueError(f"column {name!r} has a type this client does not know ({c.type}): update the client")

    def _view_rows(self, view):
        try:
            return self.response.views[self._views[view]]
        except KeyError:
            raise KeyError(f"no view {view!r} in the response (views: {', '.join(self._views)})") from None

    def view_of(self, name):
        """Returns the view a column was read from."""
        return self.response.views[self._column(name).view].view

    def statuses(self, view):
        """Returns, per row, how the row was found in the view: PRESENT,
        NOT_FOUND or STALE."""
        s = self._view_rows(view).statuses
        return numpy.array(s, dtype="int32") if numpy is not None else list(s)

    def event_times(self, view):
        """Returns, per row, the event time of the view's row in microseconds
        since the Unix epoch (0 when not found)."""
        t = self._view_rows(view).event_time_micros
        return numpy.array(t, dtype="int64") if numpy is not None else list(t)

    def row(self, i):
        """Returns row i as a dict of column name to value (None when null)."""
        if not 0 <= i < self.row_count:
            raise IndexError(f"row {i} of {self.row_count}")
        out = {}
        for name in self.names:
            c = self._columns[name]
            if name not in self._null_sets:
                self._null_sets[name] = frozenset(c.null_rows)
            if i in self._null_sets[name]:
                out[name] = None
            elif c.type in _SCALARS:
                out[name] = getattr(c, _SCALARS[c.type][0])[i]
            else:
                out[name] = self.values(name)[i]
        return out

    def to_dict(self):
        """Returns every column's values by name."""
        return {name: self.values(name) for name in self.names}


class Ranking:
    """The answer of Rank: candidates (keys, best first), their scores, and
    the response itself (model version, generations, degraded, explain)."""

    def __init__(self, response):
        self.response = response
        self.keys = [c.key.string_value if c.key.HasField("string_value") else c.key.int64_value for c in response.candidates]
        self.scores = [c.score for c in response.candidates]
        self.model_version = response.model_version
        self.degraded = response.degraded
        self.degraded_reason = response.degraded_reason


def _timeout(t, where):
    """Returns t, a deadline in seconds, checked: None for none (as is an
    infinity), else a positive number. A NaN, 0 or a negative deadline
    raises ValueError, which gRPC would take as none, or as one already past."""
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise TypeError(f"{where}: timeout {t!r}: want a number of seconds, or None for no deadline")
    t = float(t)
    if math.isinf(t) and t > 0:
        return None
    if not t > 0:
        raise ValueError(f"{where}: timeout {t!r}: want a positive number of seconds, or None for no deadline")
    return t


def _loopback(target):
    """Reports whether target ("host:port") names this machine by a loopback
    name or address, where a token in clear text stays on the machine."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return False
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # a scheme such as dns:///, or an IPv6 address without brackets
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _backoff(attempt):
    """Returns the pause, in seconds, after the failed attempt (1 for the
    first): _BACKOFF_MIN doubled on each attempt, at most _BACKOFF_MAX,
    give or take _JITTER of it."""
    base = min(_BACKOFF_MAX, _BACKOFF_MIN * 2 ** (attempt - 1))
    return base * (1 + _JITTER * random.uniform(-1, 1))


class Client:
    """A connection to a larder server's FeatureService.

    target is "host:port". token, when set, is sent as a bearer token (a
    server with server.auth); root_certificates (PEM bytes) or tls=True
    connect with TLS. Without TLS, a token is sent to a loopback address
    only (127.0.0.1, ::1, localhost): ValueError otherwise. timeout is each call's deadline in seconds (None, or
    an infinity: none), unless a call gives its own; a NaN, 0 or a negative
    one raises ValueError. A call that finds the server unavailable is tried
    again with backoff, up to 4 times in all, within its deadline.
    options are gRPC channel options; responses of up to
    MAX_RESPONSE_BYTES (64 MiB) are read unless they set
    "grpc.max_receive_message_length".
    """

    def __init__(self, target, *, token=None, tls=False, root_certificates=None, timeout=5.0, options=()):
        if token is not None and any(c in token for c in " \t\r\n"):
            raise ValueError("Client: the token holds a blank or a line break; want the token alone")
        if token and not (tls or root_certificates is not None) and not _loopback(target):
            raise ValueError(
                f"Client: a bearer token would cross the network to {target} in clear text: "
                "pass tls=True (or root_certificates), or call a loopback address"
            )
        opts = list(options)
        if not any(name == "grpc.max_receive_message_length" for name, _ in opts):
            opts.append(("grpc.max_receive_message_length", MAX_RESPONSE_BYTES))
        if tls or root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self._stub = larder_pb2_grpc.FeatureServiceStub(self._channel)
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        self.timeout = _timeout(timeout, "Client")

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout):
        """Calls method with request, trying again on UNAVAILABLE.

        gRPC's own retry policy would not do: it never retries a call whose
        server sent headers, and larder's server sends the request id as a
        header with every answer, errors included. So the calls are retried
        here, as the Go client retries them; each attempt gets what is left
        of the call's deadline, and no attempt starts that the deadline
        would not leave time for once the backoff is over.
        """
        call = getattr(self._stub, method)
        limit = self.timeout if timeout is None else _timeout(timeout, method)
        deadline = None if limit is None else time.monotonic() + limit
        for attempt in range(1, _ATTEMPTS + 1):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return call(request, timeout=left, metadata=self._metadata)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == _ATTEMPTS:
                    raise LarderError(method, e.code(), e.details()) from None
                pause = _backoff(attempt)
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise LarderError(method, e.code(), e.details()) from None
                time.sleep(pause)

    def get_features(self, keys, features, *, timeout=None):
        """Reads features ("view:feature" or "view:*", or a list of them)
        of keys (a list of ints or strs, of one entity, or one key) and
        returns their Features, one row per key."""
        if isinstance(features, str):
            features = [features]
        req = larder_pb2.GetFeaturesRequest(keys=_keys(keys, "keys"), features=list(features))
        return Features(self._call("GetFeatures", req, timeout))

    def rank(self, ranker, context_key, candidate_keys=(), *, request_features=None, top_k=0, explain=False, timeout=None):
        """Ranks candidate_keys (a list of keys, or one key; the ranker's
        stored candidates when empty or None) for context_key with the
        ranker's model."""
        req = larder_pb2.RankRequest(
            ranker=ranker,
            context_key=_key(context_key, "context_key"),
            candidate_keys=_keys(candidate_keys, "candidate_keys"),
            top_k=_int32(top_k, "top_k"),
            explain=explain,
        )
        for name, v in (request_features or {}).items():
            req.request_features[name].CopyFrom(_value(v, f"request_features[{name!r}]"))
        return Ranking(self._call("Rank", req, timeout))

    def list_views(self, *, timeout=None):
        """Returns the project's views (larder.v1.ViewInfo messages)."""
        return list(self._call("ListViews", larder_pb2.ListViewsRequest(), timeout).views)
