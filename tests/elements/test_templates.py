"""All templates of all elements, rendered together as in the image."""

from __future__ import annotations

import json
from pathlib import Path

import fixtures
import testtools

from tripleo_elements.testing.elements import build_element_tree
from tripleo_elements.testing.elements import elements_root, list_elements
from tripleo_elements.testing.heatconfig import make_deployment
from tripleo_elements.testing.heatconfig import run_heat_config
from tripleo_elements.testing.http import HeatServer
from tripleo_elements.testing.templates import render_templates

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3cUQ9u8dx alice@example"
EXPECTED = {
    "/etc/os-collect-config.conf": 0o600,
    "/var/lib/stackuser/authorized_keys": 0o600,
    "/var/run/heat-config/heat-config": 0o600,
}


def merged_templates(root: Path) -> Path:
    """One element holding every element's os-apply-config tree."""
    files: dict[str, str | tuple[str, int]] = {}
    for name in list_elements():
        templates = elements_root() / name / "os-apply-config"
        for path in templates.rglob("*"):
            if path.is_file():
                relative = "os-apply-config/" + str(
                    path.relative_to(templates))
                files[relative] = (path.read_text(),
                                   path.stat().st_mode & 0o777)
    return build_element_tree(root, {"merged": files}) / "merged"


class AllTemplatesTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.merged = merged_templates(self.root / "tree")

    def test_every_template_renders_from_heat_metadata(self) -> None:
        deployment = make_deployment("#!/bin/sh\necho hi\n",
                                     deployment_id="d1")
        metadata = {
            "os-collect-config": {"collectors": ["ec2", "request", "local"],
                                  "request": {"metadata_url": "http://m/"}},
            "deployments": [deployment],
            "public_keys": {"alice": KEY},
        }
        rendered = render_templates(self.merged, metadata)
        self.assertEqual(EXPECTED, {p: m for p, (_, m) in rendered.items()})
        self.assertEqual([deployment], json.loads(
            rendered["/var/run/heat-config/heat-config"][0]))
        self.assertEqual(f"{KEY}\n",
                         rendered["/var/lib/stackuser/authorized_keys"][0])
        self.assertIn("metadata_url = http://m/",
                      rendered["/etc/os-collect-config.conf"][0])

    def test_empty_metadata_renders_safe_defaults(self) -> None:
        rendered = render_templates(self.merged, {})
        self.assertEqual("", rendered["/var/run/heat-config/heat-config"][0])
        self.assertEqual("", rendered["/var/lib/stackuser/authorized_keys"][0])
        self.assertIn("command = os-refresh-config",
                      rendered["/etc/os-collect-config.conf"][0])

    def test_rendered_deployments_feed_heat_config(self) -> None:
        with HeatServer() as server:
            deployment = make_deployment(
                "#!/bin/sh\nprintf '%s' \"$name\" > $heat_outputs_path.out\n",
                inputs={"name": "value"}, outputs=["out"],
                signal_url=server.url("/s"))
            rendered = render_templates(self.merged,
                                        {"deployments": [deployment]})
            text = rendered["/var/run/heat-config/heat-config"][0]
            run = run_heat_config(json.loads(text), self.root / "run")
            self.assertEqual(0, run.returncode, run.stderr)
            self.assertEqual("value", server.requests("/s")[0].json()["out"])
