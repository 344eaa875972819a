"""The tool's one error that stops it before anything runs (exit 2)."""


class UsageError(Exception):
    """Bad arguments, events file or host: nothing was started (exit 2)."""
