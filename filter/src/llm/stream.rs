//! The shell every translated stream shares (the providers' and the A2A
//! chat's): the upstream's events read in bounded memory ([`EventReader`]),
//! the room a stream may hold, and an end that always comes. What the events become is each translator's
//! ([`Events`]); the shell only drives them.

use super::MAX_EVENT_BYTES;
use crate::sse::{EventReader, SseEvent};

/// What a translator does with the upstream's events.
pub trait Events {
    /// One event of the upstream's stream: the client's events, if any.
    fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>);
    /// The client's stream has ended: nothing more is written.
    fn done(&self) -> bool;
    /// Ends the client's stream for want of room (an error event, then its
    /// end marker).
    fn out_of_room(&mut self, out: &mut Vec<u8>);
    /// The upstream's stream ended and the client's has not: its end, after
    /// an error event when the upstream broke off.
    fn upstream_ended(&mut self, out: &mut Vec<u8>);
    /// Bytes the translator holds between events (beside the unfinished
    /// event, which the shell counts).
    fn held(&self) -> usize;
    /// Lets go of what it holds, once the stream ended.
    fn let_go(&mut self) {}
}

/// A translated stream: the upstream's events, read as the body passes in
/// chunks of any size, turned into the client's by `T`.
pub struct Stream<T> {
    events: EventReader,
    pub(crate) inner: T,
    /// Ended because the stream was to hold more than its room.
    cut_short: bool,
}

impl<T: Events> Stream<T> {
    pub(crate) fn with(inner: T) -> Self {
        Stream {
            events: EventReader::new(MAX_EVENT_BYTES),
            inner,
            cut_short: false,
        }
    }

    /// The client's events for one chunk of the upstream's stream, holding
    /// at most `room` bytes once the chunk is read (its share of a budget
    /// several streams draw on): a stream that would hold more ends with an
    /// error event (`gateway_memory_exhausted`) and holds nothing after.
    pub fn feed_within(&mut self, chunk: &[u8], room: usize) -> Vec<u8> {
        let mut out = Vec::new();
        if self.inner.done() {
            return out;
        }
        let inner = &mut self.inner;
        self.events
            .feed(chunk, |event| inner.on_event(event, &mut out));
        if !self.inner.done() && self.held() > room {
            self.cut_short = true;
            self.inner.out_of_room(&mut out);
        }
        if self.inner.done() {
            self.let_go();
        }
        out
    }

    /// The rest, once the upstream's stream ended: the client's stream
    /// always ends, with an error event first when the upstream broke off;
    /// nothing when it had ended already.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.inner.done() {
            return out;
        }
        let inner = &mut self.inner;
        self.events.finish(|event| inner.on_event(event, &mut out));
        if !self.inner.done() {
            self.inner.upstream_ended(&mut out);
        }
        self.let_go();
        out
    }

    /// Bytes this stream holds between chunks: the unfinished event and
    /// the translator's state.
    pub fn held(&self) -> usize {
        self.events.held() + self.inner.held()
    }

    /// Whether the stream ended for want of room (see
    /// [`Stream::feed_within`]).
    pub fn cut_short(&self) -> bool {
        self.cut_short
    }

    /// Lets go of the event reader's buffer and the translator's state.
    pub(crate) fn let_go(&mut self) {
        self.events = EventReader::new(0);
        self.inner.let_go();
    }
}
