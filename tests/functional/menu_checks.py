"""The menu in a booted Heat image, and in the image file.

:func:`check_menu` runs inside the one boot of ``TestHeatImageBoot``:
through the stand-in metadata server (``HeatGuest.extra_metadata``) it
turns ``web-server`` on with a port and a page, then turns it off and
changes ``ntp_servers`` (no reboot), then asks for a feature the project
made Unavailable and checks that nothing changed.  :func:`image_problems`
is the offline check of the image file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.functional import guest, heatstack
from tripleo_elements.menu import model, policy
from tripleo_elements.testing import image as image_checks

MENU_PATH = model.IMAGE_PATH
STATUS = "/var/lib/tie-menu/status.json"
SOURCES = "/etc/chrony/sources.d/tie-menu.sources"
FEATURES = ("time-sync", "web-server")
UNITS = ("chrony.service", "nginx.service")
APPLY_TIMEOUT = 240.0
PORT = 8081
PAGE = "tie menu page: <b>$(not run)</b>\n"
PROJECT = {
    "features": {"time-sync": "default", "web-server": "available"},
    "variables": {"ntp_servers": {"state": "default",
                                  "default": ["ntp-a.tie.invalid"]},
                  "web_port": {"state": "available"},
                  "web_content": {"state": "available"}},
}
#: Fetches the page from inside the guest (no curl in the image).
FETCH = ("python3 -c 'import sys, urllib.request; sys.stdout.write("
         "urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())'")


def image_problems(root: Path) -> list[str]:
    """The menu and the driver are in the image; feature units are off."""
    problems = []
    menu_file = image_checks.inside(root, MENU_PATH)
    try:
        data = json.loads(menu_file.read_text())
    except (OSError, ValueError) as exc:
        return [f"{MENU_PATH}: {exc}"]
    missing = sorted(set(FEATURES) - set(data.get("features", {})))
    if missing:
        problems.append(f"{MENU_PATH} lacks features {missing}")
    for path in ("/usr/lib/tie-menu/tie_menu_rules.py",
                 "/usr/libexec/os-refresh-config/configure.d/70-tie-menu",
                 "/usr/libexec/tie-menu/templates/web-server/etc/nginx/"
                 "sites-enabled/tie-menu"):
        if not image_checks.inside(root, path).exists():
            problems.append(f"{path} is missing")
    wants = image_checks.inside(root, "/etc/systemd/system")
    for unit in UNITS:
        enabled = sorted(str(p.relative_to(wants))
                         for p in wants.glob(f"*.wants/{unit}"))
        if enabled:
            problems.append(f"{unit} is enabled in the image: {enabled}")
    if image_checks.inside(root, "/etc/nginx/sites-enabled/default"
                           ).exists():
        problems.append("nginx's default site is still enabled")
    return problems


def menu_of(image: Path) -> model.Menu:
    """The ``NAME.menu.json`` next to the image."""
    return model.load_json(image.with_suffix(".menu.json"))


def _status(ssh: guest.Ssh) -> dict[str, Any]:
    proc = ssh.run(f"sudo -n cat {STATUS}", check=False)
    try:
        return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}
    except ValueError:
        return {}


def _publish_and_wait(stack: heatstack.HeatGuest, ssh: guest.Ssh,
                      doc: dict[str, Any], expected: dict[str, Any]
                      ) -> float:
    """Publish ``doc``'s menu; wait until the status shows ``expected``."""
    started = time.monotonic()
    stack.extra_metadata.update(doc)
    stack.publish()
    while True:
        status = _status(ssh)
        if all(status.get(k) == v for k, v in expected.items()):
            return time.monotonic() - started
        if time.monotonic() - started > APPLY_TIMEOUT:
            log = ssh.run("sudo -n tail -n 30 /var/log/tie-menu.log",
                          check=False).stdout
            raise AssertionError(f"the menu driver never reported "
                                 f"{expected}; status {status}; log:\n{log}")
        stack.alive("the menu driver")
        time.sleep(3)


def _unit(ssh: guest.Ssh, unit: str) -> tuple[str, str, str]:
    """(is-active, is-enabled, when it last became active)."""
    out = ssh.run(f"systemctl is-active {unit}; systemctl is-enabled "
                  f"{unit}; systemctl show -p ActiveEnterTimestampMonotonic "
                  f"--value {unit}", check=False).stdout.split()
    active, enabled, since = (out + ["?", "?", "?"])[:3]
    return active, enabled, since


def check_menu(test: Any, stack: heatstack.HeatGuest, ssh: guest.Ssh,
               image: Path, timings: dict[str, float]) -> None:
    """The three menu steps in the running guest (``test`` asserts)."""
    menu = menu_of(image)
    project = policy.check_project(menu, PROJECT, "menu_checks.PROJECT")
    boot_id = ssh.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    # A: web-server on with a port and a page; time-sync on by default.
    doc = policy.metadata(menu, project, policy.selection(
        menu, enable=["web-server"],
        assignments=[f"web_port={PORT}", f"web_content={PAGE}"]))
    timings["menu_on_s"] = _publish_and_wait(stack, ssh, doc, {
        "status": "applied",
        "features": {"time-sync": True, "web-server": True}})
    page = ssh.run(f"{FETCH} http://127.0.0.1:{PORT}/").stdout
    test.assertEqual(PAGE, page)
    nginx = _unit(ssh, "nginx.service")
    test.assertEqual(("active", "enabled"), nginx[:2])
    chrony_a = _unit(ssh, "chrony.service")
    test.assertEqual(("active", "enabled"), chrony_a[:2])
    test.assertIn("server ntp-a.tie.invalid iburst",
                  ssh.run(f"cat {SOURCES}").stdout)
    mode = ssh.run("sudo -n stat -c %a /var/lib/tie-menu/variables.json"
                   ).stdout.strip()
    test.assertEqual("600", mode)

    # B: web-server off, ntp_servers changed: chrony restarted with it.
    doc = policy.metadata(menu, project, policy.selection(
        menu, disable=["web-server"],
        assignments=["ntp_servers=ntp-b.tie.invalid"]))
    timings["menu_change_s"] = _publish_and_wait(stack, ssh, doc, {
        "status": "applied",
        "features": {"time-sync": True, "web-server": False}})
    test.assertEqual(("inactive", "disabled"),
                     _unit(ssh, "nginx.service")[:2])
    fetch = ssh.run(f"{FETCH} http://127.0.0.1:{PORT}/", check=False)
    test.assertNotEqual(0, fetch.returncode, "nginx still answers")
    sources = ssh.run(f"cat {SOURCES}").stdout
    test.assertIn("server ntp-b.tie.invalid iburst", sources)
    test.assertNotIn("ntp-a", sources)
    chrony_b = _unit(ssh, "chrony.service")
    test.assertEqual("active", chrony_b[0])
    test.assertNotEqual(chrony_a[2], chrony_b[2], "chrony not restarted")
    test.assertEqual(boot_id, ssh.run(
        "cat /proc/sys/kernel/random/boot_id").stdout.strip(),
        "the guest rebooted")

    # C: web-server made Unavailable and asked for anyway (metadata
    # written by hand): refused, nothing changes.
    unavailable = json.loads(json.dumps(project))
    unavailable["features"]["web-server"] = "unavailable"
    doc = {"menu": {"project": unavailable, "instance": {
        "enable": ["web-server"], "set": {"ntp_servers": ["ntp-c.invalid"]}}}}
    timings["menu_refused_s"] = _publish_and_wait(stack, ssh, doc, {
        "status": "refused"})
    status = _status(ssh)
    test.assertEqual(["instance.enable: web-server: the feature is "
                      "Unavailable to this project"], status["problems"])
    test.assertEqual(("inactive", "disabled"),
                     _unit(ssh, "nginx.service")[:2])
    test.assertEqual(sources, ssh.run(f"cat {SOURCES}").stdout)
    test.assertEqual(chrony_b, _unit(ssh, "chrony.service"))
    log = ssh.run("sudo -n cat /var/log/tie-menu.log").stdout
    test.assertIn("refused: instance.enable: web-server", log)
