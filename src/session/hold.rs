//! What a session sends, closes or stops while broadcasts of its own are
//! on their way through its manager
//! ([`SessionContext::broadcast`](crate::SessionContext::broadcast)).
//!
//! The manager fans each such broadcast out, then sends the session a
//! fence, which comes after the session's own copy. What the session does
//! after a broadcast waits for that broadcast's fence, and goes out in
//! order: after two broadcasts, what came between them goes out at the
//! first fence, what came after the second at the second.

use std::collections::VecDeque;

/// One held action of the session.
#[derive(Debug, PartialEq)]
pub(crate) enum Held {
    Text(String),
    Close(u16, String),
    Stop,
}

#[derive(Debug)]
enum Item {
    Held(Held),
    /// Where the next broadcast went: what follows waits for its fence.
    Gap,
}

/// The broadcasts on their way and what waits for them.
#[derive(Debug, Default)]
pub(crate) struct Hold {
    /// Fences still to come.
    fences: u32,
    /// One [`Item::Gap`] fewer than `fences`.
    items: VecDeque<Item>,
    /// What `items` takes, about ([`Hold::weight`]).
    bytes: usize,
    /// Closes and stops in `items`.
    closes: u32,
}

impl Hold {
    /// A broadcast of the session's own went to its manager.
    pub(crate) fn sent(&mut self) {
        if self.fences > 0 {
            self.items.push_back(Item::Gap);
        }
        self.fences += 1;
    }

    /// A fence is still to come: what the session does waits.
    pub(crate) fn holds(&self) -> bool {
        self.fences > 0
    }

    /// A close or a stop waits: the session counts as closing.
    pub(crate) fn closing(&self) -> bool {
        self.closes > 0
    }

    /// Holds a stop, unless one is held already (a second does nothing).
    pub(crate) fn hold_stop(&mut self) {
        let stopping = self.items.iter().any(|item| matches!(item, Item::Held(Held::Stop)));
        if !stopping {
            self.hold(Held::Stop);
        }
    }

    /// Holds `held`; answers the bytes held then.
    pub(crate) fn hold(&mut self, held: Held) -> usize {
        self.bytes = self.bytes.saturating_add(Self::weight(&held));
        if !matches!(held, Held::Text(_)) {
            self.closes += 1;
        }
        self.items.push_back(Item::Held(held));
        self.bytes
    }

    /// What `held` weighs against the session's bound: about what the
    /// session's queue counts for it (a message's text, its quotes and
    /// comma), so that the hold closes no sooner than the queue would (a
    /// review: it counted its own 32 bytes a message, and 130 short sends
    /// that the queue took closed a session behind a broadcast).
    pub(crate) fn weight(held: &Held) -> usize {
        let text = match held {
            Held::Text(text) | Held::Close(_, text) => text.len(),
            Held::Stop => 0,
        };
        text + 3
    }

    /// A fence came: what waited for it, in order.
    pub(crate) fn fence(&mut self) -> Vec<Held> {
        if self.fences == 0 {
            return Vec::new();
        }
        self.fences -= 1;
        let mut out = Vec::new();
        while let Some(item) = self.items.pop_front() {
            match item {
                Item::Gap => break,
                Item::Held(held) => out.push(self.taken(held)),
            }
        }
        out
    }

    /// Everything held, whatever is still on its way (a shutdown).
    pub(crate) fn release_all(&mut self) -> Vec<Held> {
        self.fences = 0;
        let items = std::mem::take(&mut self.items);
        items
            .into_iter()
            .filter_map(|item| match item {
                Item::Gap => None,
                Item::Held(held) => Some(self.taken(held)),
            })
            .collect()
    }

    fn taken(&mut self, held: Held) -> Held {
        self.bytes = self.bytes.saturating_sub(Self::weight(&held));
        if !matches!(held, Held::Text(_)) {
            self.closes -= 1;
        }
        held
    }

    /// Nothing on its way, nothing held: the hold can go.
    pub(crate) fn is_done(&self) -> bool {
        self.fences == 0 && self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Held {
        Held::Text(s.to_owned())
    }

    #[test]
    fn what_came_between_two_broadcasts_goes_at_the_first_fence() {
        // A review: with a count of fences alone, what the session sent
        // after its first broadcast waited for the second one's fence too,
        // and went out after the second copy.
        let mut hold = Hold::default();
        hold.sent();
        hold.hold(text("after one"));
        hold.sent();
        hold.hold(text("after two"));
        hold.hold(Held::Stop);
        assert!(hold.holds() && hold.closing());
        assert_eq!(hold.fence(), [text("after one")]);
        assert!(hold.holds() && hold.closing());
        assert_eq!(hold.fence(), [text("after two"), Held::Stop]);
        assert!(!hold.holds() && !hold.closing() && hold.is_done());
        assert_eq!(hold.bytes, 0);
        // A stray fence (after a shutdown let everything go) does nothing.
        assert!(hold.fence().is_empty());
    }

    #[test]
    fn a_shutdown_lets_everything_go_and_empty_messages_weigh() {
        let mut hold = Hold::default();
        hold.sent();
        let one = hold.hold(text(""));
        assert!(one > 0, "an empty message weighs its place");
        hold.sent();
        hold.hold(Held::Close(4000, "Bye".into()));
        assert_eq!(hold.release_all(), [text(""), Held::Close(4000, "Bye".into())]);
        assert!(hold.is_done() && !hold.closing());
        assert_eq!(hold.bytes, 0);
    }
}
