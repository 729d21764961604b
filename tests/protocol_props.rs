//! Property tests of both protocols, fed the way every connection feeds them: through
//! `conn::feed`, which keeps what the session did not consume in a pending buffer and feeds it
//! again with the next read. The input is cut into reads at arbitrary points.
//!
//! - **HTTP, arbitrary bytes** (random bytes mixed with pieces of requests, and now and then a
//!   field long enough to reach the head limit): never a panic; the same output and the same
//!   close whatever the cuts; what is left pending after a read stays under `MAX_HEADER_BYTES`;
//!   the output is a sequence of complete responses, at most one per 14 bytes of input (the
//!   shortest request) plus one; and the session closes exactly when its last answer says
//!   `Connection: close`, and no answer follows that one.
//! - **HTTP, request sequences** (GET, HEAD, POST, unknown methods; HTTP/1.1 and 1.0; random
//!   fields, names in any case, CRLF or LF; bodies by Content-Length, some past the body limit;
//!   `Connection: close` and `keep-alive`; some requests faulty: no Host, two, an invalid one,
//!   a bad Content-Length, chunked): one answer per request, in order, with the status the RFC
//!   asks for, none after the first that closes; a close exactly when the protocol says —
//!   `Connection: close`, HTTP/1.0 without keep-alive, or an error status other than 405 and
//!   the 501 for an unknown method — and `Connection: close` in exactly those answers.
//! - **Echo**: the output is the input, at any cut, and nothing is ever left pending.
//!
//! Each property runs 256 cases, a few seconds in all. A longer run, for the curious:
//!
//!     PROPTEST_CASES=100000 cargo test --release --test protocol_props
//!
//! A failing case is shrunk and saved under `tests/protocol_props.proptest-regressions`, and
//! tried first on every later run.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as Cases;

use server_models::server::conn::feed;
use server_models::server::model::Config;
use server_models::server::protocol::{MAX_HEADER_BYTES, Protocol};

/// Cases per property, unless `PROPTEST_CASES` asks for more (or fewer).
fn cases() -> Cases {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        Cases::default()
    } else {
        Cases::with_cases(256)
    }
}

/// The body limit of the sessions under test: small, so that bodies past it are common.
const MAX_BODY: u64 = 64;

/// The shortest request the server answers: `A * HTTP/1.0\n\n`.
const SHORTEST_REQUEST: usize = 14;

/// What a connection did with a stream cut into reads.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    /// Everything it wrote.
    out: Vec<u8>,
    /// Whether the session asked to close (after which nothing more is fed).
    closed: bool,
}

/// Feeds `input` to a fresh session of `protocol` in reads cut at `cuts` (positions, any order),
/// through `conn::feed`, checking after every read that the pending buffer is within its bound.
fn run(protocol: Protocol, input: &[u8], cuts: &[Index]) -> Result<Run, TestCaseError> {
    let config = Config {
        max_body: MAX_BODY,
        ..Config::default()
    };
    let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    ends.push(input.len());
    ends.sort_unstable();
    let mut session = protocol.session_for(&config);
    let mut pending = Vec::new();
    let mut out = Vec::new();
    let mut start = 0;
    for end in ends {
        let read = &input[start..end];
        start = end;
        let carried = pending.len();
        let closed = feed(&mut session, &mut pending, read, &mut out);
        // The bound on buffered input: under the head limit after every read, so never more
        // than the head limit plus one read while a read is being fed. Echo keeps nothing.
        let bound = match protocol {
            Protocol::Echo => 1,
            Protocol::Http => MAX_HEADER_BYTES,
        };
        prop_assert!(
            pending.len() < bound,
            "{} bytes pending after a read of {} (carried {carried})",
            pending.len(),
            read.len()
        );
        if closed {
            return Ok(Run { out, closed });
        }
    }
    Ok(Run { out, closed: false })
}

/// One response read back from the output.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    close: bool,
}

/// Splits `out` into responses. `head_only(i)` says whether the i-th answers a HEAD, and so has
/// no content; `None` when unknown, in which case content is expected unless the next response
/// starts right after the head (no body of ours starts with `HTTP/`).
fn responses(out: &[u8], head_only: impl Fn(usize) -> Option<bool>) -> Result<Vec<Answer>, String> {
    let mut answers = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut fields);
        let head = match response.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            other => {
                return Err(format!(
                    "not a response ({other:?}): {:?}",
                    String::from_utf8_lossy(rest)
                ));
            }
        };
        let field = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let length: usize = field("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .ok_or("a response without Content-Length")?;
        let close = field("connection") == Some(&b"close"[..]);
        let status = response.code.ok_or("no status")?;
        let after = &rest[head..];
        let skip_body = match head_only(answers.len()) {
            Some(head_only) => !head_only,
            None => !(after.is_empty() || after.starts_with(b"HTTP/")),
        };
        let body = if skip_body { length } else { 0 };
        if after.len() < body {
            return Err("a response cut short".into());
        }
        rest = &after[body..];
        answers.push(Answer { status, close });
    }
    Ok(answers)
}

/// Bytes that are mostly pieces of HTTP requests, so that parsing gets far, mixed with random
/// bytes, and now and then a field long enough to reach the head limit.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"GET / HTTP/1.1\r\n",
        b"HEAD / HTTP/1.1\r\n",
        b"POST /p HTTP/1.1\r\n",
        b"GET / HTTP/1.0\r\n",
        b"get / HTTP/1.1\r\n",
        b"GET / HTTP/1.2\r\n",
        b"GET / HTTP/2.0\r\n",
        b"GET http://a/ HTTP/1.1\n",
        b"Host: x\r\n",
        b"Host: [::1]:80\r\n",
        b"Connection: close\r\n",
        b"Connection: keep-alive\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 0\r\n",
        b"Content-Length: 65\r\n",
        b"Content-Length: +5\r\n",
        b"Content-Length: 5, 5\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Expect: 100-continue\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b":",
        b"\t",
        b"hello",
    ];
    let piece = prop_oneof![
        12 => prop::sample::select(pieces).prop_map(<[u8]>::to_vec),
        6 => prop::collection::vec(any::<u8>(), 0..16),
        // Most long fields end near the head limit, where a cut matters most.
        1 => prop_oneof![0usize..2_000, 15_500usize..17_000].prop_map(|n| {
            let mut field = b"X-Fill: ".to_vec();
            field.resize(field.len() + n, b'a');
            field
        }),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..12)
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Get,
    Head,
    Post,
    /// A token the server does not know: `get`, case and all.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// No Host (a fault in HTTP/1.1 only).
    NoHost,
    TwoHosts,
    BadHost,
    /// `Content-Length: +N`.
    SignedLength,
    /// `Transfer-Encoding: chunked`, which this server does not decode.
    Chunked,
}

/// One request of a generated sequence.
#[derive(Clone, Debug)]
struct Request {
    method: Method,
    target: &'static str,
    http10: bool,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// `X-…` fields.
    extra: Vec<(String, String)>,
    /// A body, announced by Content-Length.
    body: Option<Vec<u8>>,
    /// A bare LF ends every line instead of CRLF.
    lf: bool,
    /// The case of the field names: each bit upper-cases one letter.
    case: u32,
    fault: Fault,
}

/// `name` with some letters upper-cased and others lower-cased, as `mask` says.
fn in_case(name: &str, mask: u32) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask & (1 << (i % 32)) != 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

impl Request {
    fn bytes(&self) -> Vec<u8> {
        let eol = if self.lf { "\n" } else { "\r\n" };
        let method = match self.method {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Unknown => "get",
        };
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut head = format!("{method} {} {version}{eol}", self.target);
        let mut field = |name: &str, value: &str| {
            head.push_str(&format!("{}: {value}{eol}", in_case(name, self.case)));
        };
        match self.fault {
            Fault::NoHost => {}
            Fault::TwoHosts => {
                field("Host", "a.example");
                field("Host", "b.example");
            }
            Fault::BadHost => field("Host", "a b"),
            _ if self.http10 && self.case & 1 == 0 => {}
            _ => field("Host", "example.com:8080"),
        }
        for (name, value) in &self.extra {
            field(&format!("X-{name}"), value);
        }
        if self.close {
            field("Connection", "close");
        }
        if self.keep_alive {
            field("Connection", "keep-alive");
        }
        let mut body = Vec::new();
        match (self.fault, &self.body) {
            (Fault::Chunked, _) => {
                field("Transfer-Encoding", "chunked");
                body.extend_from_slice(b"0\r\n\r\n");
            }
            (Fault::SignedLength, Some(b)) => {
                field("Content-Length", &format!("+{}", b.len()));
                body.extend_from_slice(b);
            }
            (_, Some(b)) => {
                field("Content-Length", &b.len().to_string());
                body.extend_from_slice(b);
            }
            (_, None) => {}
        }
        head.push_str(eol);
        [head.into_bytes(), body].concat()
    }

    /// The answer the RFC asks for: status, and whether the connection closes after it.
    fn expected(&self) -> Answer {
        let refused = |status| Answer {
            status,
            close: true,
        };
        match self.fault {
            Fault::NoHost if !self.http10 => return refused(400),
            Fault::TwoHosts | Fault::BadHost => return refused(400),
            Fault::SignedLength if self.body.is_some() => return refused(400),
            Fault::Chunked if self.http10 => return refused(400),
            Fault::Chunked => return refused(501),
            _ => {}
        }
        if self
            .body
            .as_ref()
            .is_some_and(|b| b.len() as u64 > MAX_BODY)
        {
            return refused(413);
        }
        let status = match self.method {
            Method::Get | Method::Head => 200,
            Method::Post => 405,
            Method::Unknown => 501,
        };
        Answer {
            status,
            close: self.close || (self.http10 && !self.keep_alive),
        }
    }
}

fn request() -> impl Strategy<Value = Request> {
    let method = prop_oneof![
        4 => Just(Method::Get),
        2 => Just(Method::Head),
        1 => Just(Method::Post),
        1 => Just(Method::Unknown),
    ];
    let target = prop::sample::select(vec!["/", "/a/b?c=d", "http://example.com/x", "*"]);
    let fault = prop_oneof![
        20 => Just(Fault::None),
        1 => Just(Fault::NoHost),
        1 => Just(Fault::TwoHosts),
        1 => Just(Fault::BadHost),
        1 => Just(Fault::SignedLength),
        1 => Just(Fault::Chunked),
    ];
    let extra = prop::collection::vec(("[A-Za-z0-9-]{1,12}", "[ -~]{0,30}"), 0..4);
    let body = prop::option::weighted(0.4, prop::collection::vec(any::<u8>(), 0..80));
    (
        (
            method,
            target,
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.15),
        ),
        (prop::bool::ANY, extra, body, prop::bool::weighted(0.2)),
        (any::<u32>(), fault),
    )
        .prop_map(
            |((method, target, http10, close), (keep_alive, extra, body, lf), (case, fault))| {
                Request {
                    method,
                    target,
                    http10,
                    close,
                    keep_alive,
                    extra,
                    body,
                    lf,
                    case,
                    fault,
                }
            },
        )
}

proptest! {
    #![proptest_config(cases())]

    /// Arbitrary bytes: no panic, the same replies and close at any cut, buffered input and
    /// output bounded, and a close exactly after an answer that says so.
    #[test]
    fn http_takes_any_bytes(input in http_ish(), cuts in cuts()) {
        let whole = run(Protocol::Http, &input, &[])?;
        let cut = run(Protocol::Http, &input, &cuts)?;
        prop_assert_eq!(&cut, &whole, "the cuts changed the replies");
        let answers = responses(&whole.out, |_| None).map_err(TestCaseError::fail)?;
        prop_assert!(
            answers.len() <= input.len() / SHORTEST_REQUEST + 1,
            "{} answers to {} bytes", answers.len(), input.len()
        );
        let closing = answers.iter().position(|a| a.close);
        prop_assert_eq!(closing.is_some(), whole.closed, "a close without saying so, or the reverse");
        if let Some(i) = closing {
            prop_assert_eq!(i + 1, answers.len(), "an answer after the one that closes");
        }
    }

    /// Request sequences: one answer per request, in order, with the status the RFC asks for;
    /// none after the first that closes; a close exactly when the protocol says; and the same
    /// bytes at any cut.
    #[test]
    fn http_answers_each_request_in_order(
        requests in prop::collection::vec(request(), 1..8),
        cuts in cuts(),
    ) {
        let input: Vec<u8> = requests.iter().flat_map(Request::bytes).collect();
        let whole = run(Protocol::Http, &input, &[])?;
        let cut = run(Protocol::Http, &input, &cuts)?;
        prop_assert_eq!(&cut, &whole, "the cuts changed the replies");
        let mut expected: Vec<Answer> = Vec::new();
        for r in &requests {
            let answer = r.expected();
            let close = answer.close;
            expected.push(answer);
            if close {
                break;
            }
        }
        let head_only = |i: usize| requests.get(i).map(|r| matches!(r.method, Method::Head));
        let answers = responses(&whole.out, head_only).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&answers, &expected);
        prop_assert_eq!(whole.closed, expected.last().is_some_and(|a| a.close));
    }

    /// The head limit is exact and does not depend on the cuts: a head of up to
    /// `MAX_HEADER_BYTES` is served; a longer one gets 431, or 414 when the request line
    /// alone does not fit.
    #[test]
    fn http_head_limit_is_exact(
        target in 0usize..200,
        filler in (MAX_HEADER_BYTES - 300)..(MAX_HEADER_BYTES + 300),
        long_target in prop::bool::weighted(0.3),
        cuts in cuts(),
    ) {
        let (target, filler) = if long_target { (filler, target) } else { (target, filler) };
        let line = format!("GET /{} HTTP/1.1\r\n", "t".repeat(target));
        let head = format!("{line}Host: x\r\nX-Fill: {}\r\n\r\n", "f".repeat(filler));
        let input = [head.as_bytes(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        let whole = run(Protocol::Http, &input, &[])?;
        let cut = run(Protocol::Http, &input, &cuts)?;
        prop_assert_eq!(&cut, &whole, "the cuts changed the replies");
        let answers = responses(&whole.out, |_| Some(false)).map_err(TestCaseError::fail)?;
        let expected = if head.len() <= MAX_HEADER_BYTES {
            vec![Answer { status: 200, close: false }, Answer { status: 200, close: false }]
        } else if line.len() <= MAX_HEADER_BYTES {
            vec![Answer { status: 431, close: true }]
        } else {
            vec![Answer { status: 414, close: true }]
        };
        prop_assert_eq!(answers, expected, "head of {} bytes, request line {}", head.len(), line.len());
    }

    /// Echo: the output is the input, whatever the cuts; it never closes and keeps nothing.
    #[test]
    fn echo_returns_every_byte(input in prop::collection::vec(any::<u8>(), 0..4096), cuts in cuts()) {
        let cut = run(Protocol::Echo, &input, &cuts)?;
        prop_assert_eq!(cut, Run { out: input, closed: false });
    }
}
