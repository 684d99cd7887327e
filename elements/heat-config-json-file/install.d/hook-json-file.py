#!/usr/bin/python3
"""heat-config hook for group ``json-file``: write JSON documents.

Reads one deployment (JSON) on stdin whose ``config`` maps absolute file
paths to documents.  Each document is written to its path as JSON
(4-space indent, sorted keys), creating missing directories (0700).  A
new file is mode 0600 (it may hold secrets); an existing file keeps its
mode.  Each file is replaced atomically.  Prints ``deploy_stdout`` (empty),
``deploy_stderr`` and ``deploy_status_code`` (1 if any
path was refused or could not be written) as one JSON object.
"""

import json
import os
import sys
import tempfile


def write_document(path, document):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".heat-json-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=4, sort_keys=True,
                      separators=(",", ": "))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    deployment = json.load(sys.stdin)
    config = deployment.get("config")
    errors = []
    if not isinstance(config, dict):
        errors.append("config is not a mapping of paths to documents")
        config = {}
    for path in sorted(config):
        if not os.path.isabs(path) or "\0" in path:
            errors.append("%r: not an absolute path" % path)
            continue
        try:
            write_document(os.path.normpath(path), config[path])
        except (OSError, TypeError, ValueError) as e:
            errors.append("%s: %s" % (path, e))
    json.dump({
        "deploy_stdout": "",
        "deploy_stderr": "".join(e + "\n" for e in errors),
        "deploy_status_code": 1 if errors else 0,
    }, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
