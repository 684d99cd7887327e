"""Errors of the publish subsystem (all :class:`errors.TieError`)."""

from __future__ import annotations

from tripleo_elements import errors


class PublishSettingsError(errors.TieError):
    """Bad target or settings, found before any upload (exit 2)."""

    ref = "publish-settings"


class PublishError(errors.TieError):
    """The upload ran and failed; nothing is left under the final name."""

    ref = "publish-failed"
    exit_code = errors.EXIT_FAILED


class PublishAuthError(PublishError):
    ref = "publish-auth"


class MaintenanceMode(PublishError):
    ref = "publish-maintenance"


class VerifyError(PublishError):
    ref = "publish-verify"
