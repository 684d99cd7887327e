"""Images as code: an image definitions file (``images.yaml``), element
sources by git URL and ref or path, a lock file, many images per run,
provenance (manifest + SPDX SBOM) and publishing after a build.

``images.yaml`` flows in through :mod:`.definitions` (schema-checked,
``schema.json``), its sources through :mod:`.gitcache` and
:mod:`.sources` (mirror cache, checkouts, the source contract),
:mod:`.lock` pins them, :mod:`.project` turns each image into the
options, element index and environment the ordinary plan takes, and
:mod:`.runner` builds, records (:mod:`.sbom`) and publishes.
:mod:`.cli` is the thin wiring into ``build-image``.
"""
