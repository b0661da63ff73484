//! The API key check of LiveKit's `APIKeyAuthMiddleware` and the grant checks of its
//! services (`pkg/service/auth.go`).

use livekit_api::access_token::{Claims, TokenVerifier};

use crate::twirp::{TwirpError, TwirpResult};

/// Why the middleware turned a request away before any service saw it: LiveKit answers
/// these with a 401 and the reason as plain text (`HandleError`), not a Twirp JSON error.
#[derive(Debug)]
pub(crate) struct Rejected(pub(crate) String);

/// The key and secret the server takes.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) key: String,
    verifier: TokenVerifier,
}

impl Keys {
    pub(crate) fn new(key: &str, secret: &str) -> Self {
        Keys {
            key: key.to_owned(),
            verifier: TokenVerifier::with_api_key(key, secret),
        }
    }

    /// The grants of a request: `None` without an `Authorization` header (the services then
    /// deny), the token's claims when it verifies, else the middleware's refusal.
    pub(crate) fn authenticate(&self, header: Option<&[u8]>) -> Result<Option<Claims>, Rejected> {
        let Some(header) = header else {
            return Ok(None);
        };
        let Some(token) = header.strip_prefix(b"Bearer ") else {
            return Err(Rejected(
                "invalid authorization header. Must start with Bearer ".to_owned(),
            ));
        };
        let token = std::str::from_utf8(token)
            .map_err(|_| Rejected("invalid authorization token".to_owned()))?;
        if token.is_empty() {
            return Ok(None);
        }
        let unverified = Claims::from_unverified(token)
            .map_err(|_| Rejected("invalid authorization token".to_owned()))?;
        if unverified.iss != self.key {
            return Err(Rejected("invalid API key".to_owned()));
        }
        self.verifier
            .verify(token)
            .map(Some)
            .map_err(|e| Rejected(format!("invalid authorization token: {e}")))
    }
}

/// The grants a call was made with (`None`: no token).
pub(crate) type Grants<'a> = Option<&'a Claims>;

fn check(ok: bool) -> TwirpResult<()> {
    if ok {
        Ok(())
    } else {
        Err(TwirpError::permissions_denied())
    }
}

/// `EnsureCreatePermission`: CreateRoom, DeleteRoom.
pub(crate) fn room_create(g: Grants<'_>) -> TwirpResult<()> {
    check(g.is_some_and(|c| c.video.room_create))
}

/// `EnsureListPermission`: ListRooms.
pub(crate) fn room_list(g: Grants<'_>) -> TwirpResult<()> {
    check(g.is_some_and(|c| c.video.room_list))
}

/// `EnsureAdminPermission`: `roomAdmin` and the token's `room` the request's room.
pub(crate) fn room_admin(g: Grants<'_>, room: &str) -> TwirpResult<()> {
    check(g.is_some_and(|c| c.video.room_admin && c.video.room == room))
}

/// `EnsureRecordPermission`: every Egress call.
pub(crate) fn room_record(g: Grants<'_>) -> TwirpResult<()> {
    check(g.is_some_and(|c| c.video.room_record))
}

/// `EnsureIngressAdminPermission`: every Ingress call.
pub(crate) fn ingress_admin(g: Grants<'_>) -> TwirpResult<()> {
    check(g.is_some_and(|c| c.video.ingress_admin))
}

/// `EnsureSIPAdminPermission`: trunks and dispatch rules.
pub(crate) fn sip_admin(g: Grants<'_>) -> TwirpResult<()> {
    check(g.is_some_and(|c| c.sip.admin))
}

/// `EnsureSIPCallPermission`: CreateSIPParticipant, TransferSIPParticipant.
pub(crate) fn sip_call(g: Grants<'_>) -> TwirpResult<()> {
    check(g.is_some_and(|c| c.sip.call))
}

/// `EnsureDestRoomPermission`: ForwardParticipant, MoveParticipant.
pub(crate) fn destination_room(g: Grants<'_>, room: &str, destination: &str) -> TwirpResult<()> {
    check(g.is_some_and(|c| {
        c.video.room_admin && c.video.room == room && c.video.destination_room == destination
    }))
}
