"""ppx-desktop: a private, full-duplex voice conversation with NVIDIA PersonaPlex on your own GPU."""

__version__ = "0.1.0"
