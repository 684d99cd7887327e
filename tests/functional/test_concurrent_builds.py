"""Two real builds started together on one host both succeed.

diskimage-builder bind-mounts its download cache into every chroot, and
apt takes a lock there: the second of two builds at once used to die
with ``Could not get lock /var/cache/apt/archives/lock``.  Each build
now works on its own hard-linked copy of the shared cache and merges new
downloads back; this runs two small builds (``debian-minimal``, ``-t
tar``) at the same moment, sharing one cache directory, and checks both
tarballs and that the shared cache received their downloads.
"""

from __future__ import annotations

import os
import tarfile

from testtools import content

from tests.functional import base, builds


class TestConcurrentBuilds(base.FunctionalTestCase):

    def test_two_builds_at_once(self) -> None:
        # The host's shared cache (warm when other builds ran here).
        cache = os.environ.get("DIB_IMAGE_CACHE",
                               os.path.expanduser("~/.cache/image-create"))
        args = ["--no-defaults", "-e", "debian-minimal", "-t", "tar",
                "--image-cache", cache]
        runs = [builds.Build(args, self.workdir / name)
                for name in ("first", "second")]
        for run in runs:
            self.addOnException(
                lambda exc_info, run=run: self.attach_log(
                    run.output.name, run.log, 80))
        codes = [run.wait() for run in runs]
        self.addDetail("seconds", content.text_content(
            " ".join(f"{r.seconds:.0f}" for r in runs)))
        for run, code in zip(runs, codes):
            self.assertEqual(0, code, f"{run.output.name}:\n{run.tail()}")
            tar = run.output.with_name(run.output.name + ".tar")
            with tarfile.open(tar) as archive:
                names = set(archive.getnames())
            self.assertIn("./etc/debian_version", names)
            self.assertIn("./usr/bin/apt-get", names)
            self.assertIn(str(tar), [i["path"]
                                     for i in run.manifest()["images"]])
        debs = list((os.path.join(cache, "apt", d)
                     for d in os.listdir(os.path.join(cache, "apt"))))
        self.assertTrue(any(f.endswith(".deb") for d in debs
                            for f in os.listdir(d)), debs)
        self.assertEqual([], [n for n in os.listdir(cache)
                              if n.startswith(".tie-build-")])
