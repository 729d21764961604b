//! Reading one reply and judging it, sans-IO: bytes in, a verdict out.
//!
//! - Echo: the reply must be the request, byte for byte. Bytes are compared against the request
//!   as they arrive, so a connection keeps only a count, never a copy of the message.
//! - HTTP: the head is parsed with httparse, the status must be 2xx, the body is framed by
//!   `Content-Length` (the only framing the workbook's servers use) and skipped. A head split
//!   across reads is the only case that keeps bytes, and only until it is complete.
//!
//! With pipelining, one read can hold the end of one reply and the start of the next:
//! [`Reply::feed`] says how many bytes the reply took, and the caller hands the rest to the
//! next one, so the replies are judged one after another in the order the requests went out.

use crate::server::protocol::Protocol;

/// The longest response head accepted; past it the reply is counted as a mismatch.
const MAX_HEAD: usize = 16 * 1024;

/// Headers parsed per response.
const MAX_HEADERS: usize = 32;

/// What the bytes read so far come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyCheck {
    /// The reply is not complete yet: read more.
    Incomplete,
    /// The reply is complete and right; `close` if the server said it will close.
    Complete {
        /// The response carried `Connection: close`.
        close: bool,
    },
    /// The reply is wrong: a different byte, a bad status, bytes nobody asked for.
    Mismatch,
}

/// The reply in progress on one connection.
#[derive(Debug, Default)]
pub struct Reply {
    /// Echo: bytes of the reply received so far.
    got: usize,
    /// HTTP: an incomplete head carried over from an earlier read.
    head: Vec<u8>,
    /// HTTP: the head is complete; `body_left` bytes of body are still to come.
    in_body: bool,
    body_left: usize,
    close: bool,
}

impl Reply {
    /// Forgets the reply in progress, ready for the next request. Keeps a small head buffer.
    pub fn reset(&mut self) {
        self.got = 0;
        self.head.clear();
        if self.head.capacity() > 4096 {
            self.head = Vec::new();
        }
        self.in_body = false;
        self.body_left = 0;
        self.close = false;
    }

    /// Takes the next bytes read from the connection, `input`, for this reply to `expected`
    /// (the request, for echo; ignored for HTTP). Returns the verdict and how many bytes of
    /// `input` the reply took: on `Complete`, the bytes after them belong to the next reply.
    pub fn feed(
        &mut self,
        protocol: Protocol,
        input: &[u8],
        expected: &[u8],
    ) -> (ReplyCheck, usize) {
        match protocol {
            Protocol::Echo => self.echo(input, expected),
            Protocol::Http => self.http(input),
        }
    }

    /// Echo: checks `input`, the next bytes of the reply, against `expected`, the request.
    /// Bytes past the end of the reply are a mismatch (nothing else was asked for).
    pub fn feed_echo(&mut self, input: &[u8], expected: &[u8]) -> ReplyCheck {
        alone(self.echo(input, expected), input.len())
    }

    /// HTTP: takes `input`, the next bytes of the response. Bytes past the end of the response
    /// are a mismatch (nothing else was asked for).
    pub fn feed_http(&mut self, input: &[u8]) -> ReplyCheck {
        alone(self.http(input), input.len())
    }

    fn echo(&mut self, input: &[u8], expected: &[u8]) -> (ReplyCheck, usize) {
        let take = input.len().min(expected.len().saturating_sub(self.got));
        let end = self.got + take;
        if input[..take] != expected[self.got..end] || (take == 0 && !input.is_empty()) {
            return (ReplyCheck::Mismatch, take);
        }
        self.got = end;
        if end == expected.len() {
            (ReplyCheck::Complete { close: false }, take)
        } else {
            (ReplyCheck::Incomplete, take)
        }
    }

    fn http(&mut self, input: &[u8]) -> (ReplyCheck, usize) {
        if self.in_body {
            return self.body(input.len());
        }
        // The common case: the whole head arrives in one read, parsed where it lies.
        let carried = self.head.len();
        let parsed = if carried == 0 {
            parse_head(input)
        } else {
            self.head.extend_from_slice(input);
            parse_head(&self.head)
        };
        match parsed {
            ResponseHead::Partial => {
                if carried == 0 {
                    self.head.extend_from_slice(input);
                }
                if self.head.len() > MAX_HEAD {
                    (ReplyCheck::Mismatch, input.len())
                } else {
                    (ReplyCheck::Incomplete, input.len())
                }
            }
            ResponseHead::Bad => (ReplyCheck::Mismatch, input.len()),
            ResponseHead::Complete { len, body, close } => {
                // The head's bytes that came in this read; what follows is body, or the next
                // response.
                let head_here = len - carried;
                self.head.clear();
                self.in_body = true;
                self.body_left = body;
                self.close = close;
                let (verdict, took) = self.body(input.len() - head_here);
                (verdict, head_here + took)
            }
        }
    }

    /// Takes up to `n` bytes of body; says how many it took.
    fn body(&mut self, n: usize) -> (ReplyCheck, usize) {
        let take = n.min(self.body_left);
        self.body_left -= take;
        if self.body_left == 0 {
            (ReplyCheck::Complete { close: self.close }, take)
        } else {
            (ReplyCheck::Incomplete, take)
        }
    }
}

/// The verdict on a read that must hold this one reply and nothing more: bytes left over were
/// never asked for.
fn alone((verdict, took): (ReplyCheck, usize), len: usize) -> ReplyCheck {
    match verdict {
        ReplyCheck::Complete { .. } if took < len => ReplyCheck::Mismatch,
        v => v,
    }
}

enum ResponseHead {
    Partial,
    Bad,
    Complete {
        len: usize,
        body: usize,
        close: bool,
    },
}

fn parse_head(bytes: &[u8]) -> ResponseHead {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return ResponseHead::Partial,
        Err(_) => return ResponseHead::Bad,
    };
    if !matches!(resp.code, Some(200..=299)) {
        return ResponseHead::Bad;
    }
    let mut body = None;
    let mut close = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            if body.is_none() {
                return ResponseHead::Bad;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    // Without Content-Length the body would run to the close (or be chunked): the workbook's
    // servers never answer so, and a reply that cannot be framed cannot be counted.
    match body {
        Some(body) => ResponseHead::Complete { len, body, close },
        None => ResponseHead::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";

    /// Feeds `input` cut at `cut`, returning both verdicts.
    fn http_in_two(input: &[u8], cut: usize) -> (ReplyCheck, ReplyCheck) {
        let mut r = Reply::default();
        let first = r.feed_http(&input[..cut]);
        let second = r.feed_http(&input[cut..]);
        (first, second)
    }

    /// An echo reply is complete once every byte came back, whatever the pieces.
    #[test]
    fn echo_complete_in_pieces_and_mismatch_on_any_wrong_byte() {
        let msg: Vec<u8> = (0..100u8).collect();
        for cut in 1..msg.len() {
            let mut r = Reply::default();
            assert_eq!(r.feed_echo(&msg[..cut], &msg), ReplyCheck::Incomplete);
            assert_eq!(
                r.feed_echo(&msg[cut..], &msg),
                ReplyCheck::Complete { close: false }
            );
        }
        for i in 0..msg.len() {
            let mut bad = msg.clone();
            bad[i] ^= 1;
            assert_eq!(
                Reply::default().feed_echo(&bad, &msg),
                ReplyCheck::Mismatch,
                "byte {i}"
            );
        }
        let long = [&msg[..], b"x"].concat();
        assert_eq!(
            Reply::default().feed_echo(&long, &msg),
            ReplyCheck::Mismatch,
            "one byte too many"
        );
    }

    /// A response is complete when its body is, at every split, and not before.
    #[test]
    fn http_complete_at_every_split() {
        for cut in 1..OK.len() {
            assert_eq!(
                http_in_two(OK, cut),
                (
                    ReplyCheck::Incomplete,
                    ReplyCheck::Complete { close: false }
                ),
                "cut at {cut}"
            );
        }
    }

    /// Errors, unframed bodies and surplus bytes are mismatches; Connection: close is noticed.
    #[test]
    fn http_mismatches_and_close() {
        let cases: [(&[u8], ReplyCheck); 5] = [
            (
                b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
                ReplyCheck::Mismatch,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nHello", ReplyCheck::Mismatch),
            (b"garbage\r\n\r\n", ReplyCheck::Mismatch),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc",
                ReplyCheck::Mismatch,
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nab",
                ReplyCheck::Complete { close: true },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Reply::default().feed_http(input),
                want,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let mut r = Reply::default();
        assert_eq!(r.feed_http(&OK[..10]), ReplyCheck::Incomplete);
        r.reset();
        assert_eq!(
            r.feed_http(OK),
            ReplyCheck::Complete { close: false },
            "reset forgets the partial head"
        );
    }

    /// Pipelined replies arrive back to back: `feed` takes exactly one reply's bytes and leaves
    /// the rest for the next, whatever the reads' boundaries, for echo and for HTTP.
    #[test]
    fn pipelined_replies_split_at_every_boundary() {
        let one: Vec<u8> = (0..10u8).collect();
        let two: Vec<u8> = (10..20u8).collect();
        let stream = [&one[..], &two[..]].concat();
        for cut in 0..=stream.len() {
            let mut r = Reply::default();
            let mut done = Vec::new();
            let mut expected = [&one, &two].into_iter();
            let mut want = expected.next();
            for mut chunk in [&stream[..cut], &stream[cut..]] {
                while !chunk.is_empty() {
                    let exp = want.expect("no reply left to expect");
                    let (v, took) = r.feed(Protocol::Echo, chunk, exp);
                    chunk = &chunk[took..];
                    match v {
                        ReplyCheck::Complete { .. } => {
                            done.push(took);
                            r.reset();
                            want = expected.next();
                        }
                        ReplyCheck::Incomplete => assert!(chunk.is_empty()),
                        ReplyCheck::Mismatch => panic!("mismatch at cut {cut}"),
                    }
                }
            }
            assert_eq!(done.len(), 2, "cut at {cut}");
        }
        // Swapped replies: the first bytes are the second request's.
        let (v, _) = Reply::default().feed(Protocol::Echo, &two, &one);
        assert_eq!(v, ReplyCheck::Mismatch);

        let three = [OK, OK, OK].concat();
        for cut in 0..=three.len() {
            let mut r = Reply::default();
            let mut complete = 0;
            for mut chunk in [&three[..cut], &three[cut..]] {
                while !chunk.is_empty() {
                    let (v, took) = r.feed(Protocol::Http, chunk, &[]);
                    chunk = &chunk[took..];
                    match v {
                        ReplyCheck::Complete { close } => {
                            assert!(!close);
                            assert!(took > 0);
                            complete += 1;
                            r.reset();
                        }
                        ReplyCheck::Incomplete => assert!(chunk.is_empty(), "cut {cut}"),
                        ReplyCheck::Mismatch => panic!("mismatch at cut {cut}"),
                    }
                }
            }
            assert_eq!(complete, 3, "cut at {cut}");
        }
        // Alone, the same bytes are surplus: one response was asked for.
        assert_eq!(Reply::default().feed_http(&three), ReplyCheck::Mismatch);
    }
}
