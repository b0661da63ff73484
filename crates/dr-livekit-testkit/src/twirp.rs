//! Twirp's wire: error codes and their HTTP statuses, and the two body encodings.

use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A Twirp error code: those this server answers with. (LiveKit answers a missing grant
/// with `unauthenticated`, never `permission_denied`; no call here is `already_exists`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    InvalidArgument,
    Malformed,
    NotFound,
    BadRoute,
    Unauthenticated,
    FailedPrecondition,
    Unimplemented,
    Internal,
    Unavailable,
}

impl Code {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::Malformed => "malformed",
            Code::NotFound => "not_found",
            Code::BadRoute => "bad_route",
            Code::Unauthenticated => "unauthenticated",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
        }
    }

    /// The HTTP status of the Twirp spec's mapping.
    pub(crate) fn status(self) -> u16 {
        match self {
            Code::InvalidArgument | Code::Malformed => 400,
            Code::NotFound | Code::BadRoute => 404,
            Code::Unauthenticated => 401,
            Code::FailedPrecondition => 412,
            Code::Unimplemented => 501,
            Code::Internal => 500,
            Code::Unavailable => 503,
        }
    }
}

/// A Twirp error: sent as `{"code": ..., "msg": ...}` with the code's status.
#[derive(Debug, Clone)]
pub(crate) struct TwirpError {
    pub(crate) code: Code,
    pub(crate) msg: String,
}

impl TwirpError {
    pub(crate) fn new(code: Code, msg: impl Into<String>) -> Self {
        TwirpError {
            code,
            msg: msg.into(),
        }
    }

    /// What every LiveKit service answers when the token lacks the grant: `twirpAuthError`
    /// wraps `ErrPermissionDenied` as **unauthenticated** (401), not permission_denied.
    pub(crate) fn permissions_denied() -> Self {
        TwirpError::new(Code::Unauthenticated, "permissions denied")
    }

    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        TwirpError::new(Code::NotFound, msg)
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        TwirpError::new(Code::InvalidArgument, msg)
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"code": self.code.as_str(), "msg": self.msg}))
            .unwrap_or_default()
    }
}

pub(crate) type TwirpResult<T> = Result<T, TwirpError>;

/// How a request's body is encoded, and so its answer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a `Content-Type` (parameters such as `;charset=UTF-8` ignored), as Twirp's Go
    /// server reads it.
    pub(crate) fn from_content_type(value: &str) -> Option<Self> {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/protobuf") {
            Some(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/protobuf",
            Encoding::Json => "application/json",
        }
    }

    pub(crate) fn decode<T: Message + Default + DeserializeOwned>(
        self,
        body: &[u8],
    ) -> TwirpResult<T> {
        match self {
            Encoding::Protobuf => T::decode(body).map_err(|e| {
                TwirpError::new(
                    Code::Malformed,
                    format!("the protobuf request could not be decoded: {e}"),
                )
            }),
            Encoding::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
            Encoding::Json => serde_json::from_slice(body).map_err(|e| {
                TwirpError::new(
                    Code::Malformed,
                    format!("the json request could not be decoded: {e}"),
                )
            }),
        }
    }

    pub(crate) fn encode<T: Message + Serialize>(self, message: &T) -> TwirpResult<Vec<u8>> {
        match self {
            Encoding::Protobuf => Ok(message.encode_to_vec()),
            Encoding::Json => serde_json::to_vec(message).map_err(|e| {
                TwirpError::new(Code::Internal, format!("failed to marshal json: {e}"))
            }),
        }
    }
}
