"""Run the heat-config element's configure script against test deployments.

``run_heat_config`` lays out a scratch root (deployments file, hooks
directory, deployed records), runs ``55-heat-config`` with every path
pointed into it and returns what happened.  Signals go wherever the
deployments' ``deploy_signal_id`` points: a
:class:`tripleo_elements.testing.http.HeatServer` in tests.
``make_deployment`` builds a deployment in the shape Heat sends.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.scripts import run_script

__all__ = [
    "heat_config_env", "HeatConfigRun", "hook_source", "make_deployment",
    "run_heat_config",
]

CONFIGURE_SCRIPT = "os-refresh-config/configure.d/55-heat-config"
NOTIFY_SCRIPT = "bin/heat-config-notify"
#: The hook elements whose hooks every run installs (group -> element).
HOOK_GROUPS = ("script", "apply-config", "json-file", "hiera", "ansible",
               "puppet", "docker-compose")


def hook_source(group: str) -> Path:
    """The hook program the element ``heat-config-GROUP`` installs."""
    return element_path(f"heat-config-{group}") / f"install.d/hook-{group}.py"


def make_deployment(config: Any, *, group: str = "script",
                    inputs: Mapping[str, Any] | None = None,
                    outputs: Sequence[str] = (),
                    signal_url: str | None = None,
                    signal_verb: str | None = None,
                    deployment_id: str | None = None,
                    action: str = "CREATE",
                    name: str = "deployment") -> dict[str, Any]:
    """One deployment as Heat puts it in the ``deployments`` metadata key.

    ``inputs`` are the user inputs; the ``deploy_*`` inputs Heat adds are
    filled in (``deploy_signal_transport`` is CFN_SIGNAL with a
    ``signal_url``, else NO_SIGNAL).
    """
    ident = deployment_id or str(uuid.uuid4())
    all_inputs = [{"name": k, "value": v, "type": "String"}
                  for k, v in (inputs or {}).items()]
    all_inputs += [
        {"name": "deploy_server_id", "value": "server-1"},
        {"name": "deploy_action", "value": action},
        {"name": "deploy_stack_id", "value": "stack/0001"},
        {"name": "deploy_resource_name", "value": name},
        {"name": "deploy_signal_transport",
         "value": "CFN_SIGNAL" if signal_url else "NO_SIGNAL"},
    ]
    if signal_url:
        all_inputs.append({"name": "deploy_signal_id", "value": signal_url})
    if signal_verb:
        all_inputs.append({"name": "deploy_signal_verb",
                           "value": signal_verb})
    return {
        "id": ident, "name": name, "group": group, "config": config,
        "inputs": all_inputs, "options": {},
        "outputs": [{"name": o, "type": "String"} for o in outputs],
    }


@dataclasses.dataclass(frozen=True)
class HeatConfigRun:
    """The outcome of one run of 55-heat-config."""

    returncode: int
    stdout: str
    stderr: str
    root: Path

    @property
    def deployed_dir(self) -> Path:
        return self.root / "var/lib/heat-config/deployed"

    def records(self) -> list[str]:
        """Sorted names of the files in the deployed directory."""
        if not self.deployed_dir.is_dir():
            return []
        return sorted(p.name for p in self.deployed_dir.iterdir())


def heat_config_env(root: Path, *, attempts: int = 3, backoff: float = 0.05,
                    timeout: float = 5) -> dict[str, str]:
    """The environment that points 55-heat-config and its hooks at root."""
    return {
        "HEAT_SHELL_CONFIG": str(root / "run/heat-config/heat-config"),
        "HEAT_CONFIG_HOOKS": str(root / "usr/libexec/heat-config/hooks"),
        "HEAT_CONFIG_DEPLOYED": str(root / "var/lib/heat-config/deployed"),
        "HEAT_CONFIG_DEPLOYED_OLD": str(root / "run/heat-config/deployed"),
        "HEAT_CONFIG_NOTIFY": str(root / "bin/heat-config-notify"),
        "HEAT_SCRIPT_WORKING": str(
            root / "var/lib/heat-config/heat-config-script"),
        "HEAT_APPLY_CONFIG_STATE": str(
            root / "var/lib/heat-config/apply-config"),
        "HEAT_CONFIG_SIGNAL_ATTEMPTS": str(attempts),
        "HEAT_CONFIG_SIGNAL_BACKOFF": str(backoff),
        "HEAT_CONFIG_SIGNAL_TIMEOUT": str(timeout),
    }


def run_heat_config(deployments: Sequence[Mapping[str, Any]] | None,
                    root: Path, *,
                    hooks: Mapping[str, str] | None = None,
                    env: Mapping[str, str] | None = None,
                    attempts: int = 3, backoff: float = 0.05,
                    element_dir: Path | None = None,
                    timeout: float = 120,
                    sandbox: bool = True) -> HeatConfigRun:
    """Write ``deployments`` and run 55-heat-config once, unprivileged.

    The hooks of the ``heat-config-GROUP`` elements are installed under
    ``root`` (the first run; ``os-apply-config`` is ``apply-config``),
    plus ``hooks`` (name -> executable text) which replace or add hooks;
    a hook named with an empty text is removed.  heat-config-notify runs
    with this interpreter (so the client libraries of its venv are there).
    ``deployments=None`` leaves the deployments file as it is (a second
    run of the same metadata).  Retries are fast by default (``attempts``
    tries, ``backoff`` seconds).  Nothing outside ``root`` is written:
    by default the runner runs in the sandbox of :func:`run_script`
    (with the host's network, for the test's loopback servers, and not
    strict); ``sandbox=False`` runs it on the host.
    """
    root = Path(root)
    element = element_dir or element_path("heat-config")
    settings = heat_config_env(root, attempts=attempts, backoff=backoff)
    hooks_dir = Path(settings["HEAT_CONFIG_HOOKS"])
    if not hooks_dir.exists():
        hooks_dir.mkdir(parents=True)
        for group in HOOK_GROUPS:
            shutil.copy2(hook_source(group), hooks_dir / group)
        (hooks_dir / "os-apply-config").symlink_to("apply-config")
    notify = Path(settings["HEAT_CONFIG_NOTIFY"])
    if not notify.exists():
        notify.parent.mkdir(parents=True, exist_ok=True)
        notify.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} "
                          f"{shlex.quote(str(element / NOTIFY_SCRIPT))} "
                          '"$@"\n')
        notify.chmod(0o755)
    for name, text in (hooks or {}).items():
        path = hooks_dir / name
        if path.is_symlink() or path.exists():
            path.unlink()
        if text:
            path.write_text(text)
            path.chmod(0o755)
    config_file = Path(settings["HEAT_SHELL_CONFIG"])
    if deployments is not None:
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps(list(deployments)))
        config_file.chmod(0o600)
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(root)}
    run_env.update(settings)
    run_env.update(env or {})
    if not sandbox:
        proc = subprocess.run(
            [sys.executable, str(element / CONFIGURE_SCRIPT)],
            env=run_env, capture_output=True, text=True, timeout=timeout,
            check=False)
        return HeatConfigRun(proc.returncode, proc.stdout, proc.stderr, root)
    # In the sandbox: nothing outside ``root`` can be written; the host's
    # network stays (the tests' loopback Heat), and this interpreter and
    # its virtualenv are visible read-only for heat-config-notify.  Not
    # strict: the runner and hooks start programs by path, and what they
    # may reach is what the test wired in.
    result = run_script(element / CONFIGURE_SCRIPT, root, env=run_env,
                        timeout=timeout, strict=False, network=True,
                        binds=[element, *_interpreter_binds()])
    return HeatConfigRun(result.returncode, result.stdout, result.stderr,
                         root)


def _interpreter_binds() -> list[Path]:
    """This interpreter's prefixes and the hook elements' directories, as
    a sandboxed run needs to see them."""
    paths = {Path(sys.prefix), Path(sys.base_prefix),
             Path(os.path.realpath(sys.executable)).parent.parent}
    paths.update(hook_source(group).parent.parent for group in HOOK_GROUPS)
    return sorted(p for p in paths
                  if not str(p).startswith(("/usr", "/bin", "/lib")))
