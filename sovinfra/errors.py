"""Errors a person can act on. The CLI prints them without a traceback and exits 2."""


class UserError(Exception):
    """Bad input or an environment that cannot work; the message names the file, key or host."""
