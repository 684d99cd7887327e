"""Find providers by entry point and check settings against their schema."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

import jsonschema

from tripleo_elements.publish import api
from tripleo_elements.publish.errors import PublishSettingsError

GROUP = "tripleo_elements.publish.provider"

# Our own providers, used when this tree runs uninstalled (PYTHONPATH) and
# so has no entry points registered; installed ones win on a name clash.
BUILTIN = {
    "dir": "tripleo_elements.publish.providers.dir:PROVIDER",
    "glance": "tripleo_elements.publish.providers.glance:PROVIDER",
    "s3": "tripleo_elements.publish.providers.s3:PROVIDER",
    "swift": "tripleo_elements.publish.providers.swift:PROVIDER",
}


def available() -> dict[str, metadata.EntryPoint]:
    found = {name: metadata.EntryPoint(name, value, GROUP)
             for name, value in BUILTIN.items()}
    for ep in metadata.entry_points(group=GROUP):
        found[ep.name] = ep
    return dict(sorted(found.items()))


def load(name: str) -> api.Provider:
    eps = available()
    if name not in eps:
        raise PublishSettingsError(
            f"unknown publish provider '{name}'",
            f"known: {', '.join(eps)}; a third-party provider registers "
            f"the entry point group {GROUP}")
    provider = eps[name].load()
    if not isinstance(provider, api.Provider) or provider.name != name:
        raise PublishSettingsError(
            f"entry point {eps[name].value} is not a publish provider "
            f"named '{name}'", "it must satisfy publish.api.Provider")
    if "image" not in provider.data_types:
        raise PublishSettingsError(
            f"provider '{name}' does not accept images",
            f"it accepts: {', '.join(sorted(provider.data_types))}")
    return provider


def validate(provider: api.Provider, settings: Mapping[str, Any],
             where: str) -> None:
    """One-line error for the first unknown, missing or mistyped setting."""
    schema = provider.settings_schema
    validator = jsonschema.Draft202012Validator(schema)
    # Unknown keys first: a misplaced credential is the likeliest one.
    rank = {"additionalProperties": 0, "required": 1}
    errors = sorted(validator.iter_errors(dict(settings)),
                    key=lambda e: (rank.get(str(e.validator), 2),
                                   [str(p) for p in e.path], e.message))
    if not errors:
        return
    err = errors[0]
    if err.validator == "additionalProperties":
        extra = sorted(set(settings) - set(schema.get("properties", {})))
        msg = f"unknown setting(s) {', '.join(extra)}"
    elif err.validator == "required":
        msg = err.message.replace("is a required property",
                                  "is a required setting")
    else:
        key = ".".join(str(p) for p in err.path) or "settings"
        msg = f"{key}: {err.message}"
    known = ", ".join(sorted(schema.get("properties", {})))
    raise PublishSettingsError(
        f"{where}: provider '{provider.name}': {msg}",
        f"settings of '{provider.name}': {known}; credentials are never "
        f"settings (see README 'Publishing images')")
