"""One error hierarchy for the whole console. Pages catch ``ConsoleError`` and show its message."""


class ConsoleError(Exception):
    """Base class: the message is written for the person who will read it."""


class InvalidInput(ConsoleError):
    """The caller gave something unusable (a bad row, a wrong format, a bad setting)."""


class NotFound(ConsoleError):
    """A URI, review, image, job or model version does not exist."""


class ImageError(InvalidInput):
    """An image cannot be decoded safely (corrupt, empty, not an image, too large)."""


class StorageError(ConsoleError):
    """Reading or writing an object failed (permissions, network, missing bucket)."""


class ModelError(ConsoleError):
    """No usable model, or a model file that cannot be loaded or trained."""


class PermissionDenied(ConsoleError):
    """The acting user's role does not allow this."""


class ExternalServiceError(ConsoleError):
    """A cloud service answered with an error or could not be reached."""


class JobCancelled(ConsoleError):
    """Raised inside a job when a person cancelled it."""
