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
    """Reading or writing an object failed (file permissions, disk, network, the object store failing)."""


class ModelError(ConsoleError):
    """No usable model, or a model file that cannot be loaded or trained."""


class PermissionDenied(ConsoleError):
    """The acting user's role does not allow this."""


class ExternalServiceError(ConsoleError):
    """A cloud service answered with an error or could not be reached."""


class CloudAccessError(ExternalServiceError):
    """The cloud refused the console's own AWS identity, not a console user's role (that is PermissionDenied):
    no credentials were found or they are incomplete, they could not be loaded (SSO, token or role refresh),
    AWS rejected them (invalid key, bad signature, expired or invalid token), or the identity lacks a
    permission (AccessDenied, AccessDeniedException, UnauthorizedOperation, HTTP 403). The message names the
    service, what was being done and the permission or setting to fix; ``services.core.aws`` raises it."""


class StorageAccessError(CloudAccessError, StorageError):
    """A CloudAccessError on an object-store (S3) operation. It is a StorageError too, so callers that set an
    unreadable object aside and retry it later keep doing so once the credentials or policy are fixed."""


class JobCancelled(ConsoleError):
    """Raised inside a job when a person cancelled it."""
