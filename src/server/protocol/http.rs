//! A minimal HTTP/1.1 server: keep-alive, pipelining, `Content-Length` bodies skipped, every
//! `GET` answered `200` with a fixed body — enough for wrk to drive every model, and for nginx and
//! the C reference server to stand beside them answering the same bytes.
//!
//! Parsing is httparse's; this file decides what to answer and when to close.

use super::{Progress, Session};

/// A request head larger than this is answered `431` and the connection closed. It also bounds
/// what a connection buffers while a request head is incomplete.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Headers parsed per request; more is answered `431`.
const MAX_HEADERS: usize = 64;

/// The answer to every GET: the same bytes as the C reference server, so that byte counts and
/// wrk's figures compare like for like.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";
const OK_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, world!";
/// HTTP/1.0 clients keep the connection only if the answer says so.
const OK_KEEP_ALIVE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world!";
const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n";
const NOT_IMPLEMENTED: &[u8] = b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n";
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n";
const METHOD_NOT_ALLOWED: &[u8] = b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 19\r\n\r\nMethod Not Allowed\n";

/// One HTTP connection's state: only how much of a request body is still to be skipped.
#[derive(Clone, Debug, Default)]
pub struct Http {
    /// Body bytes of the last request still to discard before the next request starts.
    skip: u64,
}

/// What the head of one request asks for.
struct RequestHead {
    len: usize,
    method_ok: bool,
    head_only: bool,
    keep_alive: bool,
    http10: bool,
    body: u64,
}

enum Parsed {
    Complete(RequestHead),
    Partial,
    /// Answer with this and close.
    Reject(&'static [u8]),
}

impl Session for Http {
    fn head_timed_out(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(REQUEST_TIMEOUT);
    }

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min((input.len() - pos) as u64);
                self.skip -= n;
                pos += n as usize;
                if self.skip > 0 {
                    return Progress {
                        consumed: pos,
                        close: false,
                    };
                }
            }
            if pos == input.len() {
                return Progress {
                    consumed: pos,
                    close: false,
                };
            }
            match parse(&input[pos..]) {
                Parsed::Partial => {
                    return Progress {
                        consumed: pos,
                        close: false,
                    };
                }
                Parsed::Reject(answer) => {
                    out.extend_from_slice(answer);
                    return Progress {
                        consumed: input.len(),
                        close: true,
                    };
                }
                Parsed::Complete(head) => {
                    pos += head.len;
                    self.skip = head.body;
                    let answer = match (head.method_ok, head.head_only, head.keep_alive) {
                        (false, _, _) => METHOD_NOT_ALLOWED,
                        (true, true, _) => OK_HEAD,
                        (true, false, false) => OK_CLOSE,
                        (true, false, true) if head.http10 => OK_KEEP_ALIVE,
                        (true, false, true) => OK,
                    };
                    out.extend_from_slice(answer);
                    if !head.keep_alive {
                        return Progress {
                            consumed: input.len(),
                            close: true,
                        };
                    }
                }
            }
        }
    }
}

fn parse(input: &[u8]) -> Parsed {
    // Uninitialised slots: httparse writes only the headers it finds, so the common request
    // does not pay for clearing all 64 (2 KiB) first.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(input, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() > MAX_HEADER_BYTES => {
            return Parsed::Reject(TOO_LARGE);
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Reject(TOO_LARGE),
        Err(_) => return Parsed::Reject(BAD_REQUEST),
    };
    if len > MAX_HEADER_BYTES {
        return Parsed::Reject(TOO_LARGE);
    }
    let http10 = req.version == Some(0);
    let mut keep_alive = !http10;
    let mut body = 0u64;
    let mut saw_length = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            else {
                return Parsed::Reject(BAD_REQUEST);
            };
            // Two different lengths is a request-smuggling shape: refuse it (RFC 9112 §6.3).
            if saw_length && n != body {
                return Parsed::Reject(BAD_REQUEST);
            }
            saw_length = true;
            body = n;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are not part of this minimal server; say so rather than misframe.
            return Parsed::Reject(NOT_IMPLEMENTED);
        }
    }
    let method = req.method.unwrap_or("");
    Parsed::Complete(RequestHead {
        len,
        method_ok: method == "GET" || method == "HEAD",
        head_only: method == "HEAD",
        keep_alive,
        http10,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::protocol::testing::feed_in_pieces;

    fn answers(input: &[u8]) -> (Vec<u8>, bool) {
        feed_in_pieces(&mut Http::default(), input, &[])
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// A GET gets the fixed 200 and the connection stays open.
    /// A head that never completes: the session is consumed nothing of it, and the deadline's
    /// answer is a complete 408 response that announces the close.
    #[test]
    fn incomplete_head_then_deadline_gets_408() {
        let mut session = Http::default();
        let mut out = Vec::new();
        let p = session.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a", &mut out);
        assert_eq!((p.consumed, p.close, out.len()), (0, false, 0));
        session.head_timed_out(&mut out);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }

    #[test]
    fn get_is_answered_and_kept_alive() {
        assert_eq!(answers(GET), (OK.to_vec(), false));
    }

    /// Three pipelined requests, cut at every byte, get three answers in order, and nothing
    /// is answered before its request is complete.
    #[test]
    fn pipelined_requests_at_every_split() {
        let input = [
            GET,
            GET,
            b"GET /x HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n",
        ]
        .concat();
        let mut expected = [OK, OK].concat();
        expected.extend_from_slice(OK_CLOSE);
        for a in 0..=input.len() {
            for b in [a, (a + 7).min(input.len()), input.len()] {
                let (out, closed) = feed_in_pieces(&mut Http::default(), &input, &[a, b]);
                assert_eq!(out, expected, "cuts at {a} and {b}");
                assert!(closed, "Connection: close honoured (cuts {a}, {b})");
            }
        }
        let (out, _) = answers(&input[..GET.len() - 1]);
        assert!(out.is_empty(), "an incomplete request is not answered");
    }

    /// HTTP/1.0 closes unless it asks to keep alive, and then the answer says keep-alive.
    #[test]
    fn http10_closes_unless_keep_alive() {
        assert_eq!(
            answers(b"GET / HTTP/1.0\r\n\r\n"),
            (OK_CLOSE.to_vec(), true)
        );
        assert_eq!(
            answers(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            (OK_KEEP_ALIVE.to_vec(), false)
        );
    }

    /// Malformed input gets a 400 and a close, whatever comes after it.
    #[test]
    fn malformed_request_gets_400_and_close() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/9.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
            b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
        ] {
            let (out, closed) = answers(&[bad, GET].concat());
            assert_eq!(out, BAD_REQUEST, "input {:?}", String::from_utf8_lossy(bad));
            assert!(closed);
        }
    }

    /// A request head over 16 KiB gets 431 and a close, whether it is complete or still coming.
    #[test]
    fn oversized_headers_get_431() {
        let big = format!(
            "GET / HTTP/1.1\r\nX-Big: {}\r\n",
            "a".repeat(MAX_HEADER_BYTES)
        );
        let (out, closed) = answers(big.as_bytes());
        assert_eq!(
            (out.as_slice(), closed),
            (TOO_LARGE, true),
            "incomplete head"
        );
        let complete = format!("{big}\r\n");
        assert_eq!(
            answers(complete.as_bytes()),
            (TOO_LARGE.to_vec(), true),
            "complete head"
        );
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            answers(req.as_bytes()),
            (TOO_LARGE.to_vec(), true),
            "too many headers"
        );
    }

    /// A body announced by Content-Length is skipped, even when it arrives in pieces.
    #[test]
    fn content_length_body_is_skipped() {
        let input = [
            &b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"[..],
            GET,
        ]
        .concat();
        let expected = [METHOD_NOT_ALLOWED, OK].concat();
        for cut in 0..=input.len() {
            let (out, closed) = feed_in_pieces(&mut Http::default(), &input, &[cut]);
            assert_eq!(out, expected, "cut at {cut}");
            assert!(!closed);
        }
    }

    /// HEAD gets the head only; chunked bodies are refused with 501 rather than misread.
    #[test]
    fn head_and_chunked() {
        assert_eq!(
            answers(b"HEAD / HTTP/1.1\r\n\r\n"),
            (OK_HEAD.to_vec(), false)
        );
        let chunked =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(answers(chunked), (NOT_IMPLEMENTED.to_vec(), true));
    }

    /// Many pipelined requests in one read are each answered: wrk's pipelining script sends 16.
    #[test]
    fn sixteen_pipelined_in_one_feed() {
        let input = GET.repeat(16);
        let (out, closed) = answers(&input);
        assert_eq!(count(&out, b"HTTP/1.1 200 OK"), 16);
        assert!(!closed);
    }
}
