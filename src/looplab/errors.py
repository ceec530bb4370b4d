"""The exceptions the command line turns into a one-line error and a non-zero exit."""


class LooplabError(Exception):
    """A user-facing problem: bad input, a missing file, an impossible setting.

    The message must name the problem and, where there is a closed set, the allowed values.
    """


class Stopped(BaseException):
    """A stop signal (SIGTERM, SIGHUP) turned into an exception, as SIGINT becomes KeyboardInterrupt:
    it unwinds through `except Exception` so that the ladder can stop its work, record what was
    interrupted, release its locks and exit with one line (status 128 + the signal's number)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(signum, message)
        self.signum, self.message = signum, message

    def __str__(self) -> str:
        import signal

        return self.message or f"stopped by {signal.Signals(self.signum).name}"
