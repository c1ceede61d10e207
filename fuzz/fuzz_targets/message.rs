//! What the XML and JSON message targets share: a body through everything
//! `POST /events/{event-type}` does with it before the store.

use hub::events::{Retention, StoredEvent};
use hub::{Encoding, EventMessage};
use time::OffsetDateTime;

pub fn publish_body(data: &[u8], encoding: Encoding) {
    // The hub refuses a body that is not UTF-8 before any reader sees it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(message) = EventMessage::read(text, encoding) else {
        return;
    };
    // A message the reader accepts must make a storable event.
    let event = StoredEvent::new(
        &message,
        encoding,
        text,
        OffsetDateTime::UNIX_EPOCH,
        Retention::DEFAULT,
    );
    assert_eq!(event.event_id, message.message_id);
    serde_json::to_string(&event).expect("a stored event serialises");
}
