#!/usr/bin/python3
"""heat-config hook for group ``docker-compose``: bring a project up.

Reads one deployment (JSON) on stdin.  Its ``config`` (a mapping, or
YAML/JSON text) is a Compose file; it is written (0600) as
``docker-compose.yml`` in the project directory
``HEAT_DOCKER_COMPOSE_WORKING``/NAME (NAME: the deployment's name), the
env files its services name (``env_file``) are written from the
``env_files`` input (a list of ``{"file_name", "content"}``, as JSON or a
Python literal), and ``HEAT_DOCKER_COMPOSE_CMD`` (``docker-compose``)
``up -d --no-build`` runs there.  Action ``DELETE`` or an empty config
does nothing.  Prints ``deploy_stdout``, ``deploy_stderr`` and
``deploy_status_code`` as one JSON object.
"""

import ast
import hashlib
import json
import os
import re
import subprocess
import sys

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def safe_name(value):
    text = str(value)
    if SAFE_NAME.fullmatch(text) and text not in (".", ".."):
        return text
    return "id-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_private(path, text):
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def parse_config(config):
    if isinstance(config, dict):
        return config
    try:
        return json.loads(config)
    except ValueError:
        import yaml
        return yaml.safe_load(config)


def parse_env_files(value):
    if not value:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = ast.literal_eval(value)
    return {str(i["file_name"]): str(i.get("content", ""))
            for i in value if isinstance(i, dict) and "file_name" in i}


def result(out, err, code):
    json.dump({"deploy_stdout": out, "deploy_stderr": err,
               "deploy_status_code": code}, sys.stdout)
    return 0


def main():
    working = os.environ.get(
        "HEAT_DOCKER_COMPOSE_WORKING",
        "/var/lib/heat-config/heat-config-docker-compose")
    command = os.environ.get("HEAT_DOCKER_COMPOSE_CMD", "docker-compose")
    deployment = json.load(sys.stdin)
    inputs = {i["name"]: i.get("value") for i in
              deployment.get("inputs") or []
              if isinstance(i, dict) and isinstance(i.get("name"), str)}
    if inputs.get("deploy_action") == "DELETE" or not deployment.get(
            "config"):
        return result("", "", 0)
    try:
        config = parse_config(deployment["config"])
        env_files = parse_env_files(inputs.get("env_files"))
    except (ValueError, SyntaxError, TypeError, KeyError) as e:
        return result("", "cannot read the config: %s\n" % e, 1)
    if not isinstance(config, dict):
        return result("", "config is not a Compose mapping\n", 1)
    project = os.path.join(working, safe_name(
        deployment.get("name") or deployment.get("id", "unnamed")))
    os.makedirs(project, mode=0o700, exist_ok=True)
    write_private(os.path.join(project, "docker-compose.yml"),
                  json.dumps(config, indent=2, sort_keys=True))
    services = config.get("services", config)
    wanted = []
    for service in (services.values() if isinstance(services, dict)
                    else []):
        value = service.get("env_file") if isinstance(service, dict) \
            else None
        wanted += value if isinstance(value, list) else [value]
    for name in wanted:
        if isinstance(name, str) and name in env_files:
            path = os.path.normpath(os.path.join(project, name))
            if os.path.commonpath([path, project]) != project:
                return result("", "env file %r leaves the project\n" %
                              name, 1)
            write_private(path, env_files[name])
    argv = [command, "up", "-d", "--no-build"]
    try:
        proc = subprocess.run(argv, cwd=project, capture_output=True,
                              check=False)
    except OSError as e:
        return result("", "cannot run %s: %s\n" % (command, e), 127)
    return result(proc.stdout.decode("utf-8", "replace"),
                  proc.stderr.decode("utf-8", "replace"), proc.returncode)


if __name__ == "__main__":
    sys.exit(main())
