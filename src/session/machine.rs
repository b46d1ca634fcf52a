//! The session's state machine as a plain type (docs/protocol.md §7): its
//! state (new, open, closing, closed), the frames waiting for a receiver,
//! and the receiver attached now. No actor and no timer here:
//! [`SessionContext`](super::SessionContext) feeds it events, runs the
//! user's hooks and the timers by what it answers.

use std::{borrow::Cow, collections::VecDeque};

use crate::{
    close_code::{self, with_reason},
    protocol::{close_frame, push_json_string, Escape, Transport, HEARTBEAT_FRAME, OPEN_FRAME},
    receiver::{Gone, Receiver},
};

/// A broadcast payload, encoded once for every receiving session.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) text: Box<str>,
    pub(crate) json: Box<str>,
    /// Not a message but a close ([`Broadcast::close`](crate::Broadcast::close)):
    /// the sessions close with this code, and `text` as the reason.
    pub(crate) close: Option<u16>,
}

/// Where a session is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// No receiver has come yet: the open frame is not sent.
    New,
    Open,
    /// Closed, and the close frame is still to be written to the attached
    /// receiver at the next flush.
    Closing(Box<(u16, String)>),
    /// Closed: every later receiver gets the close frame.
    Closed(Box<(u16, String)>),
}

const _: () = assert!(std::mem::size_of::<State>() == 16);

/// The attached receiver and the number that tells it from earlier ones.
#[derive(Debug)]
struct Attached {
    receiver: Receiver,
    token: u32,
    /// A write failed: its end is reported soon and closes the session.
    dead: bool,
}

/// Raw messages waiting for a raw WebSocket's receiver, and their bytes.
#[derive(Debug, Default)]
struct RawQueue {
    messages: VecDeque<String>,
    bytes: usize,
}

/// What [`Machine::attach`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attach {
    /// The first receiver: the open frame is written and the session is
    /// open. Run `on_open`; start the receiver's timers.
    Opened { token: u32 },
    /// Attached to an open session; start its timers.
    Attached { token: u32 },
    /// Another receiver is attached and alive: this one got
    /// `c[2010,"Another connection still open"]` and is gone.
    Refused,
    /// The attached receiver had been aborted by its client: it is
    /// detached, the session is closed, and this receiver got
    /// `c[1002,"Connection interrupted"]`. Run `on_close(Interrupted)`.
    Interrupted { old: u32 },
    /// The session is closed: this receiver got its close frame.
    Closed,
}

/// What a write or a flush did to the attached receiver.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// The receiver with this token was detached (a polling response got
    /// its frame, a stream reached its limit, or the close frame went out).
    pub(crate) detached: Option<u32>,
    /// The client stopped reading past the queue limit, with this many
    /// bytes waiting: the session is closed with 3008. Run
    /// `on_close(Overflow)`.
    pub(crate) overflow: Option<usize>,
}

/// What [`Machine::restore`] did with a frame a poll could not deliver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Restore {
    /// Its messages wait at the head of the queue.
    Kept,
    /// Messages or the close frame went to another receiver since: these
    /// would go out of order, and are lost.
    Late,
}

/// The queue grew past its limit, to this many bytes (now dropped): the
/// session is closed with 3008.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overflow(pub(crate) usize);

/// A session's state, its outgoing queue and its receiver.
#[derive(Debug)]
pub(crate) struct Machine {
    state: State,
    /// Encoded messages joined by commas, waiting for a flush (framed
    /// transports).
    pending: String,
    /// Raw WebSocket sessions only; boxed, as other sessions never need it.
    raw: Option<Box<RawQueue>>,
    attached: Option<Attached>,
    /// A socket's session: the token of its receiver. An HTTP session: the
    /// token (ticket, [`Receiver::ticket`]) of the last receiver it wrote
    /// messages or its close frame to ([`Machine::restore`]).
    last_token: u32,
    /// The transport that opened the session.
    transport: Transport,
    max_queue: usize,
}

impl Machine {
    /// A new session opened by `transport`, whose queue (and receiver's
    /// backlog) may hold `max_queue` bytes.
    pub(crate) fn new(transport: Transport, max_queue: usize) -> Self {
        Self {
            state: State::New,
            pending: String::new(),
            raw: None,
            attached: None,
            last_token: 0,
            transport,
            max_queue,
        }
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state == State::Open
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    fn is_raw(&self) -> bool {
        self.transport == Transport::RawWebSocket
    }

    /// Whether a receiver is attached.
    pub(crate) fn attached(&self) -> bool {
        self.attached.is_some()
    }

    /// The token of the attached receiver.
    pub(crate) fn token(&self) -> Option<u32> {
        self.attached.as_ref().map(|a| a.token)
    }

    /// The attached receiver, to watch it or to time its heartbeats.
    pub(crate) fn receiver(&self) -> Option<&Receiver> {
        self.attached.as_ref().map(|a| &a.receiver)
    }

    /// Bytes waiting: queued here and held by the receiver unread.
    pub(crate) fn queued(&self) -> usize {
        let here = self.pending.len() + self.raw.as_ref().map_or(0, |raw| raw.bytes);
        here.saturating_add(self.attached.as_ref().map_or(0, |a| a.receiver.backlog()))
    }

    /// A receiver arrives (docs/protocol.md §7.3).
    pub(crate) fn attach(&mut self, mut receiver: Receiver) -> Attach {
        match &self.state {
            State::New => {
                let token = self.install(receiver);
                if !self.is_raw() {
                    self.write(OPEN_FRAME);
                }
                self.state = State::Open;
                Attach::Opened { token }
            }
            State::Open => match self.attached.as_ref().map(|a| (a.token, !a.dead && a.receiver.alive())) {
                Some((_, true)) => {
                    let (code, reason) = with_reason(close_code::ANOTHER_CONNECTION);
                    let _ = receiver.write(close_frame(code, reason));
                    Attach::Refused
                }
                Some((old, false)) => {
                    self.attached = None;
                    self.set_closed(close_code::INTERRUPTED, None);
                    let (code, reason) = with_reason(close_code::INTERRUPTED);
                    self.written_to(receiver.ticket());
                    let _ = receiver.write(close_frame(code, reason));
                    Attach::Interrupted { old }
                }
                None => Attach::Attached { token: self.install(receiver) },
            },
            State::Closing(close) | State::Closed(close) => {
                // What was queued when the session closed with no receiver
                // (between two polls) comes first, as it would have to an
                // attached one: a poll ends with it, and the next gets the
                // close frame.
                // Not while a receiver is still attached: the close frame
                // and the messages are its own at the next flush.
                // This receiver gets them or the close frame (`written_to`,
                // by hand: `close` borrows the state).
                self.last_token = receiver.ticket().unwrap_or(self.last_token);
                if !self.pending.is_empty() && self.attached.is_none() {
                    match write_queued(&mut receiver, &self.pending) {
                        // A poll ends with them.
                        Ok(true) => {
                            self.pending = String::new();
                            return Attach::Closed;
                        }
                        Ok(false) => self.pending = String::new(),
                        // A receiver whose client has gone leaves them for
                        // the next.
                        Err(_) => return Attach::Closed,
                    }
                }
                let (code, reason) = (close.0, close.1.as_str());
                let _ = receiver.write(close_frame(code, reason));
                receiver.close_socket(code, reason);
                Attach::Closed
            }
        }
    }

    fn install(&mut self, receiver: Receiver) -> u32 {
        // An HTTP receiver's token is its ticket; a socket's counts.
        let token = match receiver.ticket() {
            Some(ticket) => ticket,
            None => {
                self.last_token = self.last_token.wrapping_add(1);
                self.last_token
            }
        };
        self.attached = Some(Attached { receiver, token, dead: false });
        token
    }

    /// Takes back `messages` (JSON strings joined by commas), written to
    /// the HTTP receiver `ticket` whose request ended before it took them
    /// (its client closed the connection as they came): they go back to the
    /// head of the queue, for the next receiver.
    pub(crate) fn restore(&mut self, ticket: u32, messages: &str) -> Restore {
        // A receiver attached since that has been written nothing (a poll
        // waiting) takes them, in order.
        if self.last_token != ticket {
            return Restore::Late;
        }
        if self.pending.is_empty() {
            messages.clone_into(&mut self.pending);
        } else {
            self.pending = format!("{messages},{}", self.pending);
        }
        Restore::Kept
    }

    /// A closed session lost messages it cannot restore (see
    /// [`Machine::restore`]): the requests that come from now on get
    /// `c[1002,"Connection interrupted"]` in place of its close frame, so
    /// that a client that has not had the close frame yet learns of the
    /// loss (one that had it is gone). `false` if it was not closed.
    pub(crate) fn interrupt_closed(&mut self) -> bool {
        let (code, reason) = with_reason(close_code::INTERRUPTED);
        match &mut self.state {
            State::Closing(close) | State::Closed(close) => {
                **close = (code, reason.to_owned());
                true
            }
            State::New | State::Open => false,
        }
    }

    /// Notes that messages or the close frame went to the receiver `token`
    /// (an HTTP receiver's ticket): what an earlier one could not deliver
    /// would now come after them ([`Machine::restore`]).
    fn written_to(&mut self, token: Option<u32>) {
        if let Some(token) = token {
            self.last_token = token;
        }
    }

    /// Queues one message; ignored unless the session is open.
    pub(crate) fn send(&mut self, msg: &str) -> Result<(), Overflow> {
        if self.state != State::Open {
            return Ok(());
        }
        let queued = if self.is_raw() {
            let raw = self.raw.get_or_insert_default();
            raw.bytes = raw.bytes.saturating_add(msg.len());
            raw.messages.push_back(msg.to_owned());
            raw.bytes
        } else {
            if !self.pending.is_empty() {
                self.pending.push(',');
            }
            push_json_string(&mut self.pending, msg, Escape::SockJs);
            self.pending.len()
        };
        self.check_queue(queued)
    }

    /// Queues a broadcast, encoded once for all sessions.
    pub(crate) fn push(&mut self, shared: &Shared) -> Result<(), Overflow> {
        if self.state != State::Open {
            return Ok(());
        }
        if self.is_raw() {
            return self.send(&shared.text);
        }
        if !self.pending.is_empty() {
            self.pending.push(',');
        }
        self.pending.push_str(&shared.json);
        self.check_queue(self.pending.len())
    }

    fn check_queue(&mut self, queued: usize) -> Result<(), Overflow> {
        if queued <= self.max_queue {
            return Ok(());
        }
        // The depth the high-water mark is told: what waits here and what
        // the attached receiver holds unread.
        let unread = self.attached.as_ref().map_or(0, |att| att.receiver.backlog());
        self.overflow();
        Err(Overflow(queued.saturating_add(unread)))
    }

    /// Drops what waits and closes the session with 3008.
    fn overflow(&mut self) {
        self.pending = String::new();
        self.raw = None;
        self.set_closed(close_code::OVERFLOW, None);
    }

    /// Closes an open session; `false` if it was not open. The close frame
    /// goes to the attached receiver at the next flush, or to the next
    /// receiver that comes.
    pub(crate) fn close(&mut self, code: u16, reason: &str) -> bool {
        if self.state != State::Open {
            return false;
        }
        self.set_closed(code, Some(reason));
        true
    }

    /// Closes a session no receiver has opened yet (a shutdown that came
    /// before its first receiver): the receiver that comes gets the close
    /// frame and no open frame. `false` if it was not new.
    pub(crate) fn close_unopened(&mut self, code: u16) -> bool {
        if self.state != State::New {
            return false;
        }
        self.set_closed(code, None);
        true
    }

    /// Closes the session: `Closing` while a receiver is attached, else
    /// `Closed`. `reason` defaults to the code's own.
    fn set_closed(&mut self, code: u16, reason: Option<&str>) {
        let reason = reason.or(close_code::reason(code)).unwrap_or_default().to_owned();
        let close = Box::new((code, reason));
        self.state = if self.attached.is_some() { State::Closing(close) } else { State::Closed(close) };
    }

    /// The transport reported that its socket failed: the session closes
    /// without a close frame (the socket already sent its own). `false`
    /// if it was not open.
    pub(crate) fn fail(&mut self) -> bool {
        self.attached = None;
        if self.state != State::Open {
            return false;
        }
        self.state = State::Closed(Box::new((close_code::NORMAL, "Normal closure".to_owned())));
        true
    }

    /// The receiver `token` is gone; `true` if it was the attached one,
    /// which is then detached. An HTTP session is then closed as
    /// interrupted (docs/protocol.md §7.5), a WebSocket one as ended.
    pub(crate) fn receiver_gone(&mut self, token: u32) -> bool {
        if self.token() != Some(token) {
            return false;
        }
        self.attached = None;
        true
    }

    /// Closes an open session whose receiver ended: with 1002 for HTTP
    /// sessions (later requests get `c[1002,"Connection interrupted"]`),
    /// 1000 for WebSockets. `false` if it was not open.
    pub(crate) fn close_ended(&mut self) -> bool {
        if self.state != State::Open {
            return false;
        }
        let code = if self.transport.is_websocket() { close_code::NORMAL } else { close_code::INTERRUPTED };
        self.set_closed(code, None);
        true
    }

    /// Detaches the receiver (an HTTP response ends when it is dropped).
    pub(crate) fn detach(&mut self) -> Option<u32> {
        self.attached.take().map(|a| a.token)
    }

    /// A heartbeat tick of an HTTP receiver: writes `h`, whatever else was
    /// written since the last, as sockjs-node does. A stream is then never
    /// silent for longer than the heartbeat delay, which is what keeps
    /// proxies with idle timeouts from cutting it. (A WebSocket writes its
    /// own, with its ping.)
    pub(crate) fn heartbeat(&mut self) -> Written {
        self.write(HEARTBEAT_FRAME)
    }

    /// The disconnect delay passed: `Some(was_open)` if the session is to
    /// end (no receiver came), `None` if one is attached.
    pub(crate) fn expire(&mut self) -> Option<bool> {
        if self.attached.is_some() {
            return None;
        }
        let was_open = self.state == State::Open;
        if was_open {
            self.set_closed(close_code::NORMAL, None);
        }
        Some(was_open)
    }

    /// Hands what waits to the attached receiver: the queued messages as
    /// one frame (on a raw WebSocket, one by one), then the close frame of
    /// a closing session, which detaches the receiver.
    pub(crate) fn flush(&mut self) -> Written {
        let mut written = Written::default();
        if self.attached.is_some() {
            if self.is_raw() {
                self.flush_raw(&mut written);
            } else if !self.pending.is_empty() {
                // Joined by the receiver: an RFC 6455 WebSocket's frame is
                // then made in one allocation, its head included.
                let mut pending = std::mem::take(&mut self.pending);
                self.written_to(self.token());
                written.merge(self.write_by(|receiver| write_queued(receiver, &pending)));
                // Its buffer is kept for the next messages, unless this write
                // closed the session (an overflow gives the memory back).
                if self.state == State::Open {
                    pending.clear();
                    self.pending = pending;
                }
            }
        }
        if matches!(self.state, State::Closing(_)) {
            self.flush_close(&mut written);
        }
        written
    }

    /// [`Self::flush`] on a raw WebSocket: the messages one by one.
    #[inline(never)]
    fn flush_raw(&mut self, written: &mut Written) {
        while self.attached.is_some() {
            let Some(raw) = self.raw.as_mut() else { break };
            let Some(msg) = raw.messages.pop_front() else {
                // Drained: give the buffer back.
                self.raw = None;
                break;
            };
            raw.bytes = raw.bytes.saturating_sub(msg.len());
            written.merge(self.write(msg));
        }
    }

    /// [`Self::flush`] of a closing session: its close frame, which
    /// detaches the receiver.
    #[cold]
    #[inline(never)]
    fn flush_close(&mut self, written: &mut Written) {
        if let State::Closing(close) = &self.state {
            let close = close.clone();
            self.state = State::Closed(close.clone());
            let (code, reason) = *close;
            if !self.is_raw() {
                self.written_to(self.token());
                written.merge(self.write(close_frame(code, &reason)));
            }
            if let Some(att) = &self.attached {
                let (code, reason) =
                    if self.is_raw() { (code, reason.as_str()) } else { with_reason(close_code::NORMAL) };
                att.receiver.close_socket(code, reason);
            }
            if let Some(token) = self.detach() {
                written.detached = Some(token);
            }
        }
    }

    /// Writes one frame to the attached receiver, detaching it when it is
    /// done, and closing the session if the client stopped reading.
    fn write<'a>(&mut self, frame: impl Into<Cow<'a, str>>) -> Written {
        self.write_by(|receiver| receiver.write(frame))
    }

    /// [`Self::write`], with the receiver's write given.
    fn write_by(&mut self, write: impl FnOnce(&mut Receiver) -> Result<bool, Gone>) -> Written {
        let mut written = Written::default();
        let Some(att) = self.attached.as_mut().filter(|a| !a.dead) else {
            return written;
        };
        match write(&mut att.receiver) {
            Ok(done) => {
                let backlog = att.receiver.backlog();
                if done {
                    written.detached = self.detach();
                } else if backlog > self.max_queue && self.state == State::Open {
                    written.overflow = Some(self.not_reading(backlog));
                }
            }
            // The receiver's end is reported (by its watcher or its
            // transport) and closes the session.
            Err(_) => att.dead = true,
        }
        written
    }

    /// The client stopped reading, `backlog` bytes behind: its transport
    /// must not hoard memory (answers `backlog`).
    #[cold]
    #[inline(never)]
    fn not_reading(&mut self, backlog: usize) -> usize {
        crate::util::log_limited!(
            log::Level::Warn,
            "sockjs: client is not reading ({backlog} bytes waiting)"
        );
        self.overflow();
        backlog
    }

    /// The session is dropped: what its attached receiver still needs to
    /// hear (the close frame of an open or closing session), and the code
    /// and reason for a WebSocket's close frame. An open session that
    /// `failed` (its handler panicked) ends with 1011 "Internal error"
    /// rather than a normal closure, so that its client can tell.
    pub(crate) fn end(&mut self, failed: bool) {
        let Some(att) = self.attached.take() else { return };
        let (code, reason) = match &self.state {
            State::Closing(close) | State::Closed(close) => (close.0, close.1.as_str()),
            _ if failed => close_code::with_reason(close_code::INTERNAL_ERROR),
            _ => close_code::with_reason(close_code::NORMAL),
        };
        match self.state {
            State::Open | State::Closing(_) => att.receiver.close_with(code, reason),
            _ => att.receiver.close_socket(code, reason),
        }
    }
}

/// Writes the queued messages (`pending`, JSON strings joined by commas)
/// as one `a[...]` frame.
fn write_queued(receiver: &mut Receiver, pending: &str) -> Result<bool, Gone> {
    receiver.write_parts(&["a[", pending, "]"])
}

impl Written {
    fn merge(&mut self, other: Self) {
        self.detached = self.detached.or(other.detached);
        self.overflow = self.overflow.max(other.overflow);
    }
}

/// A [`Shared`] for tests and for one-off pushes.
#[cfg(test)]
pub(crate) fn shared(text: &str) -> std::sync::Arc<Shared> {
    let json = crate::protocol::json_string(text, Escape::SockJs).into_boxed_str();
    std::sync::Arc::new(Shared { text: text.into(), json, close: None })
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::{
        protocol::wsframe,
        receiver::{out_queue, poll_text, Framing, OutRx},
    };

    fn read(rx: &mut OutRx) -> Vec<String> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        while let Poll::Ready(Some(bytes)) = poll_text(rx, &mut cx) {
            // An RFC 6455 socket's frames come with their heads.
            let text = if bytes.first() == Some(&wsframe::TEXT) { wsframe::payload(&bytes) } else { &bytes };
            got.push(String::from_utf8(text.to_vec()).unwrap());
        }
        got
    }

    fn poll_receiver() -> (Receiver, OutRx) {
        let (tx, rx) = out_queue();
        (Receiver::http(Transport::XhrPolling, Framing::Xhr, tx, 0), rx)
    }

    fn stream_receiver(limit: usize) -> (Receiver, OutRx) {
        let (tx, rx) = out_queue();
        (Receiver::http(Transport::XhrStreaming, Framing::Xhr, tx, limit), rx)
    }

    fn socket(transport: Transport) -> (Receiver, OutRx) {
        let (tx, rx) = out_queue();
        (Receiver::socket(transport, tx, true), rx)
    }

    #[test]
    fn a_poll_opens_the_session_and_the_next_gets_what_was_sent_between() {
        let mut m = Machine::new(Transport::XhrPolling, 1024);
        assert_eq!(m.state(), &State::New);
        let (r, mut rx) = poll_receiver();
        let ticket = r.ticket().unwrap();
        assert_eq!(m.attach(r), Attach::Opened { token: ticket }, "an HTTP receiver's token is its ticket");
        assert!(m.is_open());
        assert!(!m.attached(), "a poll is done after the open frame");
        assert_eq!(read(&mut rx), ["o\n"]);
        m.send("a").unwrap();
        m.push(&shared("b\"")).unwrap();
        assert_eq!(m.flush(), Written::default(), "no receiver: the messages wait");
        assert_eq!(m.queued(), r#""a","b\"""#.len());
        let (r, mut rx) = poll_receiver();
        let ticket = r.ticket().unwrap();
        assert_eq!(m.attach(r), Attach::Attached { token: ticket });
        assert_eq!(m.flush(), Written { detached: Some(ticket), overflow: None });
        assert_eq!(read(&mut rx), ["a[\"a\",\"b\\\"\"]\n"]);
        assert_eq!(m.queued(), 0);
    }

    #[test]
    fn a_second_live_receiver_is_refused_and_an_aborted_one_interrupts() {
        let mut m = Machine::new(Transport::XhrStreaming, 1024);
        let (first, mut first_rx) = stream_receiver(4096);
        let ticket = first.ticket().unwrap();
        assert_eq!(m.attach(first), Attach::Opened { token: ticket });
        let (second, mut second_rx) = poll_receiver();
        assert_eq!(m.attach(second), Attach::Refused);
        assert_eq!(read(&mut second_rx), ["c[2010,\"Another connection still open\"]\n"]);
        assert_eq!(read(&mut first_rx), ["o\n"], "the first keeps working");
        assert!(m.is_open());

        drop(first_rx);
        let (third, mut third_rx) = poll_receiver();
        assert_eq!(m.attach(third), Attach::Interrupted { old: ticket });
        assert_eq!(read(&mut third_rx), ["c[1002,\"Connection interrupted\"]\n"]);
        assert_eq!(m.state(), &State::Closed(Box::new((1002, "Connection interrupted".into()))));
        let (late, mut late_rx) = poll_receiver();
        assert_eq!(m.attach(late), Attach::Closed);
        assert_eq!(read(&mut late_rx), ["c[1002,\"Connection interrupted\"]\n"]);
    }

    #[test]
    fn close_goes_out_after_the_queued_messages_then_the_state_is_closed() {
        let mut m = Machine::new(Transport::EventSource, 1024);
        let (r, mut rx) = stream_receiver(usize::MAX);
        m.attach(r);
        m.send("bye").unwrap();
        assert!(m.close(3000, "Go away!"));
        assert!(!m.close(3001, "again"), "only an open session closes");
        assert!(matches!(m.state(), State::Closing(_)));
        m.send("dropped").unwrap();
        assert_eq!(m.flush().detached, m.last_token.into());
        assert_eq!(read(&mut rx), ["o\n", "a[\"bye\"]\n", "c[3000,\"Go away!\"]\n"]);
        assert!(matches!(m.state(), State::Closed(_)));
        assert!(!m.attached());

        let mut idle = Machine::new(Transport::XhrPolling, 1024);
        let (r, _rx) = poll_receiver();
        idle.attach(r);
        assert!(idle.close(3000, "x"));
        assert!(matches!(idle.state(), State::Closed(_)), "no receiver: closed at once");
    }

    #[test]
    fn what_was_queued_when_a_session_closed_between_polls_comes_before_the_close() {
        let mut m = Machine::new(Transport::XhrPolling, 1024);
        let (r, mut rx) = poll_receiver();
        m.attach(r);
        assert_eq!(read(&mut rx), ["o\n"]);
        m.send("one").unwrap();
        m.send("two").unwrap();
        assert!(m.close(4000, "bye"));
        let (r, mut rx) = poll_receiver();
        assert_eq!(m.attach(r), Attach::Closed);
        assert_eq!(read(&mut rx), ["a[\"one\",\"two\"]\n"], "a poll ends with the messages");
        let (r, mut rx) = poll_receiver();
        assert_eq!(m.attach(r), Attach::Closed);
        assert_eq!(read(&mut rx), ["c[4000,\"bye\"]\n"]);
        // A streaming receiver gets both.
        let mut m = Machine::new(Transport::XhrStreaming, 1024);
        let (r, _rx) = poll_receiver();
        m.attach(r);
        m.send("last").unwrap();
        assert!(m.close(4000, "bye"));
        let (r, mut rx) = stream_receiver(usize::MAX);
        assert_eq!(m.attach(r), Attach::Closed);
        assert_eq!(read(&mut rx), ["a[\"last\"]\n", "c[4000,\"bye\"]\n"]);
        // A poll whose client has gone leaves them to the next.
        let mut m = Machine::new(Transport::XhrPolling, 1024);
        let (r, _rx) = poll_receiver();
        m.attach(r);
        m.send("kept").unwrap();
        assert!(m.close(4000, "bye"));
        let (r, rx) = poll_receiver();
        drop(rx);
        assert_eq!(m.attach(r), Attach::Closed);
        let (r, mut rx) = poll_receiver();
        m.attach(r);
        assert_eq!(read(&mut rx), ["a[\"kept\"]\n"]);
        // While a receiver is attached to a closing session, what waits is
        // its own, with the close frame; another gets the frame alone.
        let mut m = Machine::new(Transport::XhrStreaming, 1024);
        let (r, mut first) = stream_receiver(usize::MAX);
        m.attach(r);
        m.send("mine").unwrap();
        assert!(m.close(4000, "bye"));
        let (r, mut second) = stream_receiver(usize::MAX);
        assert_eq!(m.attach(r), Attach::Closed);
        assert_eq!(read(&mut second), ["c[4000,\"bye\"]\n"]);
        m.flush();
        assert_eq!(read(&mut first), ["o\n", "a[\"mine\"]\n", "c[4000,\"bye\"]\n"]);
    }

    #[test]
    fn the_queue_limit_closes_with_3008_and_drops_what_waits() {
        let mut m = Machine::new(Transport::XhrPolling, 10);
        let (r, _rx) = poll_receiver();
        m.attach(r);
        m.send("12345").unwrap();
        assert_eq!(m.send("67890"), Err(Overflow(15)), "what had come: two quoted messages and a comma");
        assert_eq!(m.queued(), 0);
        assert_eq!(m.state(), &State::Closed(Box::new((3008, "Outgoing queue overflow".into()))));
        assert_eq!(m.send("more"), Ok(()), "ignored once closed");
    }

    #[test]
    fn a_client_that_does_not_read_overflows_its_receivers_backlog() {
        let mut m = Machine::new(Transport::WebSocket, 100);
        let (r, mut rx) = socket(Transport::WebSocket);
        m.attach(r);
        let big = "x".repeat(60);
        m.send(&big).unwrap();
        assert_eq!(m.flush(), Written::default());
        m.send(&big).unwrap();
        // The close frame still goes out, in the same flush.
        let written = m.flush();
        assert_eq!(written.detached, m.last_token.into());
        assert!(written.overflow.is_some_and(|backlog| backlog > 100), "{written:?}");
        assert!(matches!(m.state(), State::Closed(_)));
        let got = read(&mut rx);
        assert_eq!(got.last().map(String::as_str), Some("c[3008,\"Outgoing queue overflow\"]"));
        assert_eq!(m.pending.capacity(), 0, "the overflowed session gives its buffer back");
    }

    #[test]
    fn a_frames_head_does_not_count_against_the_queue_limit() {
        // A raw WebSocket message as long as the limit allows, to a client
        // that reads nothing yet: its 4-byte frame head does not tip it over.
        let mut m = Machine::new(Transport::RawWebSocket, 1024);
        let (r, mut rx) = socket(Transport::RawWebSocket);
        m.attach(r);
        m.send(&"x".repeat(1024)).unwrap();
        assert_eq!(m.flush(), Written::default());
        assert!(m.is_open());
        assert_eq!(read(&mut rx), ["x".repeat(1024)]);
    }

    #[test]
    fn an_http_receiver_gets_a_heartbeat_at_every_tick() {
        let mut m = Machine::new(Transport::XhrStreaming, 1024);
        let (r, mut rx) = stream_receiver(usize::MAX);
        m.attach(r);
        m.heartbeat();
        assert_eq!(read(&mut rx), ["o\n", "h\n"], "the open frame does not put the heartbeat off");
        m.send("x").unwrap();
        m.flush();
        m.heartbeat();
        assert_eq!(read(&mut rx), ["a[\"x\"]\n", "h\n"], "nor does a message");
    }

    #[test]
    fn a_streaming_receiver_is_detached_at_its_limit() {
        let mut m = Machine::new(Transport::XhrStreaming, 1 << 20);
        let (r, _rx) = stream_receiver(10);
        m.attach(r);
        m.send("0123456789").unwrap();
        assert_eq!(m.flush().detached, m.last_token.into());
        assert!(m.is_open(), "the session lives on for the next request");
    }

    /// An open polling session whose poll (the answered ticket) was written
    /// `msg`, and whose client never got it.
    fn opened_with_a_lost_poll(msg: &str) -> (Machine, u32) {
        let mut m = Machine::new(Transport::XhrPolling, 1024);
        let (r, _rx) = poll_receiver();
        m.attach(r);
        m.send(msg).unwrap();
        let (r, mut lost) = poll_receiver();
        let ticket = r.ticket().unwrap();
        m.attach(r);
        m.flush();
        assert_eq!(read(&mut lost), [format!("a[\"{msg}\"]\n")]);
        (m, ticket)
    }

    #[test]
    fn a_frame_its_poll_could_not_deliver_goes_first_to_the_next_unless_another_poll_came() {
        let (mut m, ticket) = opened_with_a_lost_poll("one");
        m.send("two").unwrap();
        assert_eq!(m.restore(ticket, "\"one\""), Restore::Kept);
        let (r, mut rx) = poll_receiver();
        m.attach(r);
        m.flush();
        assert_eq!(read(&mut rx), ["a[\"one\",\"two\"]\n"], "in their order");
        // The poll after it was written newer messages: the frame cannot
        // take its place any more.
        assert_eq!(m.restore(ticket, "\"one\""), Restore::Late);

        // A review: a poll that came since and waits, written nothing, takes
        // them (the session was closed as interrupted).
        let (mut m, ticket) = opened_with_a_lost_poll("one");
        let (r, mut waiting) = poll_receiver();
        m.attach(r);
        assert_eq!(m.flush(), Written::default(), "nothing for it yet");
        m.send("two").unwrap();
        assert_eq!(m.restore(ticket, "\"one\""), Restore::Kept);
        m.flush();
        assert_eq!(read(&mut waiting), ["a[\"one\",\"two\"]\n"]);
        // A heartbeat carries no message: it does not stand in the way.
        let (r, mut lost) = poll_receiver();
        let ticket = r.ticket().unwrap();
        m.attach(r);
        m.send("three").unwrap();
        m.flush();
        assert_eq!(read(&mut lost), ["a[\"three\"]\n"]);
        let (r, mut beat) = poll_receiver();
        m.attach(r);
        m.heartbeat();
        assert_eq!(read(&mut beat), ["h\n"]);
        assert_eq!(m.restore(ticket, "\"three\""), Restore::Kept);

        // A closed session keeps them for the next poll, before its close.
        let mut m = Machine::new(Transport::XhrPolling, 1024);
        let (r, _rx) = poll_receiver();
        m.attach(r);
        m.send("last").unwrap();
        assert!(m.close(3000, "Go away!"));
        let (r, mut lost) = poll_receiver();
        let ticket = r.ticket().unwrap();
        assert_eq!(m.attach(r), Attach::Closed);
        assert_eq!(read(&mut lost), ["a[\"last\"]\n"]);
        assert_eq!(m.restore(ticket, "\"last\""), Restore::Kept);
        let (r, mut rx) = poll_receiver();
        m.attach(r);
        assert_eq!(read(&mut rx), ["a[\"last\"]\n"]);
        let (r, mut rx) = poll_receiver();
        m.attach(r);
        assert_eq!(read(&mut rx), ["c[3000,\"Go away!\"]\n"]);
        // A review: not once the close frame went to a poll after it.
        let mut m = Machine::new(Transport::XhrPolling, 1024);
        let (r, _rx) = poll_receiver();
        m.attach(r);
        m.send("last").unwrap();
        assert!(m.close(3000, "Go away!"));
        let (r, _lost) = poll_receiver();
        let ticket = r.ticket().unwrap();
        m.attach(r);
        let (r, mut rx) = poll_receiver();
        m.attach(r);
        assert_eq!(read(&mut rx), ["c[3000,\"Go away!\"]\n"]);
        assert_eq!(m.restore(ticket, "\"last\""), Restore::Late);
        // What is lost then makes the later requests' close frame 1002
        // (a review): a client that had not had the close frame yet
        // learns of the loss.
        assert!(m.interrupt_closed());
        let (r, mut rx) = poll_receiver();
        m.attach(r);
        assert_eq!(read(&mut rx), ["c[1002,\"Connection interrupted\"]\n"]);
        // A review: nor once a request after a dead stream got 1002.
        let mut m = Machine::new(Transport::XhrStreaming, 1024);
        let (r, stream) = stream_receiver(usize::MAX);
        let ticket = r.ticket().unwrap();
        m.attach(r);
        m.send("x").unwrap();
        m.flush();
        drop(stream);
        let (r, mut rx) = poll_receiver();
        assert_eq!(m.attach(r), Attach::Interrupted { old: ticket });
        assert_eq!(read(&mut rx), ["c[1002,\"Connection interrupted\"]\n"]);
        assert_eq!(m.restore(ticket, "\"x\""), Restore::Late);
    }

    #[test]
    fn raw_websocket_messages_go_one_by_one_without_frames() {
        let mut m = Machine::new(Transport::RawWebSocket, 1024);
        let (r, mut rx) = socket(Transport::RawWebSocket);
        assert_eq!(m.attach(r), Attach::Opened { token: 1 });
        m.send("one").unwrap();
        m.push(&shared("two")).unwrap();
        m.flush();
        assert_eq!(read(&mut rx), ["one", "two"]);
        assert!(m.close(4000, "done"));
        assert_eq!(m.flush().detached, Some(1));
        assert_eq!(read(&mut rx), Vec::<String>::new(), "the close is a socket close, not a frame");
    }

    #[test]
    fn ended_receivers_and_expiry() {
        let mut m = Machine::new(Transport::WebSocket, 1024);
        let (r, _rx) = socket(Transport::WebSocket);
        m.attach(r);
        assert!(!m.receiver_gone(7), "not the attached one");
        assert!(m.receiver_gone(1));
        assert!(m.close_ended());
        assert_eq!(m.state(), &State::Closed(Box::new((1000, "Normal closure".into()))));

        let mut m = Machine::new(Transport::XhrStreaming, 1024);
        let (r, _rx) = stream_receiver(usize::MAX);
        m.attach(r);
        assert_eq!(m.expire(), None, "a receiver is attached");
        assert!(m.receiver_gone(m.token().unwrap()) && m.close_ended());
        assert_eq!(m.state(), &State::Closed(Box::new((1002, "Connection interrupted".into()))));
        assert_eq!(m.expire(), Some(false));

        let mut m = Machine::new(Transport::XhrPolling, 1024);
        assert_eq!(m.expire(), Some(false), "a session whose first receiver never came");
        let (r, _rx) = poll_receiver();
        let mut m2 = Machine::new(Transport::XhrPolling, 1024);
        m2.attach(r);
        assert_eq!(m2.expire(), Some(true));
        assert!(!m.is_open() && !m2.is_open());
    }

    #[test]
    fn a_shutdown_before_the_first_receiver_closes_the_session() {
        for transport in [Transport::XhrPolling, Transport::WebSocket] {
            let mut m = Machine::new(transport, 1024);
            assert!(m.close_unopened(close_code::SHUTDOWN));
            let (r, mut rx) = if transport.is_websocket() { socket(transport) } else { poll_receiver() };
            assert!(matches!(m.attach(r), Attach::Closed));
            let frames = read(&mut rx);
            assert!(frames[0].starts_with("c[1001,\"Server shutting down\"]"), "{frames:?}");
            assert!(!m.is_open());
            assert!(!m.close_unopened(close_code::SHUTDOWN), "only a new session");
        }
    }

    #[test]
    fn a_dropped_session_tells_its_receiver() {
        let mut m = Machine::new(Transport::WebSocket, 1024);
        let (r, mut rx) = socket(Transport::WebSocket);
        m.attach(r);
        m.end(false);
        assert_eq!(read(&mut rx), ["o", "c[1000,\"Normal closure\"]"]);
        assert!(!m.attached());
    }
}
