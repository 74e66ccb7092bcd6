"""Tests of what the package declares to type checkers and ships."""

import os
import unittest

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

try:
    import tomllib
except ImportError:  # before Python 3.11
    tomllib = None


class PackagingTest(unittest.TestCase):
    def test_stubs_are_read(self):
        # A type checker reads the stubs of an installed package (the
        # generated messages' larder_pb2.pyi) only when the package holds
        # the PEP 561 marker, py.typed, which the install must ship too.
        self.assertTrue(os.path.isfile(os.path.join(_ROOT, "larder", "py.typed")), "larder/py.typed is missing")
        if tomllib is None:
            self.skipTest("tomllib needs Python 3.11")
        with open(os.path.join(_ROOT, "pyproject.toml"), "rb") as f:
            data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
        self.assertIn("py.typed", data.get("larder", []), "package-data does not ship larder/py.typed")
        self.assertIn("*.pyi", data.get("larder.v1", []), "package-data does not ship the stubs")


if __name__ == "__main__":
    unittest.main()
