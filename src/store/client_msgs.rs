//! Client message ids (sender idempotency): which message a user's `clientMsgId` became
//! in a room, remembered for `rooms.dedupe_window_secs`. Key: room id ++ 0xFF ++ user id
//! ++ 0xFF ++ client message id. Room ids and client message ids are ASCII and user ids
//! UTF-8, so 0xFF never occurs inside a part. Entries are written with their message by
//! `append_history`, read on a miss of a live room's in-memory map, and swept by age.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// What a client message id became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMsgAck {
    /// The message's id.
    pub id: String,
    pub seq: u64,
    /// When it was accepted (the message's timestamp), ms.
    pub at_ms: u64,
}

fn room_prefix(room_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(room_id.len() + 1);
    k.extend_from_slice(room_id.as_bytes());
    k.push(0xFF);
    k
}

pub(super) fn key(room_id: &str, user_id: &str, client_msg_id: &str) -> Vec<u8> {
    let mut k = room_prefix(room_id);
    k.extend_from_slice(user_id.as_bytes());
    k.push(0xFF);
    k.extend_from_slice(client_msg_id.as_bytes());
    k
}

impl Store {
    /// The message a user's client message id became in a room, if remembered.
    pub fn client_msg(
        &self,
        room_id: &str,
        user_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<ClientMsgAck>, StoreError> {
        self.client_msgs
            .get(key(room_id, user_id, client_msg_id))?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Forgets a room's client message ids.
    pub(super) fn delete_client_msgs(&self, room_id: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for k in self.client_msgs.scan_prefix(room_prefix(room_id)).keys() {
            self.client_msgs.remove(k?)?;
            n += 1;
        }
        Ok(n)
    }

    /// Forgets client message ids accepted before `cutoff_ms`; returns how many went.
    /// Unreadable entries go too: they could only ever cause a resend to be stored twice.
    pub fn sweep_client_msgs(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.client_msgs.iter() {
            let (k, v) = item?;
            let old = codec::decode::<ClientMsgAck>(&v).map_or(true, |a| a.at_ms < cutoff_ms);
            if old {
                self.client_msgs.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
