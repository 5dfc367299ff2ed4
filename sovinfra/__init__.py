"""sovinfra: provision, verify and rebuild an owned GPU site over SSH."""

__version__ = "0.1.0"
