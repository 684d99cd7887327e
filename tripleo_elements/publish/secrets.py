"""Keep credentials out of every message this subsystem prints.

Credentials are read only from the environment and the files each
service's own tools read (``clouds.yaml``, ``~/.aws``); they never appear in
settings, manifests or output.  :func:`redacting` is the safety net around
a publish: any error text that would carry a secret value is masked, and a
library exception we did not translate becomes a one-line PublishError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from tripleo_elements import errors
from tripleo_elements.publish.errors import PublishError

SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ST_KEY",
               "OS_PASSWORD", "OS_TOKEN", "OS_AUTH_TOKEN",
               "OS_APPLICATION_CREDENTIAL_SECRET")
MASK = "***"


def secret_values(env: Mapping[str, str]) -> list[str]:
    # Longest first so a secret containing another is masked whole.
    values = {env[k] for k in SECRET_VARS if len(env.get(k, "")) >= 4}
    return sorted(values, key=lambda v: (-len(v), v))


def redact(text: str, env: Mapping[str, str],
           extra: tuple[str, ...] = ()) -> str:
    for value in (*extra, *secret_values(env)):
        if value:
            text = text.replace(value, MASK)
    return text


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def redacting(env: Mapping[str, str]) -> Iterator[None]:
    try:
        yield
    except errors.TieError as exc:
        exc.message = redact(exc.message, env)
        exc.hint = redact(exc.hint, env)
        exc.args = (exc.message,)
        raise
    except Exception as exc:
        raise PublishError(redact(one_line(exc), env),
                           "nothing was left under the final name") from None
