"""Publish built images where clouds read them.

In: an image file (plus the ``.sha256`` and manifest a build writes beside
it) and a target (a ``publishers`` file entry or a URL).  Out: a
:class:`~tripleo_elements.publish.api.Location` saying where the verified
image now is.  Storage backends are *providers* found by the entry point
group ``tripleo_elements.publish.provider``; each builds a *driver* (put,
find, delete, point ``latest``) and a *lifecycle* (initialize, maintenance
mode, delete the store, attach to a scope).  :func:`core.publish` is the
whole flow: refuse in maintenance, skip what is already there, upload,
verify, then move ``latest``.
"""
