"""larder: a Python client for larder's FeatureService.

    from larder import Client

    with Client("127.0.0.1:50051") as c:
        f = c.get_features([1, 2, 3], ["user_profile:*"])
        ages = f.values("user_profile:age")

See clients/python/README.md.
"""

from larder.client import NOT_FOUND, PRESENT, STALE, Client, Features, LarderError, Ranking

__all__ = ["Client", "Features", "Ranking", "LarderError", "PRESENT", "NOT_FOUND", "STALE"]
