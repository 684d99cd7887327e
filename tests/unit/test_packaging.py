"""The package as a user installs it: a clean virtualenv holding only
requirements.txt (no test requirements), a non-editable install, then
``plan`` and ``check`` on this project's elements.

It takes 30-50 s (pip reads the local wheel indexes configured on this
machine); it needs no root and no network beyond what pip is configured
to use.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import testtools

SOURCE = Path(__file__).resolve().parents[2]
PACKAGE = SOURCE / "tripleo_elements"
_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tox", ".stestr", "build", "dist", "*.egg-info",
    "__pycache__", "*.pyc", "AUTHORS", "ChangeLog", "*.qcow2", "*.log")
#: Import names whose distribution is spelled differently.
_DISTRIBUTION = {"yaml": "PyYAML", "diskimage_builder": "diskimage-builder",
                 "openstack": "openstacksdk",
                 "swiftclient": "python-swiftclient"}


def third_party_imports() -> set[str]:
    """Top-level modules imported anywhere in tripleo_elements (lazy
    imports inside functions included), standard library left out."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 \
                    and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names
            and m not in ("tripleo_elements", "__future__")}


def requirement_names() -> set[str]:
    names = set()
    for line in (SOURCE / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            for sep in "<>=!~;[ ":
                line = line.split(sep)[0]
            names.add(line.lower())
    return names


class RequirementsTest(testtools.TestCase):

    def test_every_runtime_import_is_a_requirement(self) -> None:
        imports = third_party_imports()
        self.assertIn("pystache", imports)
        wanted = {_DISTRIBUTION.get(m, m).lower() for m in imports}
        self.assertEqual(set(), wanted - requirement_names())


class CleanInstallTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix="tie-install-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def run_ok(self, argv: list[str], *, env: dict[str, str],
               cwd: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              check=False, timeout=600, env=env, cwd=cwd)
        self.assertEqual(0, proc.returncode,
                         f"{' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def test_plan_and_check_from_a_clean_install(self) -> None:
        # A copy without .git: pbr takes the version from PBR_VERSION, and
        # the checkout is left untouched by the build.
        tree = self.tmp / "src"
        shutil.copytree(SOURCE, tree, ignore=_IGNORE, symlinks=True)
        env_dir = self.tmp / "venv"
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        bin_dir = env_dir / "bin"
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env.update(PBR_VERSION="0.0.0", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}")
        self.run_ok([str(bin_dir / "pip"), "install", "-q", "--no-compile",
                     str(tree)],
                    env=env)
        # The test requirements are not there: nothing can come from them.
        frozen = self.run_ok([str(bin_dir / "pip"), "freeze"], env=env)
        self.assertNotIn("testtools", frozen.stdout.lower())
        self.assertNotIn("hypothesis", frozen.stdout.lower())
        work = self.tmp / "work"
        work.mkdir()
        shutil.copytree(SOURCE / "elements", work / "elements",
                        symlinks=True, ignore=_IGNORE)
        where = self.run_ok([str(bin_dir / "python"), "-c",
                             "import tripleo_elements; "
                             "print(tripleo_elements.__file__)"],
                            env=env, cwd=work)
        self.assertTrue(where.stdout.startswith(str(env_dir)), where.stdout)
        # The host-tool list ships with the package (missing tools are
        # named with their Debian package from it).
        share = env_dir / "share" / "tripleo-image-elements"
        self.assertTrue((share / "bindep.txt").is_file())
        self.assertTrue((share / "elements" / "heat-cfntools").is_dir())
        plan = self.run_ok([str(bin_dir / "build-image"), "plan",
                            "--no-defaults", "-a", "amd64", "-e", "base",
                            "-e", "debian-minimal", "-e", "heat-cfntools"],
                           env=env, cwd=work)
        self.assertIn("heat-cfntools", plan.stdout)
        self.assertIn("disk-image-create", plan.stdout)
        check = subprocess.run(
            [str(bin_dir / "build-image"), "check", "elements/"],
            env=env, cwd=work, capture_output=True, text=True, check=False,
            timeout=600)
        self.assertNotIn("Traceback", check.stderr)
        self.assertNotIn("ModuleNotFoundError", check.stderr)
        # Findings (exit 1) are check's business; a crash is not.
        self.assertIn(check.returncode, (0, 1),
                      f"{check.stdout}\n{check.stderr}")
