"""``tripleo_elements.testing`` is a public API: every module declares
what it exports, and the README documents every module."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import testtools

import tripleo_elements.testing as testing

README = Path(__file__).resolve().parents[2] / "README.rst"


def _modules() -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules(testing.__path__))
    assert names, "no modules found in tripleo_elements.testing"
    return names


class TestingApiTest(testtools.TestCase):

    def test_package_lists_every_module(self) -> None:
        self.assertEqual(_modules(), sorted(testing.__all__))

    def test_every_module_has_a_complete_all(self) -> None:
        for name in _modules():
            module = importlib.import_module(f"{testing.__name__}.{name}")
            exported = getattr(module, "__all__", None)
            self.assertIsNotNone(exported, f"{name} has no __all__")
            self.assertTrue(exported, name)
            for item in exported:
                self.assertTrue(hasattr(module, item), f"{name}.{item}")
            # Public functions and classes defined in the module are
            # exported (helpers are named with a leading underscore).
            own = [n for n, v in vars(module).items()
                   if not n.startswith("_")
                   and (inspect.isfunction(v) or inspect.isclass(v))
                   and v.__module__ == module.__name__]
            self.assertEqual([], sorted(set(own) - set(exported)), name)

    def test_readme_documents_every_module(self) -> None:
        text = README.read_text()
        section = text.split("Testing your element\n====================\n")[1]
        section = section.split("\n====")[0]
        for name in _modules():
            self.assertRegex(section, f"\\n``{name}``( \\(root\\))?\\n")
