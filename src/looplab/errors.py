"""The one exception type the command line turns into a one-line error and a non-zero exit."""


class LooplabError(Exception):
    """A user-facing problem: bad input, a missing file, an impossible setting.

    The message must name the problem and, where there is a closed set, the allowed values.
    """
