"""The one exception type a user ever sees, and the one warning type.

Anything the user can fix (a missing file, a bad value, a checkpoint from another model) is raised as
`PicoError` with a message that says what is wrong and what to do. Messages name config fields in
backticks (`lr`, `max_new_tokens`): the Python API shows them as they are, and the CLI shows each as
the flag that sets it (--lr, --max-new-tokens). The CLI prints the message as a single line and
exits with status 2; everything else is a bug and keeps its traceback.

`warn` reports something worth knowing that does not stop the run (bfloat16 emulated by this CPU,
a damaged best.pt replaced by checkpoint.pt) through Python's warnings, so each is shown once.
"""

import warnings


class PicoError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class PicoWarning(UserWarning):
    """Something the user should know that does not stop the run."""


def warn(message: str) -> None:
    warnings.warn(message, PicoWarning, stacklevel=2)
