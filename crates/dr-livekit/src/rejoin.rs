//! [`Rejoin`]: participants' names, metadata, attributes and permissions
//! set again as each one rejoins a restored room.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use livekit_api::access_token::TokenVerifier;
use livekit_api::services::room::UpdateParticipantOptions;
use livekit_api::webhooks::WebhookReceiver;
use livekit_protocol as proto;

use crate::client::{LiveKit, calls};
use crate::error::{Error, Result};
use crate::state::{LiveKitState, ParticipantState};

/// The participants of a restored state still to be set again, by room and
/// identity.
///
/// A participant's session cannot be restored: the client reconnects (to
/// the standby, after a failover) and the server makes a new one with what
/// its token says. What the service had set on it since (metadata,
/// attributes, permission, a name) is set again when it is back: the
/// service calls [`Rejoin::webhook`] from its webhook endpoint (LiveKit's
/// `participant_joined`, verified with the API key and secret), or
/// [`Rejoin::participant_joined`] where it learns of joins otherwise. Each
/// participant is set once; cheap to clone (the clones share the list).
#[derive(Debug, Clone)]
pub struct Rejoin {
    target: LiveKit,
    pending: Arc<Mutex<BTreeMap<(String, String), ParticipantState>>>,
}

/// A participant set again: who, and what the server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reapplied {
    /// The room.
    pub room: String,
    /// The participant as the server has it now.
    pub participant: proto::ParticipantInfo,
}

impl Rejoin {
    /// Every participant of `state`, to be set again on `target`.
    pub fn new(target: LiveKit, state: &LiveKitState) -> Self {
        let pending = state
            .rooms
            .iter()
            .flat_map(|room| {
                room.participants
                    .iter()
                    .map(|p| ((room.name.clone(), p.identity.clone()), p.clone()))
            })
            .collect();
        Self {
            target,
            pending: Arc::new(Mutex::new(pending)),
        }
    }

    /// How many participants have not rejoined yet.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Sets `identity` in `room` as it was, if it is one of the restored
    /// participants not yet set; `None` if it is not (a new participant,
    /// or one already set).
    ///
    /// # Errors
    /// The server's refusal; the participant stays pending then.
    pub async fn participant_joined(
        &self,
        room: &str,
        identity: &str,
    ) -> Result<Option<Reapplied>> {
        let key = (room.to_owned(), identity.to_owned());
        let Some(saved) = self.lock().remove(&key) else {
            return Ok(None);
        };
        let api = self.target.api();
        let updated = self
            .target
            .call(
                calls::UPDATE_PARTICIPANT,
                api.room().update_participant(
                    room,
                    identity,
                    UpdateParticipantOptions {
                        metadata: saved.metadata.clone(),
                        attributes: saved
                            .attributes
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        permission: saved.permission.clone(),
                        name: saved.name.clone(),
                    },
                ),
            )
            .await;
        match updated {
            Ok(participant) => Ok(Some(Reapplied {
                room: room.to_owned(),
                participant,
            })),
            Err(e) => {
                self.lock().insert(key, saved);
                Err(e)
            }
        }
    }

    /// Handles one webhook from the target: `body` as received and the
    /// `Authorization` header's value. A verified `participant_joined` of
    /// a restored participant sets it again; any other verified event is
    /// `None`.
    ///
    /// # Errors
    /// [`Error::Webhook`] if it does not verify (signed with another key or
    /// secret, a body changed on the way) or does not read; the server's
    /// refusal of the update.
    pub async fn webhook(&self, body: &str, authorization: &str) -> Result<Option<Reapplied>> {
        let secret = self.target.api_secret().ok_or_else(|| Error::Webhook {
            reason: format!(
                "{} is reached with a token, not the API secret: webhooks cannot be verified",
                self.target.url()
            ),
        })?;
        let receiver =
            WebhookReceiver::new(TokenVerifier::with_api_key(self.target.api_key(), secret));
        let event = receiver
            .receive(body, authorization)
            .map_err(|e| Error::Webhook {
                reason: e.to_string(),
            })?;
        if event.event != "participant_joined" {
            return Ok(None);
        }
        let (Some(room), Some(participant)) = (event.room, event.participant) else {
            return Err(Error::Webhook {
                reason: "a participant_joined event without its room or participant".into(),
            });
        };
        self.participant_joined(&room.name, &participant.identity)
            .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), ParticipantState>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}
