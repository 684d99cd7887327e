"""The one error hierarchy of the project.

Every user-facing failure is a :class:`TieError` carrying a one-line
``message`` (naming the file or the element chain involved), a ``hint``
(what to do about it) and a stable ``ref`` code.  Only ``cli.main`` turns
them into exit codes; library code raises and never exits.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class TieError(Exception):
    """Base error: bad input detected before anything slow was started."""

    ref = "tie-error"
    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def render(self) -> str:
        """The one-line message (plus hint) printed by the CLI.

        Control characters (a line break in a file or element name) are
        escaped, so it stays one line whatever it quotes.
        """
        text = f"error[{self.ref}]: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return one_line(text)


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\t``, ...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else
                   c.encode("unicode_escape").decode("ascii") for c in text)


class UsageError(TieError):
    ref = "usage"


class ElementsPathError(TieError):
    ref = "elements-path"


class ElementFormatError(TieError):
    ref = "element-format"


class UnreadablePath(TieError):
    """A file or directory of an element tree cannot be read."""

    ref = "unreadable"


class SymlinkLoop(TieError):
    """A symbolic link in an element tree points back at itself."""

    ref = "symlink-loop"


class ElementNameClash(TieError):
    """Two directories of one ELEMENTS_PATH entry give the same name."""

    ref = "element-name-clash"


def from_os_error(path: object, exc: OSError, what: str = "") -> TieError:
    """The :class:`TieError` for ``exc`` raised while reading ``path``.

    ``what`` says what the path is for (``"element-deps"``, ``"element
    directory"``...); a symlink loop and a refused permission get their
    own class and hint.
    """
    import errno
    kind = f" ({what})" if what else ""
    reason = exc.strerror or exc.__class__.__name__
    if exc.errno == errno.ELOOP:
        return SymlinkLoop(
            f"{path}{kind}: symbolic link loop ({reason})",
            "remove the link or point it at a real file or directory")
    if isinstance(exc, PermissionError):
        return UnreadablePath(
            f"{path}{kind}: permission denied",
            "make it readable by the user running build-image "
            "(chmod a+rX), or remove it")
    return UnreadablePath(f"{path}{kind}: cannot read ({reason})",
                          "fix or remove it")


class ElementNotFound(TieError):
    ref = "element-not-found"


class ProvidedTwice(TieError):
    ref = "provided-twice"


class RequestedButProvided(TieError):
    ref = "requested-but-provided"


class MissingOperatingSystem(TieError):
    ref = "no-operating-system"


class HookCollision(TieError):
    ref = "hook-collision"


class HostToolsMissing(TieError):
    ref = "host-tools-missing"


class BuildFailed(TieError):
    """The build itself ran and failed (exit 1, not bad input)."""

    ref = "build-failed"
    exit_code = EXIT_FAILED


class ShellcheckFailed(TieError):
    """shellcheck was found but failed to run (not: it found problems)."""

    ref = "shellcheck-failed"


class CommandError(TieError):
    """A helper command failed (exit 1: something ran and broke)."""

    ref = "command-failed"
    exit_code = EXIT_FAILED


class Interrupted(TieError):
    """The user (or a supervisor) stopped the build with a signal."""

    ref = "interrupted"
    exit_code = 130


class OutputNotWritable(TieError):
    """The output (or TMP_DIR) directory cannot be written: found before
    anything slow starts."""

    ref = "output-not-writable"


class BuildLocked(TieError):
    """Another build is writing the same output right now."""

    ref = "build-locked"


class ImageCacheError(TieError):
    """A build for the test image cache failed."""

    ref = "image-cache"
    exit_code = EXIT_FAILED


class CommandTimedOut(CommandError):
    """A long command gave no result within its time limit (it was
    stopped)."""

    ref = "timed-out"


class ImageError(TieError):
    """A built image could not be inspected (``testing.image``)."""

    ref = "image-inspect"
    exit_code = EXIT_FAILED


class RenderError(TieError):
    """os-apply-config refused the templates or the metadata
    (``testing.templates``); ``stderr`` is the tool's own output."""

    ref = "render"
    exit_code = EXIT_FAILED

    def __init__(self, message: str, stderr: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.stderr = stderr


class VmError(TieError):
    """A test VM did not do what was expected (exit 1, not bad input)."""

    ref = "vm-failed"
    exit_code = EXIT_FAILED


class ConsoleTimeout(VmError):
    """The VM's console never showed the expected text."""

    ref = "vm-console-timeout"


class VmExited(VmError):
    """qemu is gone while something still waited on the guest."""

    ref = "vm-exited"


class PublishSettingsError(TieError):
    """Bad publish target or settings, found before any upload (exit 2)."""

    ref = "publish-settings"


class PublishError(TieError):
    """The upload ran and failed; nothing is left under the final name."""

    ref = "publish-failed"
    exit_code = EXIT_FAILED


class PublishAuthError(PublishError):
    """The store refused the credentials."""

    ref = "publish-auth"


class MaintenanceMode(PublishError):
    """The store is in maintenance mode: writes are refused."""

    ref = "publish-maintenance"


class VerifyError(PublishError):
    """What the store holds does not match what was sent."""

    ref = "publish-verify"


class DefinitionError(TieError):
    """An image definitions file (images.yaml) is not valid: the message
    names the file, the line and the key path."""

    ref = "images-file"


class SourceError(TieError):
    """An element source (git or path) cannot be used as given: unsafe
    URL or ref, unreachable with nothing cached, a subdir escaping its
    checkout, a broken ``requires``/``settings``/``bindep.txt``."""

    ref = "source"


class SourceUnreachable(SourceError):
    """A git source's remote cannot be reached and nothing usable is
    cached."""

    ref = "source-unreachable"


class LockStale(TieError):
    """``--locked``: a source's ref no longer points at the locked
    commit, or that commit is gone."""

    ref = "lock-stale"


class PackageMissing(TieError):
    """A test helper needs a program that is not installed; the message
    names the package that provides it."""

    ref = "package-missing"


class SandboxUnavailable(TieError):
    """``testing.scripts`` cannot start its sandbox (bubblewrap missing,
    or user namespaces refused on this machine)."""

    ref = "sandbox-unavailable"


class CommandNotAllowed(TieError, AssertionError):
    """A sandboxed script ran a command that is neither stubbed nor
    allowed.  Also an ``AssertionError``, so test runners report it as a
    failed test; ``result`` is what the script did."""

    ref = "command-not-allowed"
    exit_code = EXIT_FAILED

    def __init__(self, message: str, result: object,
                 hint: str = "") -> None:
        super().__init__(message, hint)
        self.result = result


class ScriptTimedOut(CommandTimedOut):
    """A tested script did not finish in time; it was killed.  Carries
    the output so far (``stdout``, ``stderr``) and the stub calls made
    (``calls``)."""

    ref = "script-timed-out"

    def __init__(self, message: str, *, stdout: str, stderr: str,
                 calls: tuple[tuple[str, ...], ...], hint: str = "") -> None:
        super().__init__(message, hint)
        self.stdout = stdout
        self.stderr = stderr
        self.calls = calls


class MenuError(TieError):
    """A menu (an element's ``menu.yaml``, a ``NAME.menu.json``) or a
    project or selection file is malformed."""

    ref = "menu"


class MenuClash(MenuError):
    """Two resolved elements define the same feature or variable."""

    ref = "menu-clash"


class MenuRefused(MenuError):
    """A project policy or an instance selection breaks the menu: every
    problem is printed on a line of its own."""

    ref = "menu-refused"

    def __init__(self, problems: list[str] | tuple[str, ...],
                 hint: str = "") -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems), hint)

    def render(self) -> str:
        lines = [one_line(f"error[{self.ref}]: {p}") for p in self.problems]
        if self.hint:
            lines[-1] += one_line(f" (hint: {self.hint})")
        return "\n".join(lines)
