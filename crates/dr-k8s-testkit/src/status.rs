//! Failures as the API server reports them: a `meta/v1` `Status` with an HTTP code.

use serde_json::{Value, json};

/// A request's failure, answered as a `Status` object.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// `details` of the Status: name, group, kind of the object concerned.
    pub(crate) details: Option<Value>,
}

/// What a failed request is about, for the Status's `details`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) group: &'a str,
    /// The plural, as Kubernetes names it in details (`deployments`).
    pub(crate) plural: &'a str,
    pub(crate) name: &'a str,
}

impl Subject<'_> {
    /// `deployments.apps "web"`, `configmaps "x"`: how messages name an object.
    pub(crate) fn describe(&self) -> String {
        if self.group.is_empty() {
            format!("{} {:?}", self.plural, self.name)
        } else {
            format!("{}.{} {:?}", self.plural, self.group, self.name)
        }
    }

    fn details(&self) -> Value {
        json!({"name": self.name, "group": self.group, "kind": self.plural})
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: None,
        }
    }

    pub(crate) fn not_found(subject: Subject<'_>) -> Self {
        ApiError {
            details: Some(subject.details()),
            ..Self::new(404, "NotFound", format!("{} not found", subject.describe()))
        }
    }

    pub(crate) fn already_exists(subject: Subject<'_>) -> Self {
        ApiError {
            details: Some(subject.details()),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} already exists", subject.describe()),
            )
        }
    }

    /// A stale resourceVersion, in the words of the real server.
    pub(crate) fn conflict(subject: Subject<'_>) -> Self {
        ApiError {
            details: Some(subject.details()),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}: the object has been modified; \
                     please apply your changes to the latest version and try again",
                    subject.describe()
                ),
            )
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }

    pub(crate) fn invalid(subject: Subject<'_>, message: impl Into<String>) -> Self {
        ApiError {
            details: Some(subject.details()),
            ..Self::new(
                422,
                "Invalid",
                format!("{} is invalid: {}", subject.describe(), message.into()),
            )
        }
    }

    /// A path that names nothing served.
    pub(crate) fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        )
    }

    pub(crate) fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json, application/merge-patch+json, \
                 application/json-patch+json, application/strategic-merge-patch+json; \
                 got {content_type:?}: this test server speaks JSON only, not protobuf \
                 (kubectl's typed `create` commands send protobuf: use `kubectl apply`)"
            ),
        )
    }

    /// The `Status` object the response carries.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        if self.reason.is_empty() {
            // As the real server's internal errors: no reason, the message alone.
            if let Some(members) = status.as_object_mut() {
                members.remove("reason");
            }
        }
        status
    }
}

/// The `Success` Status a namespace deletion answers with. (A real server answers with the
/// namespace in phase `Terminating` while it deletes its contents; here they are gone at once.)
pub(crate) fn success(subject: Subject<'_>) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": subject.details(),
    })
}
