"""tripleo-image-elements: Heat-driven OpenStack images from DIB elements."""
