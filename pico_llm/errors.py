"""The one exception type a user ever sees.

Anything the user can fix (a missing file, a bad flag value, a checkpoint from another model) is
raised as `PicoError` with a message that says what is wrong and what to do. The CLI prints that
message as a single line and exits with status 2; everything else is a bug and keeps its traceback.
"""


class PicoError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
