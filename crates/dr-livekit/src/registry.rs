//! [`DesiredRooms`]: the `CreateRoomRequest`s a service made, since
//! LiveKit's API cannot read back what it keeps of them (automatic egress,
//! agent dispatches, playout delay).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use livekit_api::access_token::VideoGrants;
use livekit_protocol as proto;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::client::{Grants, LiveKit, calls};
use crate::error::Result;

/// The requests a service created its rooms with, by room name: what a
/// snapshot takes along and a restore creates the rooms with again.
///
/// LiveKit keeps a room's automatic egress, agent dispatches and playout
/// delay where no API call returns them; only the service that asked
/// knows them. It records each request here ([`DesiredRooms::create_room`]
/// does both), forgets the room when it ends it, and hands the registry to
/// [`LiveKitSnapshot::desired_rooms`](crate::LiveKitSnapshot::desired_rooms).
/// Cheap to clone: the clones share one registry. It serializes as a map
/// of room names to requests (LiveKit's JSON form), for a service that
/// keeps it across restarts.
///
/// ```
/// use dr_livekit::DesiredRooms;
/// use livekit_protocol::CreateRoomRequest;
///
/// let desired = DesiredRooms::new();
/// desired.record(CreateRoomRequest { name: "standup".into(), max_playout_delay: 400, ..Default::default() });
/// assert_eq!(desired.get("standup").unwrap().max_playout_delay, 400);
/// let json = serde_json::to_string(&desired)?;
/// let again: DesiredRooms = serde_json::from_str(&json)?;
/// assert_eq!(again.len(), 1);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct DesiredRooms {
    rooms: Arc<RwLock<BTreeMap<String, proto::CreateRoomRequest>>>,
}

impl DesiredRooms {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `request` for its room, replacing what was recorded.
    pub fn record(&self, request: proto::CreateRoomRequest) {
        self.write().insert(request.name.clone(), request);
    }

    /// Forgets `room` (the service ended it); what was recorded.
    pub fn forget(&self, room: &str) -> Option<proto::CreateRoomRequest> {
        self.write().remove(room)
    }

    /// The request recorded for `room`.
    pub fn get(&self, room: &str) -> Option<proto::CreateRoomRequest> {
        self.read().get(room).cloned()
    }

    /// How many rooms are recorded.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Creates the room on `livekit` with `request`, sent whole, and
    /// records it: the call a service makes instead of `CreateRoom`.
    ///
    /// # Errors
    /// The server's refusal; nothing is recorded then.
    pub async fn create_room(
        &self,
        livekit: &LiveKit,
        request: proto::CreateRoomRequest,
    ) -> Result<proto::Room> {
        let room = livekit
            .twirp(
                calls::CREATE_ROOM,
                &request,
                Grants::video(VideoGrants {
                    room_create: true,
                    ..Default::default()
                }),
            )
            .await?;
        self.record(request);
        Ok(room)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, proto::CreateRoomRequest>> {
        self.rooms.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, proto::CreateRoomRequest>> {
        self.rooms.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Serialize for DesiredRooms {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.read().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DesiredRooms {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rooms = BTreeMap::<String, proto::CreateRoomRequest>::deserialize(deserializer)?;
        Ok(Self {
            rooms: Arc::new(RwLock::new(rooms)),
        })
    }
}
