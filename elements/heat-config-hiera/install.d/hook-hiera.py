#!/usr/bin/python3
"""heat-config hook for group ``hiera``: hiera configuration and data.

Reads one deployment (JSON) on stdin; its ``config`` may hold:

* ``hierarchy``: a list of data source names; ``HEAT_HIERA_CONFIG``
  (``/etc/puppet/hiera.yaml``) is rewritten for the json backend reading
  ``HEAT_PUPPET_HIERA_DATADIR`` (``/etc/puppet/hieradata``) in that order.
* ``datafiles``: name -> mapping; each is written to
  ``DATADIR/NAME.json``.

Files are written 0600 (hiera data often holds passwords), atomically.
Before anything is written, ``HEAT_HIERA_ELEMENT_CHECK_CMD`` (an
os-apply-config query of the ``hiera.datafiles`` key) must print
``empty``: hiera data from the older os-apply-config templates and this
hook would overwrite each other, so that is reported as a failure.  If the
command is not installed there is no such data.  Prints
``deploy_stdout``, ``deploy_stderr`` and ``deploy_status_code`` as one
JSON object.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

NAME = re.compile(r"[A-Za-z0-9_%{}:.-]+")
DEFAULT_CHECK = ("os-apply-config --key hiera.datafiles --type raw "
                 "--key-default empty")


def write_private(path, text):
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".heat-hiera-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def hiera_yaml(datadir, hierarchy):
    lines = ["", "---", ":backends:", "  - json", ":json:",
             "  :datadir: %s" % datadir, ":hierarchy:"]
    lines += ["  - %s" % item for item in hierarchy]
    return "\n".join(lines) + "\n"


def legacy_data(command):
    """The legacy os-apply-config hiera data, or None if there is none."""
    try:
        proc = subprocess.run(shlex.split(command), capture_output=True,
                              check=False)
    except OSError:
        return None
    out = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode or out == "empty":
        return None
    return out


def result(status, stderr="", stdout=""):
    json.dump({"deploy_stdout": stdout, "deploy_stderr": stderr,
               "deploy_status_code": status}, sys.stdout)
    return 0


def main():
    env = os.environ
    datadir = env.get("HEAT_PUPPET_HIERA_DATADIR", "/etc/puppet/hieradata")
    config_file = env.get("HEAT_HIERA_CONFIG", "/etc/puppet/hiera.yaml")
    check = env.get("HEAT_HIERA_ELEMENT_CHECK_CMD", DEFAULT_CHECK)
    config = json.load(sys.stdin).get("config")
    if not isinstance(config, dict):
        return result(1, "config is not a mapping")
    legacy = legacy_data(check)
    if legacy is not None:
        return result(1, "hiera data from os-apply-config templates is "
                      "present (%s); move it to this hook's datafiles "
                      "first\n" % legacy[:200], legacy)
    hierarchy = config.get("hierarchy")
    datafiles = config.get("datafiles") or {}
    bad = [str(n) for n in list(hierarchy or []) + list(datafiles)
           if not isinstance(n, str) or not NAME.fullmatch(n)]
    if bad or not isinstance(datafiles, dict):
        return result(1, "unusable hiera names: %s\n" % ", ".join(bad))
    os.makedirs(datadir, mode=0o700, exist_ok=True)
    if hierarchy is not None:
        write_private(config_file, hiera_yaml(datadir, hierarchy))
    for name, data in sorted(datafiles.items()):
        write_private(os.path.join(datadir, "%s.json" % name), json.dumps(
            data, indent=4, sort_keys=True, separators=(",", ": ")))
    return result(0)


if __name__ == "__main__":
    sys.exit(main())
