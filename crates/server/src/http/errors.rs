//! Errors as JSON with the gRPC code's name and its HTTP status, and the extractors
//! whose rejections are answered that way.
use axum::{
    extract::{
        rejection::{JsonRejection, QueryRejection},
        FromRequest, FromRequestParts, Query,
    },
    http::{header, request::Parts, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tonic::Code;

use crate::status::code_name;

/// An error answer: the gRPC code's name, its HTTP status and a message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    pub(super) code: Code,
    message: String,
}

impl ApiError {
    pub(super) fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status: http_status(code),
            code,
            message: message.into(),
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidArgument, message)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        ApiError::new(s.code(), s.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(json!({"error": self.message, "code": code_name(self.code)})),
        )
            .into_response();
        if self.code == Code::Unauthenticated {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The HTTP status of a gRPC code (grpc-gateway's table).
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(super) async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    let _ = method;
    ApiError::new(
        Code::NotFound,
        format!(
            "no endpoint {}; the API is described at GET /openapi.json",
            crate::logs::cut(uri.path())
        ),
    )
}

pub(super) async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let mut r = ApiError::new(
        Code::Unimplemented,
        format!(
            "{method} is not served on {}; the API is described at GET /openapi.json",
            crate::logs::cut(uri.path())
        ),
    )
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// A JSON body, with its rejections answered as JSON errors.
pub(super) struct JsonBody<T>(pub(super) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: Code::InvalidArgument,
            message: "send the body as JSON with content-type: application/json".into(),
        },
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: Code::ResourceExhausted,
                message: "the request body is over server.max_message_bytes: send fewer texts"
                    .into(),
            }
        }
        other => ApiError::invalid(format!(
            "the body is not the JSON expected: {}",
            other.body_text()
        )),
    }
}

/// Query parameters, with rejections as JSON errors.
pub(super) struct QueryArgs<T>(pub(super) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryArgs(v))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}
