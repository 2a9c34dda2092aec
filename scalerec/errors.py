"""The one user-facing error type: its message is printed as a single line by the CLI."""


class ScalerecError(Exception):
    """A problem the user can fix (bad input, missing file, too few points); shown without a traceback."""
