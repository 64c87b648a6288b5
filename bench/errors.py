"""Errors that the CLI turns into one line on stderr and an exit code."""


class BadInput(Exception):
    """The user asked for something that cannot be done as asked (exit code 2)."""
