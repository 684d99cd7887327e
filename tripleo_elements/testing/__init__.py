"""Public helpers for testing diskimage-builder elements.

Each module has an ``__all__`` and is documented in the README's
"Testing your element" section: ``elements`` (find elements, build
throwaway element trees), ``scripts`` (run element scripts with stubbed
commands), ``sandbox`` (the bubblewrap sandbox they run in), ``stubs``
(stubs that answer per call), ``templates`` (render os-apply-config
templates), ``heatconfig`` (run heat-config deployments), ``http`` (a
loopback Heat signal server), ``configdrive`` (Nova-style config
drives), ``image`` (inspect a built image), ``qemu`` (boot one),
``accel`` (which accelerator it gets), ``imagecache`` (build images
once per content) and ``controlplane`` (a real Keystone and Heat on
loopback).  Import the modules you need; this package imports
none of them.
"""

__all__ = [
    "accel", "configdrive", "controlplane", "elements", "heatconfig",
    "http", "image", "imagecache", "qemu", "sandbox", "scripts", "stubs",
    "templates",
]
