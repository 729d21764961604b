//! The kernel's own counters, read as `nstat` reads them: /proc/net/netstat (`TcpExt`,
//! `IpExt`, ...) and /proc/net/snmp (`Ip`, `Icmp`, `Tcp`, `Udp`, ...).
//!
//! Both files come in pairs of lines, a header naming the fields and a line of values, each
//! prefixed with the group (`TcpExt: SyncookiesSent SyncookiesRecv ...` then
//! `TcpExt: 0 0 ...`). [`Counters::read`] turns them into one map keyed `Group.Field`
//! (`TcpExt.SyncookiesSent`, `Tcp.OutRsts`). A lab reads them before and after what it stages
//! and reports the [`Counters::delta`]: the counters are per network namespace, so inside a
//! namespace a lab made, the delta is exactly what its own sockets did.
//!
//! The files are read through /proc/thread-self, not /proc/self: a thread that moved into a
//! namespace with setns(2) sees that namespace's counters there, while /proc/self/net (and
//! /proc/net) follow the process's first thread.

use std::collections::BTreeMap;
use std::io;

use serde_json::{Map, Value};

/// The files read, each a sequence of header/value line pairs.
const FILES: [&str; 2] = [
    "/proc/thread-self/net/netstat",
    "/proc/thread-self/net/snmp",
];

/// A snapshot of every counter of this thread's network namespace, `Group.Field` → value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    values: BTreeMap<String, u64>,
}

impl Counters {
    /// Reads /proc/net/netstat and /proc/net/snmp of this thread's network namespace.
    ///
    /// Fields that are not counters and can be negative (`Tcp.MaxConn` is -1) are left out.
    pub fn read() -> io::Result<Counters> {
        let mut values = BTreeMap::new();
        for file in FILES {
            parse_into(&std::fs::read_to_string(file)?, &mut values);
        }
        Ok(Counters { values })
    }

    /// One counter (`"TcpExt.SyncookiesSent"`); 0 when this kernel does not have it.
    pub fn get(&self, key: &str) -> u64 {
        self.values.get(key).copied().unwrap_or(0)
    }

    /// Whether this kernel reports the counter at all.
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// What each counter went up by from `before` to `after`. A gauge that went down
    /// (`Tcp.CurrEstab`) shows 0: the delta is for counters, which only rise.
    pub fn delta(before: &Counters, after: &Counters) -> Counters {
        let values = after
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k))))
            .collect();
        Counters { values }
    }

    /// How much counter `key` grew since `before` (this is the later reading): the one-counter
    /// form of [`Counters::delta`].
    pub fn since(&self, before: &Counters, key: &str) -> u64 {
        self.get(key).saturating_sub(before.get(key))
    }

    /// The named counters as a JSON object, for an observation: `{"TcpExt.ListenDrops": 3}`.
    pub fn pick(&self, keys: &[&str]) -> Value {
        let mut map = Map::new();
        for key in keys {
            map.insert((*key).to_string(), Value::from(self.get(key)));
        }
        Value::Object(map)
    }
}

/// Adds the counters of one file's text to `values`.
fn parse_into(text: &str, values: &mut BTreeMap<String, u64>) {
    let mut lines = text.lines();
    while let (Some(names), Some(numbers)) = (lines.next(), lines.next()) {
        let (Some((group, names)), Some((_, numbers))) =
            (names.split_once(':'), numbers.split_once(':'))
        else {
            continue;
        };
        for (name, number) in names.split_whitespace().zip(numbers.split_whitespace()) {
            if let Ok(n) = number.parse::<u64>() {
                values.insert(format!("{group}.{name}"), n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header and value lines pair up by group; negative fields are dropped.
    #[test]
    fn parses_pairs_of_lines() {
        let text = "Tcp: RtoAlgorithm MaxConn ActiveOpens\nTcp: 1 -1 7\n\
                    TcpExt: SyncookiesSent ListenDrops\nTcpExt: 3 4\n";
        let mut values = BTreeMap::new();
        parse_into(text, &mut values);
        let c = Counters { values };
        assert_eq!(c.get("Tcp.ActiveOpens"), 7);
        assert_eq!(c.get("TcpExt.SyncookiesSent"), 3);
        assert_eq!(c.get("TcpExt.ListenDrops"), 4);
        assert!(!c.has("Tcp.MaxConn"), "a negative field is not a counter");
        assert_eq!(c.get("TcpExt.NoSuchCounter"), 0);
    }

    /// The delta of this process's own namespace after a loopback connection shows it.
    #[test]
    fn delta_sees_a_connection() {
        let before = Counters::read().expect("read counters");
        assert!(before.has("TcpExt.ListenDrops") && before.has("Tcp.ActiveOpens"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let _client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let after = Counters::read().expect("read counters");
        let delta = Counters::delta(&before, &after);
        // Other tests run beside this one in the same namespace: at least ours is counted.
        assert!(delta.get("Tcp.ActiveOpens") >= 1, "{delta:?}");
        assert!(delta.get("Tcp.PassiveOpens") >= 1, "{delta:?}");
        assert_eq!(
            after.since(&before, "Tcp.ActiveOpens"),
            delta.get("Tcp.ActiveOpens")
        );
    }
}
