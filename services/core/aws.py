"""AWS failures in plain words: the one place where botocore exceptions become console errors.

``translate(exc, service=..., action=..., resource=...)`` returns the ConsoleError for a botocore exception
(``ClientError`` or ``BotoCoreError``); ``errors(...)`` does the same around a block. Every message names the
service, what was being done and on what, keeps the AWS error code, and says what to do.

- CloudAccessError (StorageAccessError, also a StorageError, for object-store calls with ``storage=True``):
  no or incomplete credentials, credentials that cannot be loaded (SSO, token, role refresh), rejected keys,
  bad signatures, invalid or expired tokens (``BAD_CREDENTIALS``), AccessDenied, AccessDeniedException,
  UnauthorizedOperation and any other HTTP 403 (``DENIED``). The message names the permission needed.
- NotFound: NoSuchBucket (naming the bucket), NoSuchKey, 404, NotFound, ResourceNotFound(Exception).
- ImageError: Rekognition's InvalidImageFormatException and ImageTooLargeException.
- InvalidInput (ImageError with ``image=True``): ValidationException, InvalidParameter... and the other
  ``INVALID`` codes, and botocore's own validation (ParamValidationError).
- ExternalServiceError (StorageError with ``storage=True``): throttling (``THROTTLED``, HTTP 429), server
  errors (``SERVER``, HTTP 5xx) - try again later; connection, endpoint, TLS and timeout errors - check the
  network, region and endpoint; no region configured; any other code or botocore error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from botocore import exceptions as bx

from services.core.errors import (
    CloudAccessError,
    ConsoleError,
    ExternalServiceError,
    ImageError,
    InvalidInput,
    NotFound,
    StorageAccessError,
    StorageError,
)

# AWS error codes by meaning (the codes of S3, Rekognition, SageMaker, STS and the EC2-style query APIs)
NO_BUCKET = {"NoSuchBucket"}
MISSING = {"NoSuchKey", "404", "NotFound", "ResourceNotFound", "ResourceNotFoundException", "NoSuchEntity"}
BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
                   "InvalidToken", "InvalidClientTokenId", "UnrecognizedClientException", "InvalidSignatureException",
                   "IncompleteSignature", "MissingAuthenticationToken", "AuthFailure", "RequestExpired",
                   "TokenRefreshRequired"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403",
          "AllAccessDisabled", "AuthorizationError", "NotAuthorized"}
BAD_IMAGE = {"InvalidImageFormatException", "ImageTooLargeException"}
INVALID = {"ValidationException", "ValidationError", "InvalidParameterException", "InvalidParameterValue",
           "InvalidParameterValueException", "InvalidParameterCombination", "InvalidParameter", "InvalidRequest",
           "InvalidArgument", "InvalidInput", "MissingParameter"}
THROTTLED = {"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
             "RequestThrottledException", "TooManyRequestsException", "ProvisionedThroughputExceededException",
             "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "SlowDown",
             "EC2ThrottledException", "PriorRequestNotComplete", "TransactionInProgressException"}
SERVER = {"InternalError", "InternalFailure", "InternalServerError", "InternalServerException", "ServiceUnavailable",
          "ServiceUnavailableException", "ServiceFailure", "RequestTimeout", "RequestTimeoutException"}
_LOADING = (bx.CredentialRetrievalError, bx.NoAuthTokenError, bx.TokenRetrievalError, bx.SSOError,
            bx.RefreshWithMFAUnsupportedError, bx.ProfileNotFound, bx.UnknownCredentialError, bx.LoginError)
_CONFIGURE = ("Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in ~/.aws/credentials (AWS_PROFILE) or an "
              "instance/task role for the console's server, then try again.")


def code_of(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def translate(exc: BaseException, *, service: str, action: str, resource: str | None = None,
              permission: str | None = None, endpoint: str | None = None, attempts: int | None = None,
              storage: bool = False, image: bool = False) -> ConsoleError:
    """The ConsoleError for a botocore exception raised while ``service`` (its name for people: "S3",
    "Rekognition", "SageMaker") was asked to ``action`` (a verb phrase: "read", "start the training job")
    ``resource`` (what it acts on, if anything: "s3://b/k"). A ConsoleError comes back unchanged.

    ``permission``: what the AWS identity needs, for the access-denied message ("s3:GetObject"; by default
    the permission for the refused operation). ``endpoint``: the endpoint URL in use, for connection errors.
    ``attempts``: how many tries were made when the caller retried itself (else botocore's count).
    ``storage``: an object-store operation, whose failures are StorageError (StorageAccessError for access).
    ``image``: the caller's only input in the request is an image, so a request the service rejects as
    invalid is an ImageError.
    """
    if isinstance(exc, ConsoleError):
        return exc
    doing = f"{action} {resource}" if resource else action
    access = StorageAccessError if storage else CloudAccessError
    failure = StorageError if storage else ExternalServiceError
    if isinstance(exc, bx.ClientError):
        return _client_error(exc, service=service, action=action, resource=resource, permission=permission,
                             attempts=attempts, access=access, failure=failure, image=image)
    if isinstance(exc, bx.NoCredentialsError):
        return access(f"no AWS credentials to {doing}: {service} requests must be signed and no AWS credentials "
                      f"were found. {_CONFIGURE}")
    if isinstance(exc, bx.PartialCredentialsError):
        return access(f"incomplete AWS credentials to {doing} ({exc}): give both the access key and the secret. "
                      f"{_CONFIGURE}")
    if isinstance(exc, _LOADING):
        return access(f"the AWS credentials to {doing} could not be loaded ({type(exc).__name__}: {exc}): refresh "
                      "them (for SSO: aws sso login), or check the profile and role settings, then try again.")
    if isinstance(exc, bx.NoRegionError):
        return failure(f"{service} needs an AWS region to {doing}: set the {service} region in the console's "
                       "settings or AWS_DEFAULT_REGION (for example us-east-1), then try again.")
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError)):  # refused, DNS, TLS, timeouts, resets
        where = endpoint or getattr(exc, "kwargs", {}).get("endpoint_url") or "(AWS default)"
        return failure(f"cannot reach the {service} endpoint {where} to {doing}: {exc}. Check the network, the "
                       "region and the endpoint_url setting, then try again.")
    if isinstance(exc, (bx.ParamValidationError, bx.ValidationError)):
        return (ImageError if image else InvalidInput)(f"invalid {service} request to {doing}: {exc}")
    if isinstance(exc, bx.BotoCoreError):
        return failure(f"{service} request to {doing} failed ({type(exc).__name__}: {exc}). Check the {service} "
                       "settings and try again.")
    return failure(f"{service} request to {doing} failed ({type(exc).__name__}: {exc}). Try again.")


def _client_error(exc: bx.ClientError, *, service: str, action: str, resource: str | None,
                  permission: str | None, attempts: int | None, access: type[CloudAccessError],
                  failure: type[ConsoleError], image: bool) -> ConsoleError:
    response = exc.response or {}
    err = response.get("Error", {}) or {}
    meta = response.get("ResponseMetadata", {}) or {}
    code, message = code_of(exc), str(err.get("Message", "") or "")
    status = int(meta.get("HTTPStatusCode") or 0)
    detail = f"{code}: {message}" if code and message else code or message or f"HTTP {status or '?'}"
    doing = f"{action} {resource}" if resource else action
    # with a resource the message leads with it: "access denied to s3://b/k: ... when asked to read it"
    lead, asked = (f"access denied to {resource}", f"{action} it") if resource else ("access denied", action)
    if code in BAD_CREDENTIALS:
        return access(f"{lead}: {service} rejected the AWS credentials ({detail}) when asked to {asked}. Fix the "
                      "credentials/policy: check the access key, secret and session token (renew an expired "
                      "token) and the server's clock, then try again.")
    if code in DENIED or (status == 403 and code not in THROTTLED | SERVER):
        operation = getattr(exc, "operation_name", "") or ""
        need = permission or (f"permission for {service} {operation}" if operation else f"the {service} permission")
        policy = "the IAM policy, or the bucket policy" if service == "S3" or "s3:" in need else "the IAM policy"
        return access(f"{lead}: {service} refused access ({detail}) when asked to {asked}. The AWS identity needs "
                      f"{need}: fix the credentials/policy ({policy}) and try again; nothing was changed.")
    if code in NO_BUCKET:
        names = [str(err["BucketName"])] if err.get("BucketName") else re.findall(r"s3://([^/\s()]+)", resource or "")
        bucket = " or ".join(dict.fromkeys(names)) or "(not named)"
        return NotFound(f"bucket not found: {bucket} (for {resource or doing}). Check the bucket name.")
    if code in MISSING or (status == 404 and not code):
        if service == "S3":
            return NotFound(f"object not found: {resource or doing} ({detail}). Check the bucket and key, or "
                            "whether the object was moved or deleted.")
        return NotFound(f"{service} found nothing to {doing} ({detail}): check the name, or whether it was deleted.")
    if code in BAD_IMAGE:
        return ImageError(f"{service} cannot use {resource or 'the image'} ({detail}): give a JPEG or PNG within "
                          f"{service}'s size limits.")
    if code in INVALID:
        if image:
            return ImageError(f"{service} rejected {resource or 'the image'} ({detail}); very small images (under "
                              "80 pixels a side) are refused too.")
        return InvalidInput(f"{service} refused to {doing} ({detail}): the request is not valid. Check the values "
                            "and settings it was made from.")
    tries = attempts or (int(meta.get("RetryAttempts") or 0) + 1)
    after = f" after {tries} attempts" if tries > 1 else ""
    if code in THROTTLED or status == 429:
        return failure(f"{service} is {'still ' if tries > 1 else ''}throttling{after} ({detail}) when asked to "
                       f"{doing}: lower the request rate or ask AWS for a higher quota, then try again later.")
    if code in SERVER or status >= 500:
        return failure(f"{service} failed on its side{after} ({detail}) when asked to {doing}: try again later; "
                       "if it keeps failing, check the AWS Health Dashboard.")
    return failure(f"{service} could not {doing} ({detail}). Try again; if it keeps failing, check the {service} "
                   "settings.")


@contextlib.contextmanager
def errors(*, service: str, action: str, resource: str | None = None, permission: str | None = None,
           endpoint: str | None = None, storage: bool = False, image: bool = False) -> Iterator[None]:
    """Raise ``translate``'s ConsoleError for any botocore exception inside the block (others pass)."""
    try:
        yield
    except (bx.ClientError, bx.BotoCoreError) as exc:
        raise translate(exc, service=service, action=action, resource=resource, permission=permission,
                        endpoint=endpoint, storage=storage, image=image) from exc


__all__ = ["code_of", "errors", "translate"]
