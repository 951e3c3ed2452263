"""Exceptions that carry a message meant for the user, not a traceback."""


class UserError(Exception):
    """Bad input the user can fix (path, config, checkpoint, option).

    The command line prints it as one line and exits with status 2.
    """


class VideoError(Exception):
    """One video cannot be used; the run reports it and goes on with the others."""
