#!/usr/bin/python3
"""heat-config hook for group ``puppet``: ``puppet apply`` the config.

Reads one deployment (JSON) on stdin.  ``config`` (a manifest) is written
to ``HEAT_PUPPET_WORKING``/ID.pp (0700) and applied with
``HEAT_PUPPET_CMD`` (``puppet``) ``apply --color false
--detailed-exitcodes --logdest console``, plus ``--modulepath``/``--tags``
from the options of the same name and, with ``enable_debug``/
``enable_verbose``, ``--debug``/``--verbose`` logging to
``/var/log/puppet/heat-debug.log``/``heat-verbose.log``.  Inputs become
facts (``FACTER_NAME``; off with ``enable_facter: false``); with
``enable_hiera`` they are also written to
``HEAT_PUPPET_HIERA_DATADIR``/heat_config_NAME.json (0600).
``FACTER_heat_outputs_path`` is where a manifest writes output NAME
(``PATH.NAME``).  Puppet's exit status 2 (changes applied) is success.
stdout and stderr are also kept in ``HEAT_PUPPET_LOGDIR``.  Prints the
declared outputs with ``deploy_stdout``, ``deploy_stderr`` and
``deploy_status_code`` as one JSON object.
"""

import hashlib
import json
import os
import re
import subprocess
import sys

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def record_name(value):
    text = str(value)
    if SAFE_NAME.fullmatch(text) and text not in (".", ".."):
        return text
    return "id-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_private(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def fqdn():
    try:
        proc = subprocess.run(["hostname", "-f"], capture_output=True,
                              check=False)
    except OSError:
        return None
    name = proc.stdout.decode("utf-8", "replace").strip()
    return name if proc.returncode == 0 and name else None


def main():
    env = dict(os.environ)
    working = env.get("HEAT_PUPPET_WORKING",
                      "/var/lib/heat-config/heat-config-puppet")
    outputs_dir = env.get("HEAT_PUPPET_OUTPUTS",
                          "/var/run/heat-config/heat-config-puppet")
    logdir = env.get("HEAT_PUPPET_LOGDIR", "/var/run/heat-config/deployed")
    datadir = env.get("HEAT_PUPPET_HIERA_DATADIR", "/etc/puppet/hieradata")
    command = env.get("HEAT_PUPPET_CMD", "puppet")
    deployment = json.load(sys.stdin)
    options = deployment.get("options") or {}
    name = record_name(deployment.get("id", "unnamed"))
    for directory in (working, outputs_dir, logdir):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    outputs_path = os.path.join(outputs_dir, name)

    facts = {}
    hostname = fqdn()
    if hostname:
        facts["FACTER_fqdn"] = hostname
    hiera = {}
    for item in deployment.get("inputs") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"),
                                                        str):
            continue
        value = item.get("value", "")
        if options.get("enable_facter", True):
            facts["FACTER_%s" % item["name"]] = (
                value if isinstance(value, str) else json.dumps(value))
        if options.get("enable_hiera"):
            hiera[item["name"]] = value
    if options.get("enable_hiera"):
        os.makedirs(datadir, mode=0o700, exist_ok=True)
        config_name = record_name(deployment.get("name", name))
        write_private(os.path.join(datadir, "heat_config_%s.json" %
                                   config_name), json.dumps(hiera))
        facts["FACTER_deploy_config_name"] = deployment.get("name")
    facts["FACTER_heat_outputs_path"] = outputs_path
    env.update({k: v for k, v in facts.items() if "\0" not in str(v)})

    manifest = os.path.join(working, "%s.pp" % name)
    write_private(manifest, str(deployment.get("config") or ""), 0o700)
    outputs = [o.get("name") for o in deployment.get("outputs") or []
               if isinstance(o, dict)]
    outputs = [o for o in outputs if isinstance(o, str)
               and SAFE_NAME.fullmatch(o)]
    argv = [command, "apply", "--color", "false", "--detailed-exitcodes",
            "--logdest", "console"]
    if options.get("modulepath"):
        argv += ["--modulepath", str(options["modulepath"])]
    if options.get("tags"):
        argv += ["--tags", str(options["tags"])]
    if options.get("enable_debug"):
        argv += ["--debug", "--logdest", "/var/log/puppet/heat-debug.log"]
    if options.get("enable_verbose"):
        argv += ["--verbose", "--logdest",
                 "/var/log/puppet/heat-verbose.log"]
    argv.append(manifest)
    try:
        proc = subprocess.run(argv, env=env, cwd=working,
                              capture_output=True, check=False)
        out, err, code = (proc.stdout.decode("utf-8", "replace"),
                          proc.stderr.decode("utf-8", "replace"),
                          proc.returncode)
    except OSError as e:
        out, err, code = "", "cannot run %s: %s\n" % (command, e), 127
    stamp = re.sub(r"[^0-9A-Za-z]", "-",
                   str(deployment.get("creation_time") or "unknown"))
    base = os.path.join(logdir, "%s-%s" % (stamp, name))
    write_private(base + "-stdout.log", out)
    write_private(base + "-stderr.log", err)
    result = {}
    for output in outputs:
        try:
            with open("%s.%s" % (outputs_path, output)) as f:
                result[output] = f.read()
        except FileNotFoundError:
            pass
    result.update({"deploy_stdout": out, "deploy_stderr": err,
                   "deploy_status_code": 0 if code in (0, 2) else code})
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
