#!/usr/bin/python3
"""heat-config hook for group ``script``: run ``config`` as a program.

Reads one deployment (JSON) on stdin.  ``config`` is written to
``HEAT_SCRIPT_WORKING``/ID (mode 0700; run with /bin/sh unless it starts
with ``#!``) and run with every input as an environment variable, plus
``heat_outputs_path``: the script writes output NAME to
``$heat_outputs_path.NAME``.  Prints the outputs declared by the
deployment with ``deploy_stdout``, ``deploy_stderr`` and
``deploy_status_code`` as one JSON object.  Input values are passed as
data, never through a shell.
"""

import hashlib
import json
import os
import re
import subprocess
import sys

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def record_name(deployment_id):
    text = str(deployment_id)
    if SAFE_NAME.fullmatch(text) and text not in (".", ".."):
        return text
    return "id-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def as_text(value):
    return value if isinstance(value, str) else json.dumps(value)


def main():
    working = os.environ.get("HEAT_SCRIPT_WORKING",
                             "/var/lib/heat-config/heat-config-script")
    outputs_dir = os.environ.get("HEAT_SCRIPT_OUTPUTS",
                                 os.path.join(working, "outputs"))
    deployment = json.load(sys.stdin)
    config = deployment.get("config")
    if not isinstance(config, str) or not config.strip():
        json.dump({"deploy_stdout": "", "deploy_status_code": 1,
                   "deploy_stderr": "config is not a script"}, sys.stdout)
        return 0
    name = record_name(deployment.get("id", "unnamed"))
    for directory in (working, outputs_dir):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    script = os.path.join(working, name)
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(config)
    os.chmod(script, 0o700)

    outputs_path = os.path.join(outputs_dir, name)
    declared = [o.get("name") for o in deployment.get("outputs") or []
                if isinstance(o, dict)]
    declared = [n for n in declared
                if isinstance(n, str) and SAFE_NAME.fullmatch(n)]
    for output in declared:
        try:
            os.unlink("%s.%s" % (outputs_path, output))
        except FileNotFoundError:
            pass

    env = dict(os.environ)
    skipped = []
    for item in deployment.get("inputs") or []:
        key = item.get("name") if isinstance(item, dict) else None
        value = as_text(item.get("value")) if key else ""
        if (not isinstance(key, str) or not ENV_NAME.fullmatch(key)
                or "\0" in value):
            skipped.append(str(key))
            continue
        env[key] = value
    env["heat_outputs_path"] = outputs_path

    command = [script] if config.startswith("#!") else ["/bin/sh", script]
    proc = subprocess.run(command, env=env, cwd=working,
                          capture_output=True, check=False)
    result = {}
    for output in declared:
        try:
            with open("%s.%s" % (outputs_path, output)) as f:
                result[output] = f.read()
        except FileNotFoundError:
            pass
    stderr = proc.stderr.decode("utf-8", "replace")
    if skipped:
        stderr += ("heat-config script hook: inputs not usable as "
                   "environment variables: %s\n" % ", ".join(skipped))
    result.update({
        "deploy_stdout": proc.stdout.decode("utf-8", "replace"),
        "deploy_stderr": stderr,
        "deploy_status_code": proc.returncode,
    })
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
