# Example: the cabin bundle in a minimal image, for a distro named "cabin" (systemd as init).
IMAGE_INSTALL:append:cabin = " packagegroup-cabin"
