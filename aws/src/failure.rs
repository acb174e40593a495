//! Classifying the SDK's errors into the core's [`Failure`]s.
//!
//! The classification is by the service's error code, not the SDK's per-operation enums, so one
//! function serves every operation of both services, and an error code an older SDK does not
//! model is still classified.

#[cfg(feature = "sdk")]
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
#[cfg(feature = "sdk")]
use aws_smithy_runtime_api::http::Response;
#[cfg(feature = "sdk")]
use kcl_core::{Failure, ServiceError};

/// The failure an SDK error means for the core.
#[cfg(feature = "sdk")]
pub(crate) fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, Response>,
) -> Failure {
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let request_id = request_id(service.raw());
            classify_code(
                service.err().code(),
                status,
                service.err().message(),
                request_id,
            )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient
        }
        _ => Failure::Other(error_chain(error)),
    }
}

/// The id AWS gave the request (`x-amzn-RequestId`; S3-style `x-amz-request-id` as a fallback).
#[cfg(feature = "sdk")]
pub(crate) fn request_id(response: &Response) -> Option<&str> {
    let headers = response.headers();
    headers
        .get("x-amzn-requestid")
        .or_else(|| headers.get("x-amz-request-id"))
}

/// The failure a service error code (and HTTP status) means; refusals keep the code, the
/// message and the request id.
#[cfg(feature = "sdk")]
pub(crate) fn classify_code(
    code: Option<&str>,
    status: u16,
    message: Option<&str>,
    request_id: Option<&str>,
) -> Failure {
    let refusal = || ServiceError {
        code: code
            .filter(|c| !c.is_empty())
            .unwrap_or("error")
            .to_string(),
        message: message.unwrap_or("no message").to_string(),
        request_id: request_id.map(str::to_string),
    };
    match code.unwrap_or_default() {
        "ConditionalCheckFailedException" => Failure::ConditionFailed,
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "LimitExceededException" => Failure::Throttled,
        "ResourceNotFoundException" => Failure::NotFound,
        "ExpiredIteratorException" => Failure::ExpiredIterator,
        "InvalidArgumentException" => Failure::InvalidArgument(refusal()),
        // The stream's KMS key refuses this caller, or cannot be used at all: as persistent as
        // a missing permission, and as fatal to reading (kms:Decrypt is part of the policy).
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSNotFoundException"
        | "KMSInvalidStateException"
        | "KMSOptInRequired" => Failure::AccessDenied(refusal()),
        "InternalServerError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "KMSThrottlingException" => Failure::Transient,
        _ if status == 429 => Failure::Throttled,
        _ if status >= 500 => Failure::Transient,
        _ => Failure::Service(refusal()),
    }
}

/// The error and its sources on one line, `: `-separated (the SDK's Display alone says only
/// "service error"; a [`BuildError`](crate::BuildError)'s says what failed, its source why).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(all(test, feature = "sdk"))]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_failures() {
        let c = |code: &str| classify_code(Some(code), 400, None, None);
        assert_eq!(
            c("ConditionalCheckFailedException"),
            Failure::ConditionFailed
        );
        assert_eq!(
            c("ProvisionedThroughputExceededException"),
            Failure::Throttled
        );
        assert_eq!(c("ThrottlingException"), Failure::Throttled);
        assert_eq!(c("RequestLimitExceeded"), Failure::Throttled);
        assert_eq!(c("LimitExceededException"), Failure::Throttled);
        assert_eq!(c("ExpiredIteratorException"), Failure::ExpiredIterator);
        assert_eq!(c("ResourceNotFoundException"), Failure::NotFound);
        assert_eq!(
            classify_code(
                Some("InvalidArgumentException"),
                400,
                Some("not this stream"),
                None
            ),
            Failure::InvalidArgument(ServiceError::new(
                "InvalidArgumentException",
                "not this stream"
            ))
        );
        let denied = classify_code(Some("AccessDeniedException"), 400, Some("no"), Some("r-1"));
        assert_eq!(
            denied,
            Failure::AccessDenied(ServiceError {
                code: "AccessDeniedException".into(),
                message: "no".into(),
                request_id: Some("r-1".into()),
            })
        );
        assert_eq!(
            denied.to_string(),
            "access denied: AccessDeniedException: no (request id r-1)"
        );
        for kms in [
            "KMSAccessDeniedException",
            "KMSDisabledException",
            "KMSNotFoundException",
            "KMSInvalidStateException",
            "KMSOptInRequired",
        ] {
            assert!(matches!(c(kms), Failure::AccessDenied(_)), "{kms}");
        }
        assert_eq!(c("KMSThrottlingException"), Failure::Transient);
        assert_eq!(
            classify_code(Some("ValidationException"), 400, Some("bad"), None),
            Failure::Service(ServiceError::new("ValidationException", "bad"))
        );
        assert_eq!(classify_code(None, 503, None, None), Failure::Transient);
        assert_eq!(
            classify_code(Some("Whatever"), 429, None, None),
            Failure::Throttled
        );
    }
}
