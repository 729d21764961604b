//! Sans-IO protocols: a [`Session`] turns bytes from the peer into bytes for the peer and never
//! touches a socket, so every model moves the same bytes through the same code and differs only
//! in how it moves them.

mod echo;
mod http;

pub use echo::Echo;
pub use http::{DEFAULT_MAX_BODY, Http, MAX_HEADER_BYTES};

use crate::server::model::Config;

/// What a session did with the input it was fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// How many bytes of the input it consumed; the rest must be fed again, with more after it.
    pub consumed: usize,
    /// The connection must close once the output has been flushed (a `Connection: close`
    /// request, or bad input answered with an error status). Later input is ignored.
    pub close: bool,
}

/// One connection's protocol state.
pub trait Session: Send {
    /// Consumes what it can of `input` and appends any reply to `out`.
    ///
    /// An incomplete request is not an error: the session consumes nothing of it and waits to
    /// be fed it again with more bytes. Bad input is answered in `out` (a `400`) and closes.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress;

    /// A request head has stayed incomplete past the header deadline (`--header-timeout`):
    /// appends the answer, after which the connection closes. A protocol whose every input is
    /// complete at once (echo consumes every byte) is never asked.
    fn head_timed_out(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }
}

/// The protocols the workbook speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Every byte comes back, in order.
    Echo,
    /// HTTP/1.1 with keep-alive and pipelining; every GET gets `200` and a fixed body.
    Http,
}

impl Protocol {
    /// Every protocol, for command-line help and loops in tests.
    pub const ALL: [Protocol; 2] = [Protocol::Echo, Protocol::Http];

    /// A fresh session for a new connection, with the limits `config` sets (`max_body`).
    pub fn session_for(self, config: &Config) -> AnySession {
        match self {
            Protocol::Echo => AnySession::Echo(Echo),
            Protocol::Http => AnySession::Http(Http::new(config.max_body)),
        }
    }

    /// A fresh session with the default limits (those of [`Config::default`]), for a caller that
    /// has no configuration at hand.
    pub fn session(self) -> AnySession {
        match self {
            Protocol::Echo => AnySession::Echo(Echo),
            Protocol::Http => AnySession::Http(Http::default()),
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::Http => "http",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "echo" => Ok(Protocol::Echo),
            "http" => Ok(Protocol::Http),
            _ => Err(format!("unknown protocol '{s}' (expected echo or http)")),
        }
    }
}

/// A session of any protocol, dispatched by `match` rather than through a vtable: one per
/// connection, small, and allocation-free when the connection is idle.
#[derive(Debug)]
pub enum AnySession {
    /// An echo session.
    Echo(Echo),
    /// An HTTP/1.1 session.
    Http(Http),
}

impl Session for AnySession {
    #[inline]
    fn head_timed_out(&mut self, out: &mut Vec<u8>) {
        match self {
            AnySession::Echo(s) => s.head_timed_out(out),
            AnySession::Http(s) => s.head_timed_out(out),
        }
    }

    #[inline]
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        match self {
            AnySession::Echo(s) => s.feed(input, out),
            AnySession::Http(s) => s.feed(input, out),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::{Progress, Session};

    /// Feeds `input` the way a socket might deliver it: in pieces of the given sizes, keeping
    /// what the session did not consume and feeding it again with the next piece.
    pub fn feed_in_pieces(
        session: &mut dyn Session,
        input: &[u8],
        cuts: &[usize],
    ) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut start = 0;
        for end in cuts.iter().copied().chain(std::iter::once(input.len())) {
            pending.extend_from_slice(&input[start..end]);
            start = end;
            let Progress { consumed, close } = session.feed(&pending, &mut out);
            pending.drain(..consumed);
            if close {
                return (out, true);
            }
        }
        (out, false)
    }
}
