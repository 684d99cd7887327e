"""Per-instance configuration from a menu of features and variables.

Elements offer **features** (units to turn on, packages installed at
build time) and typed **variables** in ``menu.yaml``; the image's global
menu is their union (:mod:`.model`, checked at ``plan`` time and written
into the image and next to it as ``NAME.menu.json``).  A project policy
gives each feature a state (unavailable, available, default) and
variables their project defaults; an instance's choices plus that policy
make the metadata document the guest's ``menu-driver`` applies
(:mod:`.policy`).  :mod:`.rules` holds the rules both sides apply (the
guest runs a copy of it); :mod:`.render` prints a menu; :mod:`.command`
is the command line.
"""

from tripleo_elements.menu.model import (EMPTY, FILE_NAME, IMAGE_PATH, Menu,
                                         load_json, menu_of)
from tripleo_elements.menu.policy import METADATA_KEY

__all__ = ["EMPTY", "FILE_NAME", "IMAGE_PATH", "METADATA_KEY", "Menu",
           "load_json", "menu_of"]
