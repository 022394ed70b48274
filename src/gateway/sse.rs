//! Incremental Server-Sent Events splitting.
//!
//! Upstream bytes arrive split at arbitrary boundaries; [`SseSplitter`] yields
//! each complete event (up to and including its blank-line terminator) as a
//! zero-copy slice, plus the event's `data` payload.

use bytes::{Bytes, BytesMut};

/// One complete SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The raw event bytes, terminator included: can be forwarded as is.
    pub raw: Bytes,
    /// The `data` field (multi-line data joined with '\n'); None for comment-only events.
    pub data: Option<Bytes>,
    /// The `event` field, if any.
    pub event: Option<Bytes>,
}

/// Splits a byte stream into SSE events.
#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already scanned for a terminator.
    scanned: usize,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from upstream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes held that do not yet form a complete event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let end = self.find_terminator()?;
        self.scanned = 0;
        let raw = self.buf.split_to(end).freeze();
        let (data, event) = parse_fields(&raw);
        Some(SseEvent { raw, data, event })
    }

    /// Finds the end (exclusive) of the first event: after "\n\n", "\r\n\r\n" or "\r\r".
    fn find_terminator(&mut self) -> Option<usize> {
        let buf = &self.buf[..];
        // Resume one byte early: a terminator may straddle the previous scan end.
        let start = self.scanned.saturating_sub(3);
        let mut i = start;
        while let Some(off) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
            let p = i + off;
            let rest = &buf[p..];
            if rest.starts_with(b"\n\n") {
                return Some(p + 2);
            }
            if rest.starts_with(b"\r\n\r\n") {
                return Some(p + 4);
            }
            if rest.starts_with(b"\r\r") {
                return Some(p + 2);
            }
            i = p + 1;
        }
        self.scanned = buf.len();
        None
    }
}

fn parse_fields(raw: &Bytes) -> (Option<Bytes>, Option<Bytes>) {
    let mut data: Option<Bytes> = None;
    let mut joined: Option<Vec<u8>> = None;
    let mut event = None;
    let mut pos = 0;
    while pos < raw.len() {
        let line_end = memchr::memchr2(b'\n', b'\r', &raw[pos..]).map_or(raw.len(), |o| pos + o);
        let line = &raw[pos..line_end];
        let (field, value) = match memchr::memchr(b':', line) {
            Some(0) => (&line[..0], None), // comment
            Some(c) => {
                let v = &line[c + 1..];
                let v = v.strip_prefix(b" ").unwrap_or(v);
                (&line[..c], Some(v))
            }
            None => (line, Some(&line[line.len()..])),
        };
        if let Some(v) = value {
            let start = v.as_ptr() as usize - raw.as_ptr() as usize;
            let slice = raw.slice(start..start + v.len());
            match field {
                b"data" => match (&mut joined, &data) {
                    (Some(j), _) => {
                        j.push(b'\n');
                        j.extend_from_slice(&slice);
                    }
                    (None, Some(first)) => {
                        let mut j = first.to_vec();
                        j.push(b'\n');
                        j.extend_from_slice(&slice);
                        joined = Some(j);
                    }
                    (None, None) => data = Some(slice),
                },
                b"event" => event = Some(slice),
                _ => {}
            }
        }
        // Skip the line terminator (\r\n counts as one).
        pos = line_end;
        if raw.get(pos) == Some(&b'\r') {
            pos += 1;
        }
        if raw.get(pos) == Some(&b'\n') {
            pos += 1;
        }
    }
    (joined.map(Bytes::from).or(data), event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(splitter: &mut SseSplitter) -> Vec<SseEvent> {
        std::iter::from_fn(|| splitter.next_event()).collect()
    }

    const STREAM: &[u8] =
        b"data: {\"a\":1}\n\n: keep-alive\n\nevent: x\ndata: line1\ndata: line2\n\ndata:[DONE]\r\n\r\n";

    type Fields = (Option<&'static [u8]>, Option<&'static [u8]>);

    fn expected() -> Vec<Fields> {
        vec![
            (Some(&b"{\"a\":1}"[..]), None),
            (None, None),
            (Some(&b"line1\nline2"[..]), Some(&b"x"[..])),
            (Some(&b"[DONE]"[..]), None),
        ]
    }

    #[test]
    fn whole_stream() {
        let mut s = SseSplitter::new();
        s.push(STREAM);
        let evs = all(&mut s);
        let got: Vec<_> = evs
            .iter()
            .map(|e| (e.data.as_deref(), e.event.as_deref()))
            .collect();
        assert_eq!(got, expected());
        let raw: Vec<u8> = evs.iter().flat_map(|e| e.raw.to_vec()).collect();
        assert_eq!(raw, STREAM, "raw slices reassemble the stream");
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn every_split_point_gives_same_events() {
        for a in 0..STREAM.len() {
            for b in a..STREAM.len() {
                let mut s = SseSplitter::new();
                let mut evs = Vec::new();
                for part in [&STREAM[..a], &STREAM[a..b], &STREAM[b..]] {
                    s.push(part);
                    evs.extend(all(&mut s));
                }
                let got: Vec<_> = evs
                    .iter()
                    .map(|e| (e.data.as_deref(), e.event.as_deref()))
                    .collect();
                assert_eq!(got, expected(), "split at {a},{b}");
            }
        }
    }
}
