"""tripleo-image-elements: build Heat-driven OpenStack images from DIB elements."""
