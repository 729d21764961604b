//! A minimal HTTP/1.1 origin server: keep-alive, pipelining, `Content-Length` bodies skipped, every
//! `GET` answered `200` with a fixed body — enough for wrk to drive every model, and for nginx and
//! the C reference server to stand beside them answering the same bytes.
//!
//! Minimal, but not lenient: where RFC 9112 (HTTP/1.1) and RFC 9110 (HTTP semantics) say what a
//! server MUST do with a request, this one does it. A parser that reads a request one way in front
//! of a server that reads it another is how requests are smuggled (请求走私), so a request whose
//! framing is in any doubt is refused with an error status and the connection closed, never
//! guessed at.
//!
//! Parsing is httparse's. It already refuses, with an error this file turns into `400`: bare CR,
//! whitespace between a field name and its colon, obs-fold (a field line starting with
//! whitespace), whitespace before the first field line, CTL and NUL bytes in field values, more
//! than one SP between the parts of the request line, and any version but `HTTP/1.0` and
//! `HTTP/1.1` (which `other_version` looks at again). It accepts a bare LF as a line end, as
//! RFC 9112 §2.2 allows. Everything else — Host, the framing fields, the body limit, methods,
//! persistence — is decided here.
//!
//! ## The server's MUSTs
//!
//! Every requirement RFC 9112 and RFC 9110 put on an origin server receiving HTTP/1.1 requests,
//! what this server does, and the unit test below that checks it. Every error answer but `405`
//! and the `501` for an unknown method carries `Connection: close` and closes; both of those
//! keep the connection, whose framing was sound.
//!
//! | rule | this server | test |
//! | --- | --- | --- |
//! | §2.2 (9112): a bare CR MUST make the element invalid (or be replaced by SP) | `400`, close | `bare_cr_gets_400` |
//! | §2.2 (9112): whitespace between the start-line and the first field line MUST be rejected (or the line ignored) | `400`, close | `whitespace_before_first_field_gets_400` |
//! | §3 (9112): a request-target longer than the server parses MUST get `414` | a request line still unfinished at 16 KiB with its method complete: `414`, close | `long_target_gets_414` |
//! | §3.2 (9112): an HTTP/1.1 request without `Host`, any request with two, or with an invalid value, MUST get `400` | `400`, close; HTTP/1.0 may omit it; the value must be `uri-host [":" port]` (RFC 3986) | `host_missing_or_repeated_gets_400`, `invalid_host_gets_400`, `http10_needs_no_host` |
//! | §3.2.2 (9112): the absolute-form MUST be accepted, and its host used instead of `Host` | served; the one resource is the same whatever the host | `absolute_form_is_served` |
//! | §5.1 (9112): whitespace between field name and colon MUST get `400` | `400`, close | `space_before_colon_gets_400` |
//! | §5.2 (9112): obs-fold MUST get `400` (or be replaced by SP) | `400`, close | `obs_fold_gets_400` |
//! | §5.4 (9110): a field line or field section larger than the server processes MUST get a 4xx | past 16 KiB ([`MAX_HEADER_BYTES`]) or 64 fields: `431`, close | `oversized_headers_get_431` |
//! | §5.5 (9110): CR, LF or NUL in a field value MUST be rejected (or replaced by SP) | `400`, close | `nul_in_field_value_gets_400` |
//! | §6.1 (9112): `Transfer-Encoding` with `Content-Length`: the server MAY reject, and MUST close after answering | rejected: `400`, close | `transfer_encoding_with_content_length_gets_400` |
//! | §6.1 (9112): `Transfer-Encoding` in HTTP/1.0 MUST be treated as faulty framing, and the connection closed | `400`, close | `transfer_encoding_in_http10_gets_400` |
//! | §6.3 (9112): `Transfer-Encoding` whose final coding is not `chunked` MUST get `400` and a close | `400`, close | `transfer_encoding_not_ending_in_chunked_gets_400` |
//! | §7.1 (9112): a recipient MUST be able to decode `chunked` | **not kept**: chunked bodies get `501` (§6.1's answer for a coding not implemented) and a close, so the body is never misread as requests | `chunked_gets_501_and_close` |
//! | §6.3 (9112), §8.6 (9110): a `Content-Length` that is not `1*DIGIT`, or several that disagree, MUST get `400` and a close; a list of one value repeated may be accepted | `400`, close; `5, 5` (or two lines of `5`) is 5 | `invalid_content_length_gets_400`, `repeated_content_length_is_one_length` |
//! | §8.6 (9110): large numerals MUST be parsed without overflow | past `u64`: `400`, close; within it but past `--max-body`: `413`, close | `huge_content_length_is_refused_not_wrapped` |
//! | §9.3 (9112): the server MUST read the whole request body, or close after answering | bodies up to `--max-body` are read and dropped; past it `413` as soon as the head is in, and a close | `content_length_body_is_skipped`, `body_over_max_body_gets_413_at_once` |
//! | §9.3.2 (9112): responses to pipelined requests MUST go out in request order | answered in order, none before its request is complete | `pipelined_requests_at_every_split` |
//! | §9.6 (9112): after `Connection: close` the server MUST close and MUST NOT process later requests | answered with `Connection: close`, the rest of the input ignored | `nothing_is_answered_after_close` |
//! | §9.1 (9110): GET and HEAD MUST be supported; methods are case-sensitive | `GET` and `HEAD` get `200`; `get` is not `GET` (`501`) | `get_is_answered_and_kept_alive`, `head_gets_the_head_only`, `methods_are_case_sensitive` |
//! | §9.3.2 (9110): no content in a response to HEAD | none, error answers included | `head_answers_carry_no_content` |
//! | §15.5.6 (9110): a `405` MUST carry `Allow` | `Allow: GET, HEAD` | `other_methods_get_405_with_allow` |
//! | §10.1.1 (9110): with `Expect: 100-continue`, a final status known from the head MUST be sent without waiting for the content; in HTTP/1.0 it MUST be ignored | every answer is decided by the head and sent at once | `expect_continue_is_answered_before_the_body` |
//! | §15.2 (9110), §6.1 (9112): no 1xx to an HTTP/1.0 client, no `Transfer-Encoding` in a response to one | never sent to anyone: every answer is framed by `Content-Length` | `every_answer_is_well_framed` |
//! | §6.6.1 (9110): an origin server with a clock MUST send `Date` | **not kept**: the answers are fixed bytes, the C reference server's, and a sans-IO session reads no clock | `answers_carry_no_date` |
//!
//! Where the RFCs leave the choice, this server chooses:
//!
//! | rule | choice | test |
//! | --- | --- | --- |
//! | §2.3 (9112), §15.6.6 (9110): a major version other than 1 *can* get `505` | `400`, close (the bytes of another major version need not be HTTP/1.1's grammar; the conformance suite expects `400`) | `other_versions` |
//! | §2.5 (9110): HTTP/1.x with x > 1 SHOULD be processed as the highest 1.x the server has | served as HTTP/1.1 (`Host` required) | `other_versions` |
//! | §9.1 (9110): an unrecognized method SHOULD get `501`, a recognized one not allowed `405` | RFC 9110's methods and PATCH: `405`; any other token: `501`; both keep the connection and skip the body | `other_methods_get_405_with_allow`, `methods_are_case_sensitive` |
//! | §3 (9112): a method longer than any implemented SHOULD get `501` | a request line with no SP in 16 KiB: `501`, close | `long_target_gets_414` |
//! | §15.5.14 (9110): `413` MAY close | closes: the body is not read | `body_over_max_body_gets_413_at_once` |
//! | §2.2 (9112): empty lines before a request line SHOULD be ignored; a bare LF MAY end a line | both (httparse) | `leading_empty_lines_and_bare_lf_are_accepted` |
//! | §9.3 (9112): HTTP/1.0 persists only with `keep-alive`; `close` wins over it | as said, and the answer confirms `keep-alive` | `http10_closes_unless_keep_alive` |
//! | a head that stays incomplete (`--header-timeout`) | `408`, close | `incomplete_head_then_deadline_gets_408` |
//!
//! ## Bounds
//!
//! What [`Session::feed`] leaves unconsumed, when it does not close, is the start of one request
//! head, shorter than [`MAX_HEADER_BYTES`] (a head that reaches the limit is answered and the
//! connection closed): a connection buffers less than `MAX_HEADER_BYTES` plus one read. Whether
//! a head is too large is decided on its first `MAX_HEADER_BYTES` bytes alone, so the answer
//! does not depend on how the bytes were cut into reads. Bodies are consumed as they arrive,
//! never buffered.

use super::{Progress, Session};

/// A request head larger than this is answered `431` (or `414`, if the request line alone is)
/// and the connection closed. It also bounds what a connection buffers while a request head is
/// incomplete.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The request body accepted when nothing else is configured (`--max-body`): 1 MiB.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// Header fields parsed per request; more is answered `431`.
const MAX_HEADERS: usize = 64;

/// The methods of RFC 9110 (and PATCH, RFC 5789): recognized, so a `405` rather than a `501`.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A complete response, and where its head ends: a response to HEAD is the same head without
/// the content (RFC 9110 §9.3.2).
#[derive(Debug)]
struct Answer {
    bytes: &'static [u8],
    head: usize,
}

impl Answer {
    const fn new(bytes: &'static [u8]) -> Answer {
        let mut i = 0;
        while i + 4 <= bytes.len() {
            if bytes[i] == b'\r'
                && bytes[i + 1] == b'\n'
                && bytes[i + 2] == b'\r'
                && bytes[i + 3] == b'\n'
            {
                return Answer { bytes, head: i + 4 };
            }
            i += 1;
        }
        panic!("an answer without the empty line that ends its head");
    }

    #[inline]
    fn write(&self, out: &mut Vec<u8>, head_only: bool) {
        if head_only {
            out.extend_from_slice(&self.bytes[..self.head]);
        } else {
            out.extend_from_slice(self.bytes);
        }
    }
}

/// The answer to every GET: the same bytes as the C reference server, so that byte counts and
/// wrk's figures compare like for like.
const OK: Answer = Answer::new(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!");
const OK_CLOSE: Answer =
    Answer::new(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, world!");
/// HTTP/1.0 clients keep the connection only if the answer says so.
const OK_KEEP_ALIVE: Answer = Answer::new(
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world!",
);
const NOT_ALLOWED: Answer = Answer::new(
    b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 19\r\n\r\nMethod Not Allowed\n",
);
const NOT_ALLOWED_CLOSE: Answer = Answer::new(
    b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 19\r\nConnection: close\r\n\r\nMethod Not Allowed\n",
);
const NOT_ALLOWED_KEEP_ALIVE: Answer = Answer::new(
    b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 19\r\nConnection: keep-alive\r\n\r\nMethod Not Allowed\n",
);
const UNKNOWN_METHOD: Answer =
    Answer::new(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 16\r\n\r\nNot Implemented\n");
/// Also the answer to a transfer coding this server does not decode, which closes.
const NOT_IMPLEMENTED: Answer = Answer::new(
    b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n",
);
const UNKNOWN_METHOD_KEEP_ALIVE: Answer = Answer::new(
    b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 16\r\nConnection: keep-alive\r\n\r\nNot Implemented\n",
);
const BAD_REQUEST: Answer = Answer::new(
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n",
);
const CONTENT_TOO_LARGE: Answer = Answer::new(
    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 18\r\nConnection: close\r\n\r\nContent Too Large\n",
);
const URI_TOO_LONG: Answer = Answer::new(
    b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 13\r\nConnection: close\r\n\r\nURI Too Long\n",
);
const TOO_LARGE: Answer = Answer::new(
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n",
);
const REQUEST_TIMEOUT: Answer = Answer::new(
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n",
);

/// Whether the connection persists after the answer, and what the answer says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1's default: nothing to say.
    Keep,
    /// `Connection: close` asked, or HTTP/1.0 without keep-alive: say `close`, and close.
    Close,
    /// HTTP/1.0 asking `keep-alive`: say `keep-alive`, or the client will not reuse it.
    KeepAlive,
}

/// The answers to a well-framed request, by [`Persist`].
struct Answers {
    keep: &'static Answer,
    close: &'static Answer,
    keep_alive: &'static Answer,
}

impl Answers {
    #[inline]
    fn pick(&self, persist: Persist) -> &'static Answer {
        match persist {
            Persist::Keep => self.keep,
            Persist::Close => self.close,
            Persist::KeepAlive => self.keep_alive,
        }
    }
}

const SERVED: Answers = Answers {
    keep: &OK,
    close: &OK_CLOSE,
    keep_alive: &OK_KEEP_ALIVE,
};
const REFUSED_METHOD: Answers = Answers {
    keep: &NOT_ALLOWED,
    close: &NOT_ALLOWED_CLOSE,
    keep_alive: &NOT_ALLOWED_KEEP_ALIVE,
};
const UNKNOWN_METHODS: Answers = Answers {
    keep: &UNKNOWN_METHOD,
    close: &NOT_IMPLEMENTED,
    keep_alive: &UNKNOWN_METHOD_KEEP_ALIVE,
};

/// One HTTP connection's state: how much of a request body is still to be skipped, and the
/// largest body it accepts.
#[derive(Clone, Debug)]
pub struct Http {
    /// Body bytes of the last request still to discard before the next request starts.
    skip: u64,
    /// A `Content-Length` past this is answered `413`.
    max_body: u64,
}

impl Default for Http {
    fn default() -> Self {
        Http::new(DEFAULT_MAX_BODY)
    }
}

impl Http {
    /// A session that accepts request bodies of up to `max_body` bytes.
    pub fn new(max_body: u64) -> Http {
        Http { skip: 0, max_body }
    }
}

/// What the head of one well-framed request asks for.
struct RequestHead {
    len: usize,
    answer: &'static Answer,
    head_only: bool,
    close: bool,
    body: u64,
}

enum Parsed {
    Complete(RequestHead),
    Partial,
    /// Answer with this and close.
    Reject {
        answer: &'static Answer,
        head_only: bool,
    },
}

impl Session for Http {
    fn head_timed_out(&mut self, out: &mut Vec<u8>) {
        REQUEST_TIMEOUT.write(out, false);
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
            match parse(&input[pos..], self.max_body) {
                Parsed::Partial => {
                    return Progress {
                        consumed: pos,
                        close: false,
                    };
                }
                Parsed::Reject { answer, head_only } => {
                    answer.write(out, head_only);
                    return Progress {
                        consumed: input.len(),
                        close: true,
                    };
                }
                Parsed::Complete(head) => {
                    head.answer.write(out, head.head_only);
                    if head.close {
                        return Progress {
                            consumed: input.len(),
                            close: true,
                        };
                    }
                    pos += head.len;
                    self.skip = head.body;
                }
            }
        }
    }
}

/// Parses the request head at the start of `input`, looking at its first [`MAX_HEADER_BYTES`]
/// bytes only.
fn parse(input: &[u8], max_body: u64) -> Parsed {
    let window = &input[..input.len().min(MAX_HEADER_BYTES)];
    // Uninitialised slots: httparse writes only the headers it finds, so the common request
    // does not pay for clearing all 64 (2 KiB) first.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(window, &mut headers) {
        Ok(httparse::Status::Complete(len)) => {
            let method = req.method.unwrap_or("");
            judge(method, req.version == Some(0), req.headers, len, max_body)
        }
        Ok(httparse::Status::Partial) => partial(window),
        Err(httparse::Error::Version) => other_version(window, max_body),
        // Whether the answer is to a HEAD is known only once httparse has read the method: the
        // bytes after the one in error must not decide it, or the answer would depend on how
        // much of them had arrived.
        Err(httparse::Error::TooManyHeaders) => Parsed::Reject {
            answer: &TOO_LARGE,
            head_only: req.method == Some("HEAD"),
        },
        Err(_) => Parsed::Reject {
            answer: &BAD_REQUEST,
            head_only: req.method == Some("HEAD"),
        },
    }
}

/// An incomplete head: wait for more, unless it has reached the limit.
fn partial(window: &[u8]) -> Parsed {
    if window.len() < MAX_HEADER_BYTES {
        return Parsed::Partial;
    }
    // Which part is too long decides the answer (RFC 9112 §3): the request line, with its
    // method complete (414), or without (501); or the field section (431).
    let line = request_line(window);
    let answer = if line.contains(&b'\n') {
        &TOO_LARGE
    } else if line.contains(&b' ') {
        &URI_TOO_LONG
    } else if line.is_empty() {
        &BAD_REQUEST
    } else {
        &NOT_IMPLEMENTED
    };
    reject(window, answer)
}

/// Refuses the request at the start of `window` with `answer`, without content if it is a HEAD.
/// Only for a window that httparse has read past the method, or that is full: then the bytes
/// that say HEAD are there whichever way the input was cut.
fn reject(window: &[u8], answer: &'static Answer) -> Parsed {
    Parsed::Reject {
        answer,
        head_only: request_line(window).starts_with(b"HEAD "),
    }
}

/// `window` from its request line on: past the empty lines a server ignores before it
/// (RFC 9112 §2.2), as httparse does.
fn request_line(window: &[u8]) -> &[u8] {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    &window[start..]
}

/// httparse knows only `HTTP/1.0` and `HTTP/1.1`. RFC 9110 §2.5 asks that a later HTTP/1.x be
/// served as the highest 1.x the server implements, so a well-formed `HTTP/1.2` request line is
/// read here and its fields handed back to httparse; any other version is refused with `400`.
fn other_version(window: &[u8], max_body: u64) -> Parsed {
    let line = request_line(window);
    let offset = window.len() - line.len();
    // httparse got past the method and the target, each ended by one SP.
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(_target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return reject(window, &BAD_REQUEST);
    };
    // HTTP-version = "HTTP/" DIGIT "." DIGIT, with 1 as the major version.
    const PREFIX: &[u8] = b"HTTP/1.";
    let known = version.len().min(PREFIX.len());
    if version[..known] != PREFIX[..known] {
        return reject(window, &BAD_REQUEST);
    }
    // The minor version is not looked at again: any 1.x is served as 1.1.
    let end = match version.get(PREFIX.len()..) {
        None | Some([]) => return partial(window),
        Some([digit, rest @ ..]) if digit.is_ascii_digit() => rest,
        Some(_) => return reject(window, &BAD_REQUEST),
    };
    let newline = match end {
        [] | [b'\r'] => return partial(window),
        [b'\r', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        _ => return reject(window, &BAD_REQUEST),
    };
    let fields_at = offset + (line.len() - end.len()) + newline;
    let Ok(method) = std::str::from_utf8(method) else {
        return reject(window, &BAD_REQUEST);
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(&window[fields_at..], &mut headers) {
        Ok(httparse::Status::Complete((len, fields))) => {
            judge(method, false, fields, fields_at + len, max_body)
        }
        Ok(httparse::Status::Partial) => partial(window),
        Err(httparse::Error::TooManyHeaders) => reject(window, &TOO_LARGE),
        Err(_) => reject(window, &BAD_REQUEST),
    }
}

/// Decides the answer to a complete, syntactically valid request head of `len` bytes. Inlined
/// into its callers, as the code it replaced was, to spare the common GET a call and a return
/// through memory.
#[inline(always)]
fn judge(
    method: &str,
    http10: bool,
    fields: &[httparse::Header<'_>],
    len: usize,
    max_body: u64,
) -> Parsed {
    let head_only = method == "HEAD";
    let refuse = |answer| Parsed::Reject { answer, head_only };
    let (mut hosts, mut bad_host) = (0u32, false);
    let mut seen = Framing::default();
    for field in fields {
        let name = field.name.as_bytes();
        if is_field(name, b"host") {
            hosts += 1;
            bad_host |= !valid_host(field.value);
        } else if matches!(name.len(), 10 | 14 | 17) {
            seen.read(name, field.value);
        }
    }
    // RFC 9112 §3.2: exactly one valid Host, which HTTP/1.0 may leave out.
    if hosts > 1 || (hosts == 0 && !http10) || bad_host {
        return refuse(&BAD_REQUEST);
    }
    if seen.transfer_encoding {
        // RFC 9112 §6.1 and §6.3: beside a Content-Length, in HTTP/1.0, or not ending in
        // chunked, the framing is in doubt: 400 and close. Chunked itself is not implemented.
        let doubtful = http10 || seen.length.is_some() || seen.bad_length || !seen.chunked_last;
        return refuse(if doubtful {
            &BAD_REQUEST
        } else {
            &NOT_IMPLEMENTED
        });
    }
    if seen.bad_length {
        return refuse(&BAD_REQUEST);
    }
    let body = seen.length.unwrap_or(0);
    if body > max_body {
        return refuse(&CONTENT_TOO_LARGE);
    }
    let persist = if seen.close || (http10 && !seen.keep_alive) {
        Persist::Close
    } else if http10 {
        Persist::KeepAlive
    } else {
        Persist::Keep
    };
    let answers = if method == "GET" || head_only {
        &SERVED
    } else if KNOWN_METHODS.contains(&method) {
        &REFUSED_METHOD
    } else {
        &UNKNOWN_METHODS
    };
    Parsed::Complete(RequestHead {
        len,
        answer: answers.pick(persist),
        head_only,
        close: persist == Persist::Close,
        body,
    })
}

/// What the fields that frame a request and say whether the connection persists say.
#[derive(Default)]
struct Framing {
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// The Content-Length, once one is seen.
    length: Option<u64>,
    /// A Content-Length that is not one, or two that disagree.
    bad_length: bool,
    transfer_encoding: bool,
    /// The last transfer coding named is `chunked`.
    chunked_last: bool,
}

impl Framing {
    /// Reads a field if it is Connection, Content-Length or Transfer-Encoding. Out of line: the
    /// common request (wrk's) has none of them, and the loop that reads the fields stays small.
    #[inline(never)]
    fn read(&mut self, name: &[u8], value: &[u8]) {
        if is_field(name, b"connection") {
            for option in list(value) {
                self.close |= option.eq_ignore_ascii_case(b"close");
                self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if is_field(name, b"content-length") {
            match (content_length(value), self.length) {
                (Some(n), Some(m)) if n != m => self.bad_length = true,
                (Some(n), _) => self.length = Some(n),
                (None, _) => self.bad_length = true,
            }
        } else if is_field(name, b"transfer-encoding") {
            self.transfer_encoding = true;
            if let Some(coding) = list(value).last() {
                // A coding's parameters follow a ';'; chunked has none, but look past them.
                let name = coding.split(|&b| b == b';').next().unwrap_or(coding);
                self.chunked_last = name.trim_ascii().eq_ignore_ascii_case(b"chunked");
            }
        }
    }
}

/// Whether the field name `name` is `lower` (lower-case letters and `-`), in any case. OR-ing
/// 0x20 into a byte lower-cases a letter, and maps no other byte of a token (httparse has
/// checked that `name` is one) onto a lower-case letter or `-`: only an upper-case letter, and
/// CR, which no token holds. Branch-free over a fixed length, so the compiler compares whole
/// words: this runs for every field of every request.
#[inline(always)]
fn is_field<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    let Ok(name) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    let mut diff = 0;
    for i in 0..N {
        diff |= (name[i] | 0x20) ^ lower[i];
    }
    diff == 0
}

/// The non-empty elements of a comma-separated field value, with the optional whitespace around
/// them trimmed (RFC 9110 §5.6.1: empty elements are ignored).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// A Content-Length field value: `1*DIGIT`, or a list of the same `1*DIGIT` repeated, which
/// RFC 9112 §6.3 lets a recipient read as that one value. `None` if it is neither, or if the
/// number does not fit in a u64 (it is never wrapped).
fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for element in list(value) {
        let mut n: u64 = 0;
        for &b in element {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        if length.is_some_and(|m| m != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// RFC 3986's unreserved and sub-delims: the characters of a reg-name or an IPv4 address.
static HOST_CHARS: [bool; 256] = {
    const PUNCTUATION: &[u8] = b"-._~!$&'()*+,;=";
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < PUNCTUATION.len() {
        table[PUNCTUATION[i] as usize] = true;
        i += 1;
    }
    table
};

/// How many bytes at the start of `value` are reg-name characters. This runs for every request,
/// on a value like `127.0.0.1:8080`: eight bytes at a time, without a branch inside the eight.
#[inline]
fn host_run(value: &[u8]) -> usize {
    let mut i = 0;
    while let Some(eight) = value.get(i..i + 8) {
        if !eight
            .iter()
            .fold(true, |all, &b| all & HOST_CHARS[b as usize])
        {
            break;
        }
        i += 8;
    }
    while i < value.len() && HOST_CHARS[value[i] as usize] {
        i += 1;
    }
    i
}

/// Whether a Host field value is `uri-host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// reg-name or IPv4 address (unreserved and sub-delims characters, and `%` HEXDIG HEXDIG), or
/// an IP literal in brackets; the port digits only. An empty value is valid (a target URI
/// without an authority).
fn valid_host(value: &[u8]) -> bool {
    // The host, then `rest`: nothing, or the port.
    let rest = match value.strip_prefix(b"[") {
        Some(literal) => {
            let Some(end) = literal.iter().position(|&b| b == b']') else {
                return false;
            };
            let inside = &literal[..end];
            if inside.is_empty() || !inside.iter().all(|&b| b == b':' || HOST_CHARS[b as usize]) {
                return false;
            }
            &literal[end + 1..]
        }
        None => {
            let mut i = host_run(value);
            // A percent-encoded octet, rare, continues the name.
            while value.get(i) == Some(&b'%')
                && value
                    .get(i + 1..i + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            {
                i += 3;
                i += host_run(&value[i..]);
            }
            &value[i..]
        }
    };
    match rest {
        [] => true,
        [b':', port @ ..] => {
            // A plain loop: `all` over the iterator costs twice the instructions here.
            let mut i = 0;
            while i < port.len() && port[i].is_ascii_digit() {
                i += 1;
            }
            i == port.len()
        }
        _ => false,
    }
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

    /// The status code of the first response in `out`.
    fn status(out: &[u8]) -> u16 {
        let text = String::from_utf8_lossy(out);
        text.strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a response: {text:?}"))
    }

    /// Asserts that `input` is answered `code` and closed, whatever follows it: a request that
    /// would be served is appended, and must not be answered.
    #[track_caller]
    fn refused(input: &[u8], code: u16) {
        let (out, closed) = answers(&[input, GET].concat());
        let shown = String::from_utf8_lossy(input);
        assert_eq!(status(&out), code, "{shown:?} answered {out:?}");
        assert!(closed, "{shown:?} must close");
        assert_eq!(count(&out, b"HTTP/1.1 "), 1, "one answer to {shown:?}");
        assert!(
            out.windows(19).any(|w| w == b"Connection: close\r\n"),
            "{shown:?}: the answer must announce the close"
        );
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

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

    /// A GET gets the fixed 200 — the C reference server's bytes — and the connection stays open.
    #[test]
    fn get_is_answered_and_kept_alive() {
        assert_eq!(
            OK.bytes,
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!"
        );
        assert_eq!(answers(GET), (OK.bytes.to_vec(), false));
    }

    /// Three pipelined requests, cut at every byte, get three answers in order, and nothing
    /// is answered before its request is complete.
    #[test]
    fn pipelined_requests_at_every_split() {
        let input = [
            GET,
            b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n",
        ]
        .concat();
        let mut expected = OK.bytes.to_vec();
        OK.write(&mut expected, true);
        expected.extend_from_slice(OK_CLOSE.bytes);
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

    /// After a request with `Connection: close` (in any case, among other options), nothing
    /// more is answered, even complete requests already received.
    #[test]
    fn nothing_is_answered_after_close() {
        for option in ["close", "Close", "keep-alive, close", ", CLOSE ,"] {
            let req = format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: {option}\r\n\r\n");
            let (out, closed) = answers(&[req.as_bytes(), GET, GET].concat());
            assert_eq!(out, OK_CLOSE.bytes, "Connection: {option}");
            assert!(closed);
        }
    }

    /// HTTP/1.0 closes unless it asks to keep alive, and then the answer says keep-alive;
    /// `close` wins over `keep-alive`.
    #[test]
    fn http10_closes_unless_keep_alive() {
        assert_eq!(
            answers(b"GET / HTTP/1.0\r\n\r\n"),
            (OK_CLOSE.bytes.to_vec(), true)
        );
        assert_eq!(
            answers(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            (OK_KEEP_ALIVE.bytes.to_vec(), false)
        );
        assert_eq!(
            answers(b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n"),
            (OK_CLOSE.bytes.to_vec(), true)
        );
    }

    /// Malformed input gets a 400 and a close, whatever comes after it.
    #[test]
    fn malformed_request_gets_400_and_close() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
            b"GET / http/1.1\r\nHost: x\r\n\r\n",
        ] {
            refused(bad, 400);
        }
    }

    /// RFC 9112 §2.2: a CR not followed by LF, anywhere in the head, is refused.
    #[test]
    fn bare_cr_gets_400() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"[..],
            b"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\rHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo\rst: x\r\n\r\n",
            b"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n",
        ] {
            refused(bad, 400);
        }
        // The error is at the CR, before any method: the answer is the full 400 however much
        // of the HEAD after it has arrived (a case the property tests found).
        let input = b"\rHEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..=input.len() {
            let (out, closed) = feed_in_pieces(&mut Http::default(), input, &[cut]);
            assert_eq!(
                (out.as_slice(), closed),
                (BAD_REQUEST.bytes, true),
                "cut at {cut}"
            );
        }
    }

    /// RFC 9112 §2.2: whitespace between the request line and the first field line.
    #[test]
    fn whitespace_before_first_field_gets_400() {
        refused(b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400);
        refused(b"GET / HTTP/1.1\r\n\tHost: x\r\n\r\n", 400);
    }

    /// RFC 9112 §2.2's leniencies, which httparse takes: empty lines before the request line
    /// are skipped, and a bare LF ends a line.
    #[test]
    fn leading_empty_lines_and_bare_lf_are_accepted() {
        assert_eq!(
            answers(&[b"\r\n\n\r\n", GET].concat()),
            (OK.bytes.to_vec(), false)
        );
        assert_eq!(
            answers(b"GET / HTTP/1.1\nHost: x\n\n"),
            (OK.bytes.to_vec(), false)
        );
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host; no request may have two.
    #[test]
    fn host_missing_or_repeated_gets_400() {
        refused(b"GET / HTTP/1.1\r\n\r\n", 400);
        refused(b"GET / HTTP/1.1\r\nX-Host: x\r\n\r\n", 400);
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
        refused(b"GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400);
    }

    /// HTTP/1.0 predates Host: a request without it is served.
    #[test]
    fn http10_needs_no_host() {
        assert_eq!(
            answers(b"GET / HTTP/1.0\r\n\r\n"),
            (OK_CLOSE.bytes.to_vec(), true)
        );
    }

    /// RFC 9112 §3.2: a Host value that is not `uri-host [":" port]` is refused; the forms
    /// RFC 3986 allows are served.
    #[test]
    fn invalid_host_gets_400() {
        for good in [
            "",
            "example.com",
            "127.0.0.1:8080",
            "[::1]:80",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%20b:",
            "under_score.~tilde!$&'()*+,;=",
        ] {
            let req = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            assert_eq!(
                answers(req.as_bytes()),
                (OK.bytes.to_vec(), false),
                "Host: {good}"
            );
        }
        for bad in [
            "a b",
            "a/b",
            "a@b",
            "host:80x",
            "host:80:81",
            "[::1",
            "[]",
            "[::1]x",
            "a%2",
            "a%zz",
            "a\"b",
            "é.example",
        ] {
            refused(
                format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n").as_bytes(),
                400,
            );
        }
    }

    /// RFC 9112 §3.2.2: the absolute-form is accepted; its host, not the Host field's, names
    /// the resource — the same one here.
    #[test]
    fn absolute_form_is_served() {
        assert_eq!(
            answers(b"GET http://example.com/x HTTP/1.1\r\nHost: other.example\r\n\r\n"),
            (OK.bytes.to_vec(), false)
        );
    }

    /// RFC 9112 §5.1: whitespace between a field name and its colon.
    #[test]
    fn space_before_colon_gets_400() {
        refused(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
        refused(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length\t: 0\r\n\r\n",
            400,
        );
    }

    /// RFC 9112 §5.2: a field value continued on a line starting with whitespace.
    #[test]
    fn obs_fold_gets_400() {
        refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400);
        refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400);
    }

    /// RFC 9110 §5.5: NUL (or another control byte) in a field value.
    #[test]
    fn nul_in_field_value_gets_400() {
        refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400);
        refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400);
    }

    /// A request head over 16 KiB gets 431 and a close, whether it is complete or still coming;
    /// so do more than 64 fields.
    #[test]
    fn oversized_headers_get_431() {
        let big = format!(
            "GET / HTTP/1.1\r\nX-Big: {}\r\n",
            "a".repeat(MAX_HEADER_BYTES)
        );
        let (out, closed) = answers(big.as_bytes());
        assert_eq!(
            (out.as_slice(), closed),
            (TOO_LARGE.bytes, true),
            "incomplete head"
        );
        refused(format!("{big}\r\n").as_bytes(), 431);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        refused(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), 431);
        // A head of exactly the limit is served.
        let filler = MAX_HEADER_BYTES - b"GET / HTTP/1.1\r\nHost: x\r\nX: \r\n\r\n".len();
        let exact = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(filler)
        );
        assert_eq!(exact.len(), MAX_HEADER_BYTES);
        assert_eq!(answers(exact.as_bytes()), (OK.bytes.to_vec(), false));
    }

    /// RFC 9112 §3: a request line that does not fit in the limit is a target too long (414)
    /// once the method is complete, and a method longer than any implemented (501) if not.
    #[test]
    fn long_target_gets_414() {
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(MAX_HEADER_BYTES)
        );
        refused(long.as_bytes(), 414);
        let method = "A".repeat(MAX_HEADER_BYTES + 10);
        refused(method.as_bytes(), 501);
        let (out, _) = answers(format!("HEAD /{}", "a".repeat(MAX_HEADER_BYTES)).as_bytes());
        assert_eq!(
            out,
            URI_TOO_LONG.bytes[..URI_TOO_LONG.head],
            "HEAD: no content"
        );
    }

    /// RFC 9112 §6.1: Transfer-Encoding beside Content-Length is refused, and the connection
    /// closed, rather than framed either way.
    #[test]
    fn transfer_encoding_with_content_length_gets_400() {
        refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        );
        refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
            400,
        );
    }

    /// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing.
    #[test]
    fn transfer_encoding_in_http10_gets_400() {
        refused(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        );
    }

    /// RFC 9112 §6.3: a request whose final transfer coding is not chunked has no length.
    #[test]
    fn transfer_encoding_not_ending_in_chunked_gets_400() {
        for te in ["gzip", "chunked, gzip", "", "chunkedx", "identity"] {
            refused(
                format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n").as_bytes(),
                400,
            );
        }
        refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        );
    }

    /// RFC 9112 §7.1 is not kept, by design: chunked bodies are answered 501 and the
    /// connection closed, so that the chunks are never read as requests.
    #[test]
    fn chunked_gets_501_and_close() {
        for te in ["chunked", "Chunked", "gzip, chunked", "gzip,chunked ; x=1"] {
            let req = format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            );
            refused(req.as_bytes(), 501);
        }
    }

    /// RFC 9112 §6.3 and RFC 9110 §8.6: a Content-Length that is not `1*DIGIT`, or lengths that
    /// disagree, are refused.
    #[test]
    fn invalid_content_length_gets_400() {
        for value in [
            "+5", "-1", " 5x", "", "5 5", "0x10", "5.0", "1_000", ",", "5, 6", "5,,6", "٣",
        ] {
            refused(
                format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n").as_bytes(),
                400,
            );
        }
        refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
        );
        refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: x\r\n\r\nhello",
            400,
        );
    }

    /// RFC 9112 §6.3: one length, repeated in a list or on several lines, is that length.
    #[test]
    fn repeated_content_length_is_one_length() {
        for fields in [
            "Content-Length: 5, 5",
            "Content-Length: 5,5,",
            "Content-Length: 005",
            "Content-Length: 5\r\ncontent-length: 5",
        ] {
            let req = format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n\r\nhello");
            let (out, closed) = answers(&[req.as_bytes(), GET].concat());
            assert_eq!(out, [NOT_ALLOWED.bytes, OK.bytes].concat(), "{fields}");
            assert!(!closed);
        }
    }

    /// RFC 9110 §8.6: a numeral past u64 is refused, not wrapped; one within u64 but past the
    /// body limit gets 413.
    #[test]
    fn huge_content_length_is_refused_not_wrapped() {
        refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n",
            400,
        );
        refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            400,
        );
        refused(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
            413,
        );
    }

    /// A body past the limit gets 413 as soon as the head is in — the body is not waited for —
    /// and the connection closes; a body of exactly the limit is read and skipped.
    #[test]
    fn body_over_max_body_gets_413_at_once() {
        let mut session = Http::new(10);
        let mut out = Vec::new();
        let p = session.feed(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
            &mut out,
        );
        assert!(p.close);
        assert_eq!(out, CONTENT_TOO_LARGE.bytes);
        let at_limit = [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"[..],
            GET,
        ]
        .concat();
        let (out, closed) = feed_in_pieces(&mut Http::new(10), &at_limit, &[]);
        assert_eq!(out, [NOT_ALLOWED.bytes, OK.bytes].concat());
        assert!(!closed);
        let (out, closed) = answers(
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                DEFAULT_MAX_BODY + 1
            )
            .as_bytes(),
        );
        assert_eq!((out.as_slice(), closed), (CONTENT_TOO_LARGE.bytes, true));
    }

    /// A body announced by Content-Length is skipped, even when it arrives in pieces, and even
    /// when its bytes look like a request.
    #[test]
    fn content_length_body_is_skipped() {
        let input = [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\n\r\n"[..],
            GET,
            GET,
        ]
        .concat();
        let expected = [NOT_ALLOWED.bytes, OK.bytes].concat();
        for cut in 0..=input.len() {
            let (out, closed) = feed_in_pieces(&mut Http::default(), &input, &[cut]);
            assert_eq!(out, expected, "cut at {cut}");
            assert!(!closed);
        }
    }

    /// HEAD gets the head of the GET answer, Content-Length included, and no content.
    #[test]
    fn head_gets_the_head_only() {
        let (out, closed) = answers(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n");
        assert!(!closed);
        let (out, closed) = answers(b"HEAD / HTTP/1.0\r\n\r\n");
        assert_eq!(out, OK_CLOSE.bytes[..OK_CLOSE.head]);
        assert!(closed);
    }

    /// RFC 9110 §9.3.2: error answers to HEAD carry no content either.
    #[test]
    fn head_answers_carry_no_content() {
        for (req, answer) in [
            (&b"HEAD / HTTP/1.1\r\n\r\n"[..], &BAD_REQUEST),
            (
                b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
                &CONTENT_TOO_LARGE,
            ),
            (
                b"HEAD / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                &BAD_REQUEST,
            ),
            (
                b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                &NOT_IMPLEMENTED,
            ),
        ] {
            let (out, closed) = answers(req);
            assert_eq!(
                out,
                answer.bytes[..answer.head],
                "{:?}",
                String::from_utf8_lossy(req)
            );
            assert!(closed);
        }
    }

    /// RFC 9110 §9.1: methods are case-sensitive; `get` is an unknown method, answered 501
    /// with its body skipped and the connection kept, like any token this server does not know.
    #[test]
    fn methods_are_case_sensitive() {
        for method in ["get", "Get", "head", "BREW", "PROPFIND"] {
            let req = format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
            let (out, closed) = answers(&[req.as_bytes(), GET].concat());
            assert_eq!(out, [UNKNOWN_METHOD.bytes, OK.bytes].concat(), "{method}");
            assert!(!closed);
        }
    }

    /// RFC 9110 §15.5.6: the methods RFC 9110 defines, other than GET and HEAD, get 405 with
    /// the Allow field; the connection is kept and the body skipped.
    #[test]
    fn other_methods_get_405_with_allow() {
        for method in [
            "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT",
        ] {
            let req = format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab");
            let (out, closed) = answers(&[req.as_bytes(), GET].concat());
            assert_eq!(out, [NOT_ALLOWED.bytes, OK.bytes].concat(), "{method}");
            assert!(!closed);
        }
        assert!(
            NOT_ALLOWED
                .bytes
                .windows(18)
                .any(|w| w == b"Allow: GET, HEAD\r\n"),
            "405 carries Allow"
        );
        let (out, closed) = answers(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(
            (out.as_slice(), closed),
            (NOT_ALLOWED_KEEP_ALIVE.bytes, false)
        );
    }

    /// RFC 9110 §10.1.1: with `Expect: 100-continue`, the final answer goes out as soon as the
    /// head is in; the body that follows is then skipped.
    #[test]
    fn expect_continue_is_answered_before_the_body() {
        let head =
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
        let mut session = Http::default();
        let mut out = Vec::new();
        let p = session.feed(head, &mut out);
        assert_eq!((p.consumed, p.close), (head.len(), false));
        assert_eq!(out, NOT_ALLOWED.bytes, "answered before any body byte");
        out.clear();
        let rest = [&b"body"[..], GET].concat();
        let p = session.feed(&rest, &mut out);
        assert_eq!((p.consumed, out.as_slice()), (rest.len(), OK.bytes));
    }

    /// RFC 9110 §2.5: HTTP/1.2 is served as HTTP/1.1 (Host required); other major versions and
    /// malformed versions get 400.
    #[test]
    fn other_versions() {
        let input = [&b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"[..], GET].concat();
        for cut in 0..=input.len() {
            let (out, closed) = feed_in_pieces(&mut Http::default(), &input, &[cut]);
            assert_eq!(out, [OK.bytes, OK.bytes].concat(), "cut at {cut}");
            assert!(!closed);
        }
        assert_eq!(
            answers(b"GET / HTTP/1.9\nHost: x\nConnection: close\n\n"),
            (OK_CLOSE.bytes.to_vec(), true)
        );
        refused(b"GET / HTTP/1.2\r\n\r\n", 400);
        refused(b"GET / HTTP/1.2\r\nHost: x\r\nBad Header\r\n\r\n", 400);
        for bad in [
            "HTTP/2.0",
            "HTTP/7.7",
            "HTTP/0.9",
            "HTTP/1.10",
            "HTTP/1.x",
            "HTTP/11.1",
            "HTTP/1",
            "HTTP/1.2 ",
            "HTTPS/1.1",
            "",
        ] {
            refused(format!("GET / {bad}\r\nHost: x\r\n\r\n").as_bytes(), 400);
        }
        // A version still arriving is waited for.
        let (out, closed) = answers(b"GET / HTTP/1.2");
        assert_eq!((out.len(), closed), (0, false));
    }

    /// Every answer this server can make is one well-framed HTTP/1.1 response: a final status,
    /// a Content-Length equal to its content, no Transfer-Encoding, and `Connection: close`
    /// exactly where the session closes after it.
    #[test]
    fn every_answer_is_well_framed() {
        let all: [(&Answer, bool); 14] = [
            (&OK, false),
            (&OK_CLOSE, true),
            (&OK_KEEP_ALIVE, false),
            (&NOT_ALLOWED, false),
            (&NOT_ALLOWED_CLOSE, true),
            (&NOT_ALLOWED_KEEP_ALIVE, false),
            (&UNKNOWN_METHOD, false),
            (&NOT_IMPLEMENTED, true),
            (&UNKNOWN_METHOD_KEEP_ALIVE, false),
            (&BAD_REQUEST, true),
            (&CONTENT_TOO_LARGE, true),
            (&URI_TOO_LONG, true),
            (&TOO_LARGE, true),
            (&REQUEST_TIMEOUT, true),
        ];
        for (answer, closes) in all {
            let mut fields = [httparse::EMPTY_HEADER; 8];
            let mut response = httparse::Response::new(&mut fields);
            let shown = String::from_utf8_lossy(answer.bytes);
            let head = match response.parse(answer.bytes) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!("{shown:?}: {other:?}"),
            };
            assert_eq!(head, answer.head, "{shown:?}");
            assert_eq!(response.version, Some(1), "{shown:?}");
            assert!(response.code.is_some_and(|c| c >= 200), "{shown:?}");
            let field = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            };
            let length = field("content-length").expect("Content-Length");
            assert_eq!(
                length,
                (answer.bytes.len() - head).to_string().as_bytes(),
                "{shown:?}"
            );
            assert!(field("transfer-encoding").is_none(), "{shown:?}");
            assert_eq!(
                field("connection") == Some(&b"close"[..]),
                closes,
                "{shown:?}"
            );
            assert_eq!(
                field("allow").is_some(),
                response.code == Some(405),
                "{shown:?}"
            );
        }
    }

    /// RFC 9110 §6.6.1 is not kept, by design: the answers carry no Date (they are fixed bytes,
    /// the C reference server's; the session reads no clock).
    #[test]
    fn answers_carry_no_date() {
        let (out, _) = answers(&[GET, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET"].concat());
        assert_eq!(count(&out, b"HTTP/1.1 200 OK\r\n"), 2);
        assert_eq!(count(&out.to_ascii_lowercase(), b"date:"), 0);
    }

    /// Many pipelined requests in one read are each answered: wrk's pipelining script sends 16.
    #[test]
    fn sixteen_pipelined_in_one_feed() {
        let input = GET.repeat(16);
        let (out, closed) = answers(&input);
        assert_eq!(count(&out, b"HTTP/1.1 200 OK"), 16);
        assert!(!closed);
    }

    /// The bound the connection code relies on: what a feed leaves unconsumed without closing
    /// is shorter than the head limit, however the input is cut.
    #[test]
    fn unconsumed_input_stays_under_the_head_limit() {
        let input = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}",
            "a".repeat(2 * MAX_HEADER_BYTES)
        );
        let mut session = Http::default();
        let mut pending = Vec::new();
        for piece in input.as_bytes().chunks(1000) {
            pending.extend_from_slice(piece);
            let mut out = Vec::new();
            let p = session.feed(&pending, &mut out);
            pending.drain(..p.consumed);
            if p.close {
                assert_eq!(out, TOO_LARGE.bytes);
                return;
            }
            assert!(
                pending.len() < MAX_HEADER_BYTES,
                "{} bytes held",
                pending.len()
            );
        }
        panic!("a head past the limit must be refused");
    }
}
