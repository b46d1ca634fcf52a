//! The head of an RFC 6455 frame as a server sends it (unmasked, final):
//! the session writes its text frames with it, ready for the socket, and
//! the socket its pings and pongs.

use actix_web::web::BytesMut;

/// The first byte of a final (unfragmented) text frame.
pub(crate) const TEXT: u8 = 0x81;
/// The first byte of a ping.
pub(crate) const PING: u8 = 0x89;
/// The first byte of a pong.
pub(crate) const PONG: u8 = 0x8a;

/// A SockJS heartbeat frame (`h`) and an empty ping, as they go on the
/// wire: what a silent socket sends each heartbeat, with no allocation.
pub(crate) const HEARTBEAT_AND_PING: &[u8] = &[TEXT, 1, HEARTBEAT[0], PING, 0];
/// An empty ping alone (after a text frame, or on a raw WebSocket).
pub(crate) const PING_ONLY: &[u8] = &[PING, 0];

/// The heartbeat frame's one byte.
const HEARTBEAT: &[u8] = {
    let h = super::HEARTBEAT_FRAME.as_bytes();
    assert!(h.len() == 1, "HEARTBEAT_AND_PING writes a one-byte heartbeat");
    h
};

/// The head of a frame whose first byte is `first` and whose payload is
/// `len` bytes long: the bytes, and how many of them are used (2, 4 or 10).
pub(crate) fn head(first: u8, len: usize) -> ([u8; 10], usize) {
    let mut head = [first, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let used = match (u8::try_from(len), u16::try_from(len)) {
        (Ok(short), _) if short < 126 => {
            head[1] = short;
            2
        }
        (_, Ok(medium)) => {
            head[1] = 126;
            head[2..4].copy_from_slice(&medium.to_be_bytes());
            4
        }
        _ => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    (head, used)
}

/// A whole text frame whose payload is `parts` joined, in one allocation
/// of exactly its size.
pub(crate) fn text_frame(parts: &[&str]) -> Box<[u8]> {
    let len = parts.iter().map(|part| part.len()).sum();
    let (head, used) = head(TEXT, len);
    let mut frame = Vec::with_capacity(used + len);
    frame.extend_from_slice(&head[..used]);
    for part in parts {
        frame.extend_from_slice(part.as_bytes());
    }
    frame.into_boxed_slice()
}

/// Appends a frame (`first` is its first byte: [`TEXT`], [`PING`],
/// [`PONG`]) to `out`. An empty buffer gets exactly the frame's size, so
/// that when it goes out alone it becomes `Bytes` without the shared
/// header a partly filled buffer needs.
pub(crate) fn put(out: &mut BytesMut, first: u8, payload: &[u8]) {
    let (head, used) = head(first, payload.len());
    if out.capacity() == 0 {
        *out = BytesMut::with_capacity(used + payload.len());
    } else {
        out.reserve(used + payload.len());
    }
    out.extend_from_slice(&head[..used]);
    out.extend_from_slice(payload);
}

/// How long the head of a frame made by [`text_frame`] is: 0 for bytes
/// that are not such a frame. What a session queues for any other
/// receiver is UTF-8 text, which never starts with [`TEXT`] (a
/// continuation byte), so the two cannot be taken for each other.
pub(crate) fn head_len(frame: &[u8]) -> usize {
    match frame {
        [TEXT, 126, ..] => 4,
        [TEXT, 127, ..] => 10,
        [TEXT, _, ..] => 2,
        _ => 0,
    }
}

/// The payload of a frame made by [`text_frame`].
#[cfg(test)]
pub(crate) fn payload(frame: &[u8]) -> &[u8] {
    &frame[head_len(frame).min(frame.len())..]
}

#[cfg(test)]
mod tests {
    use actix_http::ws::{Codec, Message};
    use actix_web::web::Bytes;
    use tokio_util::codec::Encoder as _;

    use super::*;

    /// What actix-http's codec writes for the same message, as a server.
    fn by_codec(msg: Message) -> Vec<u8> {
        let mut out = BytesMut::new();
        Codec::new().encode(msg, &mut out).expect("encoded");
        out.to_vec()
    }

    #[test]
    fn frames_match_actix_http_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let text = "x".repeat(len);
            let frame = text_frame(&[&text]);
            assert_eq!(*frame, *by_codec(Message::Text(text.clone().into())), "a text of {len} bytes");
            assert_eq!(payload(&frame), text.as_bytes());
            assert_eq!(head_len(&frame) + len, frame.len());
            let (a, b) = text.split_at(len / 2);
            assert_eq!(text_frame(&["", a, b]), frame, "joined from parts");
            let mut out = BytesMut::new();
            put(&mut out, TEXT, text.as_bytes());
            assert_eq!((&out[..], out.capacity()), (&frame[..], frame.len()), "sized exactly when alone");
        }
        for (first, msg) in
            [(PING, Message::Ping(Bytes::new())), (PONG, Message::Pong(Bytes::from_static(b"ok")))]
        {
            let payload: &[u8] = if first == PING { b"" } else { b"ok" };
            let (head, used) = head(first, payload.len());
            assert_eq!([&head[..used], payload].concat(), by_codec(msg));
        }
    }

    #[test]
    fn the_static_heartbeat_and_ping_are_the_frames_the_codec_writes() {
        let ping = by_codec(Message::Ping(Bytes::new()));
        let heartbeat = by_codec(Message::Text(super::super::HEARTBEAT_FRAME.into()));
        assert_eq!(HEARTBEAT_AND_PING, [heartbeat, ping.clone()].concat());
        assert_eq!(PING_ONLY, ping);
    }
}
