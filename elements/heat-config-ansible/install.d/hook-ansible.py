#!/usr/bin/python3
"""heat-config hook for group ``ansible``: run ``config`` as a playbook.

Reads one deployment (JSON) on stdin.  ``config`` is written to
``HEAT_ANSIBLE_WORKING``/ID_playbook.yaml and the inputs, plus
``heat_config_id`` and ``heat_outputs_path``, to ID_variables.json (both
0600); then ``HEAT_ANSIBLE_CMD`` (``ansible-playbook``) runs it against
``HEAT_ANSIBLE_INVENTORY`` (``localhost,``) with ``--extra-vars @FILE``.
Options: ``modulepath`` (``--module-path``), ``skip_tags``, ``tags``,
``callback_plugins`` (``ANSIBLE_CALLBACK_PLUGINS``).  It runs with
``LC_ALL=C.UTF-8``: Ansible refuses the C locale os-collect-config uses.  A playbook writes
output NAME to ``{{heat_outputs_path}}.NAME``.  Prints the declared
outputs with ``deploy_stdout``, ``deploy_stderr`` and
``deploy_status_code`` as one JSON object.
"""

import hashlib
import json
import os
import re
import subprocess
import sys

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def record_name(deployment_id):
    text = str(deployment_id)
    if SAFE_NAME.fullmatch(text) and text not in (".", ".."):
        return text
    return "id-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def declared_outputs(deployment):
    names = [o.get("name") for o in deployment.get("outputs") or []
             if isinstance(o, dict)]
    return [n for n in names if isinstance(n, str) and SAFE_NAME.fullmatch(n)]


def main():
    env = dict(os.environ)
    working = env.get("HEAT_ANSIBLE_WORKING",
                      "/var/lib/heat-config/heat-config-ansible")
    outputs_dir = env.get("HEAT_ANSIBLE_OUTPUTS",
                          "/var/run/heat-config/heat-config-ansible")
    command = env.get("HEAT_ANSIBLE_CMD", "ansible-playbook")
    inventory = env.get("HEAT_ANSIBLE_INVENTORY", "localhost,")
    deployment = json.load(sys.stdin)
    options = deployment.get("options") or {}
    name = record_name(deployment.get("id", "unnamed"))
    for directory in (working, outputs_dir):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    outputs_path = os.path.join(outputs_dir, name)
    variables = {}
    for item in deployment.get("inputs") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            variables[item["name"]] = item.get("value", "")
    variables["heat_config_id"] = deployment.get("id")
    variables["heat_outputs_path"] = outputs_path
    playbook = os.path.join(working, "%s_playbook.yaml" % name)
    vars_file = os.path.join(working, "%s_variables.json" % name)
    write_private(playbook, str(deployment.get("config") or ""))
    write_private(vars_file, json.dumps(variables))
    outputs = declared_outputs(deployment)
    for output in outputs:
        try:
            os.unlink("%s.%s" % (outputs_path, output))
        except FileNotFoundError:
            pass

    argv = [command, "-i", inventory]
    if options.get("modulepath"):
        argv += ["--module-path", str(options["modulepath"])]
    if options.get("skip_tags"):
        argv += ["--skip-tags", str(options["skip_tags"])]
    if options.get("tags"):
        argv += ["--tags", str(options["tags"])]
    argv += [playbook, "--extra-vars", "@%s" % vars_file]
    # Ansible refuses to start without a UTF-8 locale, and os-collect-config
    # runs its command with LC_ALL=C (glibc's C.UTF-8 needs no package).
    env.pop("PYTHONCOERCECLOCALE", None)
    env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
    if options.get("callback_plugins"):
        env["ANSIBLE_CALLBACK_PLUGINS"] = str(options["callback_plugins"])
    try:
        proc = subprocess.run(argv, env=env, cwd=working,
                              capture_output=True, check=False)
        out, err, code = (proc.stdout.decode("utf-8", "replace"),
                          proc.stderr.decode("utf-8", "replace"),
                          proc.returncode)
    except OSError as e:
        out, err, code = "", "cannot run %s: %s\n" % (command, e), 127
    result = {}
    for output in outputs:
        try:
            with open("%s.%s" % (outputs_path, output)) as f:
                result[output] = f.read()
        except FileNotFoundError:
            pass
    result.update({"deploy_stdout": out, "deploy_stderr": err,
                   "deploy_status_code": code})
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
