"""What every object-store provider must do, against a real server.

Each provider's module subclasses :class:`ProviderContract` with a
server from ``tripleo_elements.publish.testservers`` (loopback only, one
per class, stopped by pid) and four service-specific probes that read the
store through the service's own client, never through our driver.  These
tests need no root; they run with the functional tier.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import testtools

from tripleo_elements.publish import cli, core
from tripleo_elements.publish.errors import PublishError

IMAGE_MIB = 24


def make_image(path: Path, seed: bytes, mib: int = IMAGE_MIB) -> Path:
    """A real qcow2 (qemu-img) holding incompressible, seed-derived data."""
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as f:
        block = hashlib.sha512(seed).digest() * 16384  # 1 MiB
        for i in range(mib):
            f.write(hashlib.sha256(seed + bytes([i])).digest() + block[32:])
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                    str(raw), str(path)], check=True)
    raw.unlink()
    return path


def interrupt_after_a_third(size: int) -> Callable[[int], None]:
    """A progress callback that raises KeyboardInterrupt (Ctrl-C) once a
    third of ``size`` bytes has been sent."""
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] > size // 3:
            raise KeyboardInterrupt
    return progress


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if TYPE_CHECKING:
    _Base = testtools.TestCase
else:
    _Base = object  # a mixin: only its subclasses are collected


class ProviderContract(_Base):
    """Mixin: the behaviour common to s3 and swift (and any object store)."""

    server: ClassVar[Any]
    workdir: ClassVar[Path]
    image_a: ClassVar[Path]
    image_b: ClassVar[Path]

    # Provided by the subclass
    @classmethod
    def start_server(cls, workdir: Path) -> Any:
        raise NotImplementedError

    def target(self, prefix: str, **extra: Any) -> str:
        raise NotImplementedError

    def read_object(self, prefix: str, name: str, leaf: str) -> bytes | None:
        """The object's bytes through the service's client; None if absent."""
        raise NotImplementedError

    def leftovers(self, prefix: str) -> list[str]:
        """Pending multipart uploads / stray segments under prefix."""
        raise NotImplementedError

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        if not shutil.which("qemu-img"):
            raise testtools.TestCase.skipException("qemu-img is not installed")
        cls.workdir = Path(tempfile.mkdtemp(prefix="tie-publish-"))
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        for sub in ("a", "b"):  # one name, two builds
            (cls.workdir / sub).mkdir()
        cls.image_a = make_image(cls.workdir / "a" / "tie.qcow2", b"a")
        cls.image_b = make_image(cls.workdir / "b" / "tie.qcow2", b"b")
        cls.server = cls.start_server(cls.workdir / "server")
        cls.addClassCleanup(cls.server.stop)

    def env(self, **override: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "ST_", "OS_"))}
        env.update(self.server.env())
        env.update(override)
        return env

    def run_cli(self, *argv: str, env: dict[str, str] | None = None
                ) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(argv), self.env() if env is None else env)
        return code, out.getvalue(), err.getvalue()

    def publish(self, image: Path, prefix: str,
                progress: Any = None, **extra: Any) -> Any:
        from tripleo_elements.publish import target
        artifact = core.load_artifact(image)
        store = core.open_store(target.from_url(self.target(prefix,
                                                            **extra)),
                                self.env())
        sent: list[int] = []
        return core.publish(artifact, store, progress or sent.append,
                            self.env()), sent

    # The contract
    def test_upload_read_back_and_republish(self) -> None:
        code, out, err = self.run_cli(str(self.image_a),
                                      "--to", self.target("rt"))
        self.assertEqual(0, code, err)
        self.assertIn("tie: uploaded: ", out)
        digest = core.sha256_file(self.image_a)
        name = f"{digest}.qcow2"
        stored = self.read_object("rt", "tie", name)
        assert stored is not None
        self.assertEqual(digest, sha256_bytes(stored))
        self.assertEqual(f"{digest}  tie.qcow2\n".encode(),
                         self.read_object("rt", "tie", name + ".sha256"))
        self.assertIn(digest.encode(),
                      self.read_object("rt", "tie", "latest") or b"")
        # Same sha256 already there: no byte is sent again.
        location, sent = self.publish(self.image_a, "rt")
        self.assertFalse(location.uploaded)
        self.assertEqual([], sent)
        self.assertEqual([], self.leftovers("rt"))

    def test_killed_mid_upload_leaves_nothing_and_keeps_latest(self) -> None:
        self.publish(self.image_a, "kill")
        digest_b = core.sha256_file(self.image_b)
        size = self.image_b.stat().st_size
        done = [0]

        def crash(n: int) -> None:
            done[0] += n
            if done[0] > size // 3 and self.server.procs:
                self.server.kill()

        try:
            with testtools.ExpectedException(PublishError, ".*"):
                self.publish(self.image_b, "kill", progress=crash)
        finally:
            self.server.start()
        self.assertIsNone(self.read_object("kill", "tie",
                                           f"{digest_b}.qcow2"))
        latest = self.read_object("kill", "tie", "latest") or b""
        self.assertNotIn(digest_b.encode(), latest)
        self.assertIn(core.sha256_file(self.image_a).encode(), latest)
        # The next publish cleans up what the crash left, then succeeds.
        location, sent = self.publish(self.image_b, "kill")
        self.assertTrue(location.uploaded)
        self.assertEqual(size, sum(sent))
        self.assertEqual(digest_b, sha256_bytes(
            self.read_object("kill", "tie", f"{digest_b}.qcow2") or b""))
        self.assertEqual([], self.leftovers("kill"))

    def test_interrupted_upload_cleans_up_at_once(self) -> None:
        # Ctrl-C (KeyboardInterrupt) a third of the way, server alive: the
        # multipart upload is aborted / the segments deleted right away.
        interrupt = interrupt_after_a_third(self.image_b.stat().st_size)
        self.assertRaises(KeyboardInterrupt, self.publish, self.image_b,
                          "intr", progress=interrupt)
        digest = core.sha256_file(self.image_b)
        self.assertIsNone(self.read_object("intr", "tie", f"{digest}.qcow2"))
        self.assertIsNone(self.read_object("intr", "tie", "latest"))
        self.assertEqual([], self.leftovers("intr"))

    def test_wrong_credentials_one_line_exit_1(self) -> None:
        bad = self.bad_credentials()
        code, out, err = self.run_cli(str(self.image_a), "--to",
                                      self.target("creds"),
                                      env=self.env(**bad))
        self.assertEqual(1, code)
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertRegex(err, r"^error\[publish-auth\]: .*"
                         r"(access denied|unauthorized)")
        for value in bad.values():
            self.assertNotIn(value, err + out)
        self.assertIsNone(self.read_object(
            "creds", "tie", f"{core.sha256_file(self.image_a)}.qcow2"))

    def bad_credentials(self) -> dict[str, str]:
        raise NotImplementedError

    def test_maintenance_refuses_writes(self) -> None:
        to = self.target("maint")
        code, out, err = self.run_cli("--to", to, "--maintenance", "on",
                                      "--reason", "disk swap")
        self.assertEqual(0, code, err)
        self.assertIn("in maintenance (disk swap)", out)
        code, out, err = self.run_cli(str(self.image_a), "--to", to)
        self.assertEqual(1, code)
        self.assertIn("error[publish-maintenance]", err)
        self.assertIn("disk swap", err)
        digest = core.sha256_file(self.image_a)
        self.assertIsNone(self.read_object("maint", "tie", f"{digest}.qcow2"))
        code, out, err = self.run_cli("--to", to, "--maintenance", "off")
        self.assertEqual(0, code, err)
        code, out, err = self.run_cli(str(self.image_a), "--to", to)
        self.assertEqual(0, code, err)
        self.assertEqual(digest, sha256_bytes(
            self.read_object("maint", "tie", f"{digest}.qcow2") or b""))

    def test_secrets_never_printed_or_stored(self) -> None:
        code, out, err = self.run_cli(str(self.image_a), "--to",
                                      self.target("sec"), "--format", "json")
        self.assertEqual(0, code, err)
        digest = core.sha256_file(self.image_a)
        manifest = self.read_object("sec", "tie", f"{digest}.manifest.json")
        self.assertIsNotNone(manifest)
        for value in self.server.env().values():
            if "key" in value or "secret" in value:
                self.assertNotIn(value, out + err)
                self.assertNotIn(value.encode(), manifest)
