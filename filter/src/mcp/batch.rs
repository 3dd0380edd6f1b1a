//! Watching a body for a JSON-RPC batch when the message was judged from
//! metadata (`model_from: metadata`): json_to_metadata reads keys out of an
//! array as from an object, so the filter must see for itself whether the
//! body is an array. The first byte that is not JSON whitespace decides,
//! wherever it is; bodies pass on chunk by chunk while only whitespace has
//! been seen (whitespace alone tells the server nothing).

/// More leading whitespace than this is refused rather than watched on: no
/// client pads a message, and an unbounded watch would let a body of
/// whitespace keep the filter reading forever.
pub const MAX_LEADING_WHITESPACE: usize = 1024;

/// What the bytes seen so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Only whitespace so far: keep watching.
    Undecided,
    /// The first significant byte is not `[`: not a batch, stop watching.
    NotABatch,
    /// The first significant byte is `[`.
    Batch,
    /// More than [`MAX_LEADING_WHITESPACE`] bytes of whitespace.
    TooMuchWhitespace,
}

/// The state of one body's watch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchWatch {
    whitespace: usize,
}

impl BatchWatch {
    /// How many bytes of the next chunk are worth reading: one more than the
    /// whitespace still allowed (that byte decides if the rest was blank).
    pub fn wants(&self) -> usize {
        MAX_LEADING_WHITESPACE.saturating_sub(self.whitespace) + 1
    }

    /// Looks at the start of the next chunk (at most [`Self::wants`] bytes
    /// of it matter).
    pub fn feed(&mut self, chunk: &[u8]) -> Seen {
        let blank = chunk
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        self.whitespace = self.whitespace.saturating_add(blank);
        if self.whitespace > MAX_LEADING_WHITESPACE {
            return Seen::TooMuchWhitespace;
        }
        match chunk.get(blank) {
            None => Seen::Undecided,
            Some(b'[') => Seen::Batch,
            Some(_) => Seen::NotABatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(chunks: &[&[u8]]) -> Seen {
        let mut w = BatchWatch::default();
        let mut seen = Seen::Undecided;
        for chunk in chunks {
            let n = chunk.len().min(w.wants());
            seen = w.feed(&chunk[..n]);
            if seen != Seen::Undecided {
                break;
            }
        }
        seen
    }

    #[test]
    fn the_first_significant_byte_decides_wherever_it_is() {
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]"#;
        for pad in [0, 1, 63, 64, 65, 200, MAX_LEADING_WHITESPACE] {
            for blank in [b' ', b'\n', b'\t', b'\r'] {
                let mut body = vec![blank; pad];
                body.extend_from_slice(batch);
                assert_eq!(watch(&[&body]), Seen::Batch, "{pad} x {blank}");
                body[pad] = b'{';
                assert_eq!(watch(&[&body]), Seen::NotABatch, "{pad} x {blank}");
            }
        }
    }

    #[test]
    fn whitespace_split_over_chunks_keeps_the_watch() {
        assert_eq!(watch(&[b"   ", b"\n\n", b"", b"  [{}]"]), Seen::Batch);
        assert_eq!(watch(&[b"   ", b"\n\n"]), Seen::Undecided);
        assert_eq!(watch(&[b" ", b"{\"id\":1}"]), Seen::NotABatch);
    }

    #[test]
    fn too_much_whitespace_is_refused_not_passed() {
        let pad = vec![b'\t'; MAX_LEADING_WHITESPACE + 1];
        assert_eq!(watch(&[&pad, b"[]"]), Seen::TooMuchWhitespace);
        let half = vec![b' '; MAX_LEADING_WHITESPACE / 2 + 1];
        assert_eq!(watch(&[&half, &half, b"[]"]), Seen::TooMuchWhitespace);
        assert_eq!(
            watch(&[&pad[..4096.min(pad.len())]]),
            Seen::TooMuchWhitespace
        );
    }

    #[test]
    fn other_bytes_are_not_whitespace() {
        // JSON whitespace is four bytes; a form feed or NUL is not, and the
        // server's parser refuses it.
        assert_eq!(watch(&[b"\x0c[]"]), Seen::NotABatch);
        assert_eq!(watch(&[b"\0[]"]), Seen::NotABatch);
    }
}
