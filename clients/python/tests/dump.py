"""Reads features and a ranking from a larder server with the Python client
and prints them as JSON, for the Go test that compares them with the Go
client's (client/python_test.go).

    python3 tests/dump.py ADDR '{"keys": [...], "features": [...], "rank": {...}}'
"""

import base64
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import larder  # noqa: E402


def plain(v):
    """Returns v as JSON can hold it: numpy scalars and arrays as Python
    values, bytes as base64, non-finite floats as text."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def main():
    addr, spec = sys.argv[1], json.loads(sys.argv[2])
    out = {}
    with larder.Client(addr, token=spec.get("token")) as c:
        f = c.get_features(spec["keys"], spec["features"])
        out["names"] = f.names
        out["row_count"] = f.row_count
        out["types"] = {n: f.type(n) for n in f.names}
        out["values"] = {n: plain(f.values(n)) for n in f.names}
        out["nulls"] = {n: plain(f.nulls(n)) for n in f.names}
        views = sorted({f.view_of(n) for n in f.names})
        out["statuses"] = {v: plain(f.statuses(v)) for v in views}
        out["event_times"] = {v: plain(f.event_times(v)) for v in views}
        out["rows"] = [{k: plain(x) for k, x in f.row(i).items()} for i in range(f.row_count)]
        if "rank" in spec:
            r = spec["rank"]
            ranking = c.rank(r["ranker"], r["context"], r.get("candidates", []), request_features=r.get("request_features"), top_k=r.get("top_k", 0))
            out["rank"] = {"keys": ranking.keys, "scores": plain(ranking.scores), "model_version": ranking.model_version}
        out["views"] = [v.name for v in c.list_views()]
        try:
            c.get_features(spec["keys"], ["no_such_view:x"])
        except larder.LarderError as e:
            out["error"] = {"code": e.code.name, "details": e.details}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
