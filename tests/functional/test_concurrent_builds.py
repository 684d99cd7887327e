"""Two real images from one images.yaml, built at once (``--parallel 2``).

diskimage-builder bind-mounts its download cache into every chroot and
apt takes a lock there, so two builds at once used to collide; each
build now works on its own hard-linked copy of the shared cache and
merges new downloads back.  This builds two small images (``debian-
minimal``, ``-t tar``, no defaults) from one file in one run, one of
them with an element (and a ``settings`` default) from a ``file://``
git source made here, the other published to a ``dir`` target; it
checks both tarballs, the shared cache's downloads, the provenance in
the manifests and both SPDX SBOMs with spdx-tools' validator.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import time

from testtools import content

from tests.functional import base

BUILD_TIMEOUT = 1800.0
MARKER = """#!/bin/bash
set -eu
set -o pipefail
echo "${DIB_TIE_MARKER:-unset}" > /etc/tie-marker
"""


def _git(*args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_COMMITTER_NAME="t",
               GIT_AUTHOR_EMAIL="t@t.invalid",
               GIT_COMMITTER_EMAIL="t@t.invalid")
    return subprocess.run(["git", *args], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def _sha256(path: os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _spdx_errors(path: str) -> list[str]:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import \
        validate_full_spdx_document
    return [m.validation_message
            for m in validate_full_spdx_document(parse_file(path))]


class TestConcurrentBuilds(base.FunctionalTestCase):

    def test_two_images_from_one_file_at_once(self) -> None:
        cache = os.environ.get("DIB_IMAGE_CACHE",
                               os.path.expanduser("~/.cache/image-create"))
        repo = self.workdir / "marker-source"
        element = repo / "elements" / "tie-marker" / "install.d"
        element.mkdir(parents=True)
        (element / "50-tie-marker").write_text(MARKER)
        (element / "50-tie-marker").chmod(0o755)
        (repo / "settings").write_text("DIB_TIE_MARKER=from-settings\n")
        _git("-C", str(repo), "init", "-q", "-b", "main")
        _git("-C", str(repo), "add", "-A")
        _git("-C", str(repo), "commit", "-q", "-m", "marker element")
        commit = _git("-C", str(repo), "rev-parse", "HEAD")
        published = self.workdir / "published"
        file = self.workdir / "images.yaml"
        file.write_text(f"""\
sources:
  - name: marker
    git: file://{repo}
    ref: main
defaults:
  os: debian-minimal
  types: [tar]
  no_defaults: true
  output: out/
images:
  - name: first
    elements: [tie-marker]
  - name: second
    publish: ["dir://{published}"]
""")
        marker_text = ""
        log = self.workdir / "build.log"
        self.addOnException(lambda exc_info: self.attach_log(
            "build-image", log, 120))
        env = dict(os.environ, XDG_CACHE_HOME=str(self.workdir / "xdg"))
        started = time.monotonic()
        with open(log, "wb") as handle:
            proc = subprocess.run(
                [str(base.console_script("build-image")), "build", "-f",
                 str(file), "--parallel", "2", "--image-cache", cache,
                 "--no-cache"],
                stdin=subprocess.DEVNULL, stdout=handle,
                stderr=subprocess.STDOUT, env=env, timeout=BUILD_TIMEOUT)
        self.addDetail("seconds", content.text_content(
            f"{time.monotonic() - started:.0f}"))
        text = log.read_text(errors="replace")
        self.assertEqual(0, proc.returncode, text[-4000:])
        out = self.workdir / "out"
        for name in ("first", "second"):
            self.assertRegex(text, rf"\n{name} +ok +\d+ s +[\d.]+ MiB +"
                             rf"{out / name}.tar\n")
            tar = out / f"{name}.tar"
            with tarfile.open(tar) as archive:
                names = set(archive.getnames())
                if name == "first":
                    marker = archive.extractfile("./etc/tie-marker")
                    assert marker is not None
                    marker_text = marker.read().decode()
            self.assertIn("./etc/debian_version", names)
            self.assertIn("./usr/bin/apt-get", names)
            manifest = json.loads(
                (out / f"{name}.manifest.json").read_text())
            self.assertIn(str(tar), [i["path"] for i in manifest["images"]])
            prov = manifest["provenance"]
            self.assertEqual(name, prov["image"])
            self.assertEqual("diskimage-builder",
                             prov["elements"]["debian-minimal"]["source"])
            sbom = out / f"{name}.spdx.json"
            self.assertEqual([], _spdx_errors(str(sbom)))
            doc = json.loads(sbom.read_text())
            purls = [r["referenceLocator"] for p in doc["packages"]
                     for r in p.get("externalRefs", ())]
            self.assertTrue(any(p.startswith("pkg:deb/debian/apt@")
                                for p in purls), purls[:5])
        # The element from the git source, at its commit, with the
        # source's settings default reaching the build.
        self.assertEqual("from-settings\n", marker_text)
        first = json.loads((out / "first.manifest.json").read_text())
        self.assertEqual(
            {"source": "marker", "commit": commit},
            {k: first["provenance"]["elements"]["tie-marker"][k]
             for k in ("source", "commit")})
        self.assertEqual("from-settings",
                         first["host_environment"]["DIB_TIE_MARKER"])
        # The second image was published to the dir target.
        digest = (out / "second.tar.sha256").read_text().split()[0]
        copy = published / "second" / f"{digest}.tar"
        self.assertEqual(digest, _sha256(copy))
        # The shared download cache got the builds' downloads.
        apt = os.path.join(cache, "apt")
        debs = [f for d in os.listdir(apt)
                for f in os.listdir(os.path.join(apt, d))]
        self.assertTrue(any(f.endswith(".deb") for f in debs), debs[:5])
        self.assertEqual([], [n for n in os.listdir(cache)
                              if n.startswith(".tie-build-")])
