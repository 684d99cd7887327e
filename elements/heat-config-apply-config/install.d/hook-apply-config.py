#!/usr/bin/python3
"""heat-config hook for group ``apply-config`` (alias ``os-apply-config``).

Reads one deployment (JSON) on stdin.  Its ``config`` (a mapping) is
written to ``HEAT_APPLY_CONFIG_STATE``/ID.json (mode 0600) and the
templates are rendered by ``HEAT_APPLY_CONFIG_CMD`` (heat-agents' name)
or ``HEAT_APPLY_CONFIG_COMMAND`` (os-apply-config; its own environment,
e.g. ``OS_CONFIG_APPLIER_TEMPLATES``, passes through)
from the instance's whole metadata (``OS_CONFIG_FILES`` from
os-collect-config, else ``OS_CONFIG_FILES_PATH``) with this config merged
last, so that no template loses the keys it renders from other sources.
If the state directory cannot be created, a private temporary one is used.
Prints ``deploy_stdout``, ``deploy_stderr`` and ``deploy_status_code`` as
one JSON object.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def record_name(deployment_id):
    text = str(deployment_id)
    if SAFE_NAME.fullmatch(text) and text not in (".", ".."):
        return text
    return "id-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def metadata_files(env):
    listed = env.get("OS_CONFIG_FILES")
    if listed:
        files = listed.split(":")
    else:
        path = env.get("OS_CONFIG_FILES_PATH",
                       "/var/lib/os-collect-config/os_config_files.json")
        try:
            with open(path) as f:
                files = json.load(f)
        except (OSError, ValueError):
            files = []
    return [f for f in files if isinstance(f, str) and os.path.isfile(f)]


def main():
    env = os.environ
    state = env.get("HEAT_APPLY_CONFIG_STATE",
                    "/var/lib/heat-config/apply-config")
    command = env.get("HEAT_APPLY_CONFIG_CMD") or env.get(
        "HEAT_APPLY_CONFIG_COMMAND", "os-apply-config")
    deployment = json.load(sys.stdin)
    config = deployment.get("config") or {}
    if not isinstance(config, dict):
        json.dump({"deploy_stdout": "", "deploy_status_code": 1,
                   "deploy_stderr": "config is not a mapping"}, sys.stdout)
        return 0
    try:
        os.makedirs(state, mode=0o700, exist_ok=True)
    except OSError:
        state = tempfile.mkdtemp(prefix="heat-apply-config-")
    path = os.path.join(state,
                        record_name(deployment.get("id", "unnamed")) + ".json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, sort_keys=True)
    os.chmod(path, 0o600)
    argv = [command, "--metadata"] + metadata_files(env) + [path]
    try:
        proc = subprocess.run(argv, capture_output=True, check=False)
        out, err, code = (proc.stdout.decode("utf-8", "replace"),
                          proc.stderr.decode("utf-8", "replace"),
                          proc.returncode)
    except OSError as e:
        out, err, code = "", "cannot run %s: %s" % (command, e), 127
    json.dump({"deploy_stdout": out, "deploy_stderr": err,
               "deploy_status_code": code}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
