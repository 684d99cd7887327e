"""Errors of the publish subsystem: they live in :mod:`errors` with every
other error class; this module keeps the names its providers import."""

from __future__ import annotations

from tripleo_elements.errors import (MaintenanceMode, PublishAuthError,
                                     PublishError, PublishSettingsError,
                                     VerifyError)

__all__ = ["MaintenanceMode", "PublishAuthError", "PublishError",
           "PublishSettingsError", "VerifyError"]
