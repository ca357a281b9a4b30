"""Errors a user can cause, each carrying a sentence that says what is wrong and what to do.

Everything that a user can get wrong (axes, dtypes, files, checkpoints, training data) raises a
subclass of :class:`UserInputError`. The CLI prints its message on one line; the GUI shows it as a
notification. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Base class: the user's input cannot be used; ``str(err)`` is the message to show."""


class AxesError(UserInputError):
    """The array's shape does not match the axes, or the axes cannot be determined safely."""


class ChannelMismatchError(UserInputError):
    """The image has a different number of channels than the model expects."""


class CheckpointError(UserInputError):
    """A checkpoint file is missing, truncated, foreign, unsafe or of an unknown format."""


class ImageReadError(UserInputError):
    """An image file cannot be read (missing, corrupt, unsupported)."""


class TrainingDataError(UserInputError):
    """The annotated data cannot be trained on (empty, one class, mismatched shapes, bad dtype)."""


class TrainingDivergedError(UserInputError):
    """The loss became NaN or infinite; no checkpoint was overwritten."""


class DeviceError(UserInputError):
    """The requested compute device is not available on this machine."""
