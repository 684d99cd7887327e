"""Element lint: diskimage-builder's ``dib-lint`` checks, plus the mistakes
it misses, run in one process.

In: element directories (or a ``-e`` request resolved like a build).
Out: sorted findings ``path:line: CODE message`` and an exit code.

The package, by topic:

* :mod:`.model`: findings, the rule registry (it stamps each finding with
  its rule's code), the file and context data rules look at;
* :mod:`.rules_file`, :mod:`.rules_element`, :mod:`.rules_set`: the rules,
  by scope (once per file, per element, per checked set);
  :mod:`.rules_menu`: ``menu.yaml`` and the menu features' templates;
* :mod:`.package_installs`: the package-installs schema (the sibling
  ``package_installs.schema.json``), shared with ``plan``;
* :mod:`.tools`: shellcheck and flake8, run over all files at once;
* :mod:`.cache`: results cached by content;
* :mod:`.targets`: which elements a command line names;
* :mod:`.driver`: runs every rule once; :mod:`.command`: the CLI.

A file opts out of checks the way dib-lint files already do: a line
``# dib-lint: disable=NAME ...`` (dib-lint's test names, e.g. ``sete``,
``safe_sudo``, or our codes) at the start of a line.  Whole-file findings
(a missing ``set -e``...) use line 0.
"""

from __future__ import annotations

# The rule modules register their rules on import.
from tripleo_elements.check import (rules_element, rules_file, rules_menu,
                                    rules_set)
from tripleo_elements.check.command import (FORMATS, add_arguments,
                                            describe_checks, format_findings,
                                            main, run)
from tripleo_elements.check.driver import (SHELLCHECK_MISSING, check_elements,
                                           enabled, failing, validate_codes)
from tripleo_elements.check.model import (CHECKS, ELEMENT, ERROR, FILE,
                                          NOTICE, SET, WARNING, Check,
                                          Finding, severity_of)
from tripleo_elements.check.targets import (is_element_dir,
                                            targets_from_paths)

del rules_element, rules_file, rules_menu, rules_set

__all__ = [
    "CHECKS", "Check", "ELEMENT", "ERROR", "FILE", "FORMATS", "Finding",
    "NOTICE", "SET", "SHELLCHECK_MISSING", "WARNING", "add_arguments",
    "check_elements", "describe_checks", "enabled", "failing",
    "format_findings", "is_element_dir", "main", "run", "severity_of",
    "targets_from_paths", "validate_codes",
]
