"""S3 connection settings and client construction, shared by the s3 backend and destination."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, field_validator, model_validator

from storagectl.config.models import RetrySettings, TimeoutSettings
from storagectl.config.types import Secret
from storagectl.config.urls import check_http_url, reject_query
from storagectl.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    NotFound,
    OperationFailed,
    PermissionDenied,
    StoragectlError,
)

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
               "AuthorizationHeaderMalformed", "InvalidClientTokenId"}
_NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "AllAccessDisabled"}


class S3ConnectionSettings(BaseModel):
    """Where an S3 bucket is and how to sign requests (standard AWS chain when keys are unset)."""

    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    verify_tls: bool = True

    @field_validator("endpoint_url")
    @classmethod
    def _valid_endpoint(cls, url: str | None) -> str | None:
        if url is not None:
            reject_query(check_http_url(url), "give only scheme, host and port")
        return url

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> Any:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give access_key_id and secret_access_key together, or neither")
        return self

    def s3_secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.secret_access_key, self.session_token) if s]

    def normalized_prefix(self) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/" if prefix else ""


def make_s3_client(settings: S3ConnectionSettings, timeouts: TimeoutSettings,
                   retry: RetrySettings, max_pool: int = 10) -> Any:
    """A boto3 S3 client; botocore's own retry mode handles throttling and 5xx."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=settings.profile) if settings.profile else boto3.session.Session()
    config = Config(
        region_name=settings.region,
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.statement or 60,
        retries={"mode": "standard", "total_max_attempts": retry.attempts},
        s3={"addressing_style": settings.addressing_style},
        max_pool_connections=max_pool,
    )
    credentials = {}
    if settings.access_key_id and settings.secret_access_key:
        credentials = {
            "aws_access_key_id": settings.access_key_id,
            "aws_secret_access_key": settings.secret_access_key.get_secret_value(),
        }
        if settings.session_token:
            credentials["aws_session_token"] = settings.session_token.get_secret_value()
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config,
                          verify=settings.verify_tls, **credentials)


def translate_s3_error(exc: BaseException, what: str) -> StoragectlError:
    """Map botocore errors to our hierarchy; ``what`` names the bucket/object for the message."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = exc.response.get("Error", {}).get("Message") or code
        if code in _AUTH_CODES:
            return AuthenticationFailed(f"{what}: credentials rejected ({code})",
                                        hint="Try: check access_key_id / secret_access_key or the AWS profile")
        if code in _NOT_FOUND_CODES:
            return NotFound(f"{what}: not found ({code})", hint="Try: check bucket and prefix in the config")
        if code in _DENIED_CODES:
            return PermissionDenied(f"{what}: access denied ({code})",
                                    hint="Try: grant the IAM policy s3:ListBucket/GetObject/PutObject/DeleteObject")
        return OperationFailed(f"{what}: {code}: {message}")
    if isinstance(exc, NoCredentialsError):
        return AuthenticationFailed(f"{what}: no AWS credentials found",
                                    hint="Try: set access_key_id/secret_access_key, profile, or AWS_* variables")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return BackendUnavailable(f"{what}: endpoint unreachable ({type(exc).__name__})",
                                  hint="Try: check endpoint_url/region and network access")
    return OperationFailed(f"{what}: {type(exc).__name__}: {exc}")
