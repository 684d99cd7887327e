"""package-installs validation: the plain-shape shortcut never accepts
what the schema rejects, and spares the jsonschema import for real
files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fixtures
import jsonschema
import testtools
from hypothesis import given, settings
from hypothesis import strategies as st

from tripleo_elements.check import package_installs
from tripleo_elements.discovery import dib_elements_dir

REPO = Path(__file__).resolve().parents[2]

# Values near every edge of the schema: right and wrong types, bools
# that equal 1, floats that equal 2, empty strings and lists, strings
# that almost match the patterns.
VALUES = st.sampled_from([
    None, True, False, 0, 1, 2, 3, 2.0, 3.5, "", "2", "3", "x",
    "install.d", "pre-install.d", "post-install.d", "root.d",
    "amd64", "x86_64, arm64", "x86_64,,arm64", "amd64\n", "a b",
    "DIB_X = 1", "DIB_X != y", "DIB_X", "= 1", "x=1\n", "é = 1",
    [], ["DIB_X = 1"], ["nope"], [1], {}, {"a": 1},
])
KEYS = st.sampled_from([
    "phase", "uninstall", "build-only", "installtype", "arch",
    "not-arch", "dib_python_version", "when", "other", "Phase",
])
PARAMS = st.dictionaries(KEYS, VALUES, max_size=4)
ENTRY = st.one_of(st.none(), PARAMS, st.lists(PARAMS, max_size=3),
                  VALUES)
DATA = st.one_of(
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers(0, 3)),
                    ENTRY, max_size=4),
    VALUES)


def schema_errors(data: Any) -> list[Any]:
    validator = jsonschema.Draft7Validator(package_installs.schema())
    return list(validator.iter_errors(data))


class TestPlainlyValid(testtools.TestCase):

    @settings(max_examples=400, deadline=None)
    @given(DATA)
    def test_never_accepts_what_the_schema_rejects(self, data: Any
                                                   ) -> None:
        if package_installs.plainly_valid(data):
            self.assertEqual([], schema_errors(data))

    def test_accepts_the_usual_shapes(self) -> None:
        data = {"a": None, "b": {"phase": "pre-install.d"},
                "c": [{"arch": "x86_64, arm64", "when": "DIB_X = 1"},
                      {"not-arch": "ppc64le", "uninstall": True}],
                "d": {"when": ["A = 1", "B != 2"], "build-only": True,
                      "installtype": "source", "dib_python_version": 3}}
        self.assertEqual([], schema_errors(data))
        self.assertTrue(package_installs.plainly_valid(data))

    def test_leaves_edge_cases_to_the_schema(self) -> None:
        for data in ({"a": {"uninstall": 1}},
                     {"a": {"dib_python_version": 2.0}},
                     {"a": {"arch": "x", "not-arch": "y"}},
                     {"a": {"when": []}}, {1: None}, ["a"]):
            self.assertFalse(package_installs.plainly_valid(data), data)

    def test_every_diskimage_builder_file_takes_the_shortcut(self) -> None:
        files = sorted(dib_elements_dir().glob("*/package-installs.*"))
        self.assertGreater(len(files), 20)
        for path in files:
            data = package_installs.load(path)
            self.assertTrue(data is None
                            or package_installs.plainly_valid(data), path)

    def test_valid_file_needs_no_jsonschema(self) -> None:
        path = Path(self.useFixture(
            fixtures.TempDir()).path) / "package-installs.json"
        path.write_text(json.dumps({"vim": {"phase": "install.d"}}))
        code = ("import sys\nfrom pathlib import Path\n"
                "from tripleo_elements.check import package_installs\n"
                "print(package_installs.problems(Path(sys.argv[1])),\n"
                "      'jsonschema' in sys.modules)\n")
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], check=True,
            capture_output=True, text=True, cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)))
        self.assertEqual("[] False\n", out.stdout)

    def test_invalid_file_still_worded_by_the_schema(self) -> None:
        path = Path(self.useFixture(
            fixtures.TempDir()).path) / "package-installs.json"
        path.write_text(json.dumps({"vim": {"phase": "root.d"}}))
        found = package_installs.problems(path)
        self.assertEqual(1, len(found))
        self.assertIn("vim/phase", found[0][1])
