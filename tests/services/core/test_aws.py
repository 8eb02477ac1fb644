"""services.core.aws: every kind of botocore failure becomes the right console error, with a message that
names the service, what was being done and on what, keeps the AWS error code and says what to do."""

from __future__ import annotations

import pytest
from botocore import exceptions as bx

from services.core import aws
from services.core.errors import (
    CloudAccessError,
    ConsoleError,
    ExternalServiceError,
    ImageError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StorageAccessError,
    StorageError,
)


def client_error(code: str, message: str = "", status: int = 400, operation: str = "GetObject",
                 retries: int | None = None, **error: str) -> bx.ClientError:
    meta: dict = {"HTTPStatusCode": status, "RequestId": "4442587FB7D0A2F9"}
    if retries is not None:
        meta["RetryAttempts"] = retries
    return bx.ClientError({"Error": {"Code": code, "Message": message, **error}, "ResponseMetadata": meta}, operation)


S3_READ = {"service": "S3", "action": "read", "resource": "s3://photos/a.jpg", "permission": "s3:GetObject",
           "storage": True}


# --------------------------------------------------------------------------------------------------
# credentials and permissions: CloudAccessError (StorageAccessError for the object store)


def test_the_hierarchy_stays_small_and_apart_from_user_roles() -> None:
    assert issubclass(CloudAccessError, ExternalServiceError)
    assert issubclass(StorageAccessError, CloudAccessError) and issubclass(StorageAccessError, StorageError)
    assert not issubclass(CloudAccessError, PermissionDenied) and not issubclass(PermissionDenied, CloudAccessError)
    assert not issubclass(StorageError, ExternalServiceError)  # a local disk failure is no cloud service's


def test_no_credentials_says_how_to_configure_them() -> None:
    err = aws.translate(bx.NoCredentialsError(), service="SageMaker", action="start the training job")
    assert type(err) is CloudAccessError
    message = str(err)
    assert message.startswith("no AWS credentials to start the training job: ")
    assert "no AWS credentials were found" in message
    for hint in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "~/.aws/credentials", "AWS_PROFILE", "role"):
        assert hint in message


def test_no_credentials_on_the_object_store_is_also_a_storage_error() -> None:
    err = aws.translate(bx.NoCredentialsError(), **S3_READ)
    assert type(err) is StorageAccessError and isinstance(err, CloudAccessError) and isinstance(err, StorageError)
    assert "no AWS credentials to read s3://photos/a.jpg" in str(err)


def test_partial_credentials_name_what_is_missing() -> None:
    exc = bx.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY")
    err = aws.translate(exc, service="S3", action="list", resource="s3://photos/p/")
    assert type(err) is CloudAccessError
    assert "incomplete AWS credentials to list s3://photos/p/" in str(err) and "AWS_SECRET_ACCESS_KEY" in str(err)


@pytest.mark.parametrize("exc", [
    bx.TokenRetrievalError(provider="sso", error_msg="the SSO session has expired"),
    bx.UnauthorizedSSOTokenError(),
    bx.CredentialRetrievalError(provider="assume-role", error_msg="AccessDenied"),
    bx.ProfileNotFound(profile="prod"),
])
def test_credentials_that_cannot_be_loaded(exc: Exception) -> None:
    err = aws.translate(exc, service="Rekognition", action="detect faces")
    assert type(err) is CloudAccessError
    assert "could not be loaded" in str(err) and type(exc).__name__ in str(err) and "aws sso login" in str(err)


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
                                  "InvalidToken", "InvalidClientTokenId", "UnrecognizedClientException",
                                  "InvalidSignatureException", "AuthFailure"])
def test_rejected_credentials(code: str) -> None:
    err = aws.translate(client_error(code, "The security token included in the request is invalid", 403), **S3_READ)
    assert type(err) is StorageAccessError
    message = str(err)
    assert message.startswith("access denied to s3://photos/a.jpg: S3 rejected the AWS credentials")
    assert f"({code}: The security token" in message
    assert "session token" in message and "clock" in message and "credentials/policy" in message


@pytest.mark.parametrize(("code", "status"), [("AccessDenied", 403), ("AccessDeniedException", 400),
                                              ("UnauthorizedOperation", 403), ("Forbidden", 403),
                                              ("403", 403), ("AllAccessDisabled", 403)])
def test_access_denied_names_the_permission(code: str, status: int) -> None:
    err = aws.translate(client_error(code, "Access Denied", status), **S3_READ)
    assert type(err) is StorageAccessError
    message = str(err)
    assert message.startswith("access denied to s3://photos/a.jpg: S3 refused access")
    assert f"({code}: Access Denied)" in message and "when asked to read it" in message
    assert "needs s3:GetObject" in message and "bucket policy" in message and "nothing was changed" in message


def test_access_denied_without_a_permission_given_names_the_operation() -> None:
    exc = client_error("AccessDeniedException", "User: arn:aws:iam::123456789012:user/ci is not authorized to "
                       "perform: sagemaker:CreateTrainingJob", operation="CreateTrainingJob")
    err = aws.translate(exc, service="SageMaker", action="start the SageMaker training job")
    assert type(err) is CloudAccessError and not isinstance(err, StorageError)
    message = str(err)
    assert message.startswith("access denied: SageMaker refused access (AccessDeniedException: User: ")
    assert "when asked to start the SageMaker training job" in message
    assert "needs permission for SageMaker CreateTrainingJob" in message
    assert "IAM policy" in message and "bucket policy" not in message


def test_an_unknown_code_with_http_403_is_access_denied() -> None:
    err = aws.translate(client_error("SomethingNew", "no", 403), service="Rekognition", action="detect faces",
                        permission="rekognition:DetectFaces")
    assert type(err) is CloudAccessError and "needs rekognition:DetectFaces" in str(err)


# --------------------------------------------------------------------------------------------------
# missing things: NotFound


def test_missing_bucket_names_the_bucket() -> None:
    err = aws.translate(client_error("NoSuchBucket", "The specified bucket does not exist", 404), **S3_READ)
    assert type(err) is NotFound and str(err).startswith("bucket not found: photos (for s3://photos/a.jpg)")


def test_missing_bucket_of_a_copy_is_the_one_the_error_names() -> None:
    exc = client_error("NoSuchBucket", "The specified bucket does not exist", 404, BucketName="dst")
    err = aws.translate(exc, service="S3", action="copy", resource="s3://src/a.jpg (copying to s3://dst/a.jpg)",
                        storage=True)
    assert type(err) is NotFound and str(err).startswith("bucket not found: dst ")
    unnamed = aws.translate(client_error("NoSuchBucket", "", 404), service="S3", action="copy",
                            resource="s3://src/a.jpg (copying to s3://dst/a.jpg)", storage=True)
    assert str(unnamed).startswith("bucket not found: src or dst ")


@pytest.mark.parametrize(("code", "status"), [("NoSuchKey", 404), ("404", 404), ("NotFound", 404), ("", 404)])
def test_missing_object(code: str, status: int) -> None:
    err = aws.translate(client_error(code, "Not Found", status, operation="HeadObject"), **S3_READ)
    assert type(err) is NotFound and str(err).startswith("object not found: s3://photos/a.jpg")
    assert "moved or deleted" in str(err)


@pytest.mark.parametrize("code", ["ResourceNotFound", "ResourceNotFoundException"])
def test_missing_resource_of_another_service(code: str) -> None:
    exc = client_error(code, "Amazon SageMaker can't find a tuning job with name t1")
    err = aws.translate(exc, service="SageMaker", action="read tuning job t1")
    assert type(err) is NotFound
    assert str(err).startswith(f"SageMaker found nothing to read tuning job t1 ({code}: Amazon SageMaker can't")


# --------------------------------------------------------------------------------------------------
# bad requests: InvalidInput (ImageError for an image)


@pytest.mark.parametrize("code", ["ValidationException", "InvalidParameterException", "InvalidParameterValue",
                                  "InvalidRequest", "InvalidArgument"])
def test_validation_errors_are_invalid_input(code: str) -> None:
    err = aws.translate(client_error(code, "1 validation error detected"), service="SageMaker",
                        action="start the SageMaker training job")
    assert type(err) is InvalidInput
    assert str(err).startswith(f"SageMaker refused to start the SageMaker training job ({code}: 1 validation")


def test_a_rejected_image_is_an_image_error() -> None:
    err = aws.translate(client_error("InvalidParameterException", "Request has invalid parameters"),
                        service="Rekognition", action="detect labels in", resource="tiny.jpg", image=True)
    assert type(err) is ImageError and "tiny.jpg" in str(err) and "InvalidParameterException" in str(err)
    assert "very small images" in str(err)


@pytest.mark.parametrize("code", ["InvalidImageFormatException", "ImageTooLargeException"])
def test_an_unusable_image_is_an_image_error(code: str) -> None:
    err = aws.translate(client_error(code, "Request has unsupported image format"), service="Rekognition",
                        action="detect faces in", resource="b.gif")
    assert type(err) is ImageError and f"Rekognition cannot use b.gif ({code}" in str(err)


def test_botocore_parameter_validation_is_invalid_input() -> None:
    exc = bx.ParamValidationError(report="Invalid type for parameter Bucket, value: 1")
    err = aws.translate(exc, **S3_READ)
    assert type(err) is InvalidInput and str(err).startswith("invalid S3 request to read s3://photos/a.jpg: ")
    assert "Invalid type for parameter Bucket" in str(err)
    assert type(aws.translate(exc, service="Rekognition", action="detect faces", image=True)) is ImageError


# --------------------------------------------------------------------------------------------------
# the service failing or out of reach: ExternalServiceError (StorageError for the object store)


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 400), ("Throttling", 400),
                                              ("ProvisionedThroughputExceededException", 400), ("SlowDown", 503),
                                              ("TooManyRequestsException", 429), ("", 429)])
def test_throttling_says_try_again_later(code: str, status: int) -> None:
    err = aws.translate(client_error(code, "Rate exceeded", status), service="Rekognition",
                        action="detect labels in", resource="a.jpg", attempts=3)
    assert type(err) is ExternalServiceError
    assert str(err).startswith("Rekognition is still throttling after 3 attempts (")
    assert "higher quota" in str(err) and "try again later" in str(err)


def test_botocores_own_retries_are_counted() -> None:
    err = aws.translate(client_error("SlowDown", "Please reduce your request rate.", 503, retries=2), **S3_READ)
    assert type(err) is StorageError and not isinstance(err, CloudAccessError)
    assert str(err).startswith("S3 is still throttling after 3 attempts (SlowDown: Please reduce")
    once = aws.translate(client_error("ThrottlingException", "Rate exceeded", retries=0), service="Rekognition",
                         action="detect faces")
    assert str(once).startswith("Rekognition is throttling (ThrottlingException: Rate exceeded)")


@pytest.mark.parametrize(("code", "status"), [("InternalServerError", 500), ("InternalError", 500),
                                              ("ServiceUnavailable", 503), ("ServiceUnavailableException", 503),
                                              ("RequestTimeout", 400), ("", 502), ("BadGateway", 502)])
def test_server_errors_say_try_again_later(code: str, status: int) -> None:
    err = aws.translate(client_error(code, "We encountered an internal error", status), service="SageMaker",
                        action="read training job x")
    assert type(err) is ExternalServiceError
    assert str(err).startswith("SageMaker failed on its side (") and "try again later" in str(err)
    assert (f"({code}: We encountered" if code else "(We encountered") in str(err)
    assert type(aws.translate(client_error(code, "x", status), **S3_READ)) is StorageError


def test_another_code_keeps_the_code_and_the_message() -> None:
    err = aws.translate(client_error("ResourceInUse", "the job is stopping", operation="StopTrainingJob"),
                        service="SageMaker", action="stop training job x")
    assert type(err) is ExternalServiceError
    assert str(err).startswith("SageMaker could not stop training job x (ResourceInUse: the job is stopping)")


@pytest.mark.parametrize("exc", [
    bx.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
    bx.ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"),
    bx.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
    bx.ConnectionClosedError(endpoint_url="http://127.0.0.1:9"),
    bx.SSLError(endpoint_url="http://127.0.0.1:9", error="certificate verify failed"),
])
def test_unreachable_endpoint_names_it(exc: Exception) -> None:
    err = aws.translate(exc, **S3_READ)
    assert type(err) is StorageError
    message = str(err)
    assert message.startswith("cannot reach the S3 endpoint http://127.0.0.1:9 to read s3://photos/a.jpg: ")
    assert "network" in message and "endpoint_url" in message
    other = aws.translate(exc, service="Rekognition", action="detect faces", endpoint="http://local:1")
    assert type(other) is ExternalServiceError and "cannot reach the Rekognition endpoint http://local:1 " in str(other)


def test_no_region_says_which_setting() -> None:
    err = aws.translate(bx.NoRegionError(), service="Rekognition", action="detect labels")
    assert type(err) is ExternalServiceError
    assert "Rekognition needs an AWS region to detect labels" in str(err) and "AWS_DEFAULT_REGION" in str(err)


def test_any_other_botocore_error_is_a_service_failure() -> None:
    err = aws.translate(bx.WaiterError(name="TrainingJobCompleted", reason="Max attempts exceeded", last_response={}),
                        service="SageMaker", action="wait for training job x")
    assert type(err) is ExternalServiceError
    assert "SageMaker request to wait for training job x failed (WaiterError: " in str(err)


# --------------------------------------------------------------------------------------------------
# the context manager


def test_errors_translates_inside_the_block_and_keeps_the_cause() -> None:
    original = client_error("AccessDenied", "Access Denied", 403)
    with pytest.raises(StorageAccessError, match="needs s3:GetObject") as info:
        with aws.errors(**S3_READ):
            raise original
    assert info.value.__cause__ is original


def test_errors_lets_everything_else_through() -> None:
    with pytest.raises(KeyError):
        with aws.errors(service="S3", action="read"):
            raise KeyError("x")
    already = NotFound("already translated")
    with pytest.raises(NotFound) as info:
        with aws.errors(service="S3", action="read"):
            raise already
    assert info.value is already
    assert aws.translate(already, service="S3", action="read") is already
    with aws.errors(service="S3", action="read"):
        pass


def test_every_translation_is_a_console_error() -> None:
    samples = [bx.NoCredentialsError(), client_error("AccessDenied"), client_error("NoSuchKey", status=404),
               client_error("ValidationException"), client_error("ThrottlingException"),
               bx.EndpointConnectionError(endpoint_url="http://x"), bx.NoRegionError(), ValueError("odd")]
    for exc in samples:
        assert isinstance(aws.translate(exc, service="S3", action="read"), ConsoleError)


def test_code_of() -> None:
    assert aws.code_of(client_error("NoSuchKey")) == "NoSuchKey"
    assert aws.code_of(bx.NoCredentialsError()) == ""
