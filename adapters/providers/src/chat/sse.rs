//! A small server-sent events parser (the WHATWG event-stream format) fed with the chunks of a
//! byte stream as they arrive.
//!
//! Chunks split lines and even UTF-8 characters anywhere, so bytes are buffered up to each line
//! end before they are decoded. Lines end with `\n` or `\r\n` (a lone `\r` is not a line end
//! here: no provider sends it, and supporting it would need a look-ahead across chunks).

use std::time::Duration;

use llxprt_application::ports::ChatError;
use tokio::time::Instant;

/// The longest line or event accepted: a bound on what a misbehaving server can make us buffer.
const MAX_BUFFERED_BYTES: usize = 16 * 1024 * 1024;

/// The most one streamed answer may bring in all. A real reply, even at a model's longest
/// output with every event's JSON around each piece, stays far below it.
pub(crate) const MAX_STREAM_BYTES: usize = 64 << 20;

/// How long a stream may go on without one event carrying data. Keep-alive comments reset the
/// read timeout but are no progress: a server sending only those would hold the request open
/// forever.
pub(crate) const MAX_STREAM_SILENCE: Duration = Duration::from_secs(180);

/// What bounds one streamed answer: its size, and the time it may go without progress.
#[derive(Debug)]
pub(crate) struct StreamBounds {
    max_bytes: usize,
    max_silence: Duration,
    received: usize,
    last_progress: Instant,
}

impl Default for StreamBounds {
    fn default() -> Self {
        Self::new(MAX_STREAM_BYTES, MAX_STREAM_SILENCE)
    }
}

impl StreamBounds {
    pub(crate) fn new(max_bytes: usize, max_silence: Duration) -> Self {
        Self {
            max_bytes,
            max_silence,
            received: 0,
            last_progress: Instant::now(),
        }
    }

    /// Counts a chunk of `len` bytes that completed `events`; an error once the stream is over
    /// its size or has gone too long with no event carrying data.
    pub(crate) fn check(&mut self, len: usize, events: &[SseEvent]) -> Result<(), ChatError> {
        self.received = self.received.saturating_add(len);
        if self.received > self.max_bytes {
            return Err(ChatError::Network(format!(
                "the reply was cut short: the stream went over {} MiB, more than any real reply",
                self.max_bytes >> 20
            )));
        }
        if events.iter().any(|e| !e.data.is_empty()) {
            self.last_progress = Instant::now();
        } else if self.last_progress.elapsed() > self.max_silence {
            return Err(ChatError::Network(format!(
                "the reply was cut short: the stream sent nothing but keep-alives for over {} s",
                self.max_silence.as_secs()
            )));
        }
        Ok(())
    }
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, empty when the server gave none.
    pub(crate) event: String,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// The stream sent a line or event longer than [`MAX_BUFFERED_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event stream sent an event larger than {MAX_BUFFERED_BYTES} bytes")]
pub(crate) struct EventTooLarge;

/// Turns chunks of bytes into events.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds the next chunk and returns the events it completed, in order. An event still
    /// open when the stream ends is discarded, as the format requires.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        let mut events = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(event) = self.take_line(&String::from_utf8_lossy(&line))? {
                events.push(event);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_BUFFERED_BYTES {
            return Err(EventTooLarge);
        }
        Ok(events)
    }

    fn take_line(&mut self, line: &str) -> Result<Option<SseEvent>, EventTooLarge> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > MAX_BUFFERED_BYTES {
                    return Err(EventTooLarge);
                }
            }
            // `id`, `retry` and unknown fields do not matter to a one-shot request.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        // An event without data is not dispatched.
        std::mem::replace(&mut self.has_data, false).then_some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        chunks
            .iter()
            .flat_map(|c| parser.feed(c).unwrap())
            .collect()
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn reads_named_events_multi_line_data_and_skips_comments() {
        let stream = b": keep-alive\n\nevent: response.output_text.delta\ndata: {\"delta\":\"Hi\"}\n\ndata:a\ndata: b\r\n\r\nid: 7\nretry: 10\n\nevent: tail\ndata: never finished";
        assert_eq!(
            parse_all(&[stream]),
            vec![
                ev("response.output_text.delta", "{\"delta\":\"Hi\"}"),
                ev("", "a\nb"),
            ]
        );
    }

    #[test]
    fn a_character_split_across_chunks_survives() {
        let text = "data: héllo\n\n".as_bytes();
        let split = text.iter().position(|&b| b == 0xC3).unwrap() + 1;
        assert_eq!(
            parse_all(&[&text[..split], &text[split..]]),
            vec![ev("", "héllo")]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::default();
        let chunk = vec![b'x'; 1024 * 1024];
        let result = (0..17).try_for_each(|_| parser.feed(&chunk).map(drop));
        assert_eq!(result, Err(EventTooLarge));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(chunks in proptest::collection::vec(any::<Vec<u8>>(), 0..8)) {
            let mut parser = SseParser::default();
            for chunk in &chunks {
                prop_assert!(parser.feed(chunk).is_ok());
            }
        }

        #[test]
        fn events_do_not_depend_on_how_the_stream_is_chunked(
            stream in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'd'), Just(b'a'),
                    Just(b't'), Just(b'e'), Just(b'v'), Just(b'n'), any::<u8>()],
                0..200,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let whole = parse_all(&[&stream]);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&stream[start..p]);
                start = p;
            }
            chunks.push(&stream[start..]);
            prop_assert_eq!(parse_all(&chunks), whole);
        }
    }
}
