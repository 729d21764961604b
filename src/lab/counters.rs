//! The kernel's own protocol counters, read the way `nstat` reads them: `/proc/net/netstat`
//! (`TcpExt`, `IpExt`, ...) and `/proc/net/snmp` (`Ip`, `Icmp`, `Tcp`, `Udp`, ...), each a
//! line of names followed by a line of values.
//!
//! A lab reads them before and after the step it judges and takes the difference:
//! `after.delta(&before, "TcpExt.ListenOverflows")`. The counters belong to a network
//! namespace, not to a socket, so in a shared namespace every other connection on the machine
//! adds to them; a lab that wants exact counts runs in a namespace of its own.

use std::collections::HashMap;
use std::io;

/// One reading of every counter, by `Group.Name` (`"TcpExt.DelayedACKs"`, `"Tcp.OutRsts"`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    values: HashMap<String, u64>,
}

impl Counters {
    /// Reads every counter of the network namespace this thread is in (through
    /// `/proc/thread-self/net`, so a thread moved by setns(2) reads its new namespace).
    pub fn read() -> io::Result<Counters> {
        let mut counters = Counters::default();
        for file in ["netstat", "snmp"] {
            let text = std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))?;
            counters.parse(&text);
        }
        Ok(counters)
    }

    /// Adds the counters of one file: pairs of lines `Group: names...` / `Group: values...`.
    /// Negative values (`Tcp.MaxConn` is -1, "no limit") are not counters and are skipped.
    fn parse(&mut self, text: &str) {
        let mut lines = text.lines();
        while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
            let (Some((group, names)), Some((_, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                continue;
            };
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                if let Ok(value) = value.parse::<u64>() {
                    self.values.insert(format!("{group}.{name}"), value);
                }
            }
        }
    }

    /// The counter `Group.Name`, or `None` when this kernel does not count it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.get(name).copied()
    }

    /// How much `name` grew since `before`; 0 when either reading lacks it (use [`get`] to
    /// tell a kernel without the counter from a count of zero).
    ///
    /// [`get`]: Counters::get
    pub fn delta(&self, before: &Counters, name: &str) -> u64 {
        match (self.get(name), before.get(name)) {
            (Some(after), Some(before)) => after.saturating_sub(before),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name line and the value line pair up per group, in both files' format.
    #[test]
    fn parses_name_and_value_lines() {
        let mut c = Counters::default();
        c.parse(
            "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 7\n\
             IpExt: InOctets\nIpExt: 99\n",
        );
        c.parse("Tcp: RtoAlgorithm MaxConn OutRsts\nTcp: 1 -1 12\n");
        assert_eq!(c.get("TcpExt.ListenOverflows"), Some(7));
        assert_eq!(c.get("IpExt.InOctets"), Some(99));
        assert_eq!(c.get("Tcp.OutRsts"), Some(12));
        assert_eq!(c.get("Tcp.MaxConn"), None, "-1 is not a count");
        let mut later = c.clone();
        later.parse("Tcp: OutRsts\nTcp: 15\n");
        assert_eq!(later.delta(&c, "Tcp.OutRsts"), 3);
        assert_eq!(later.delta(&c, "Tcp.NoSuchCounter"), 0);
    }

    /// This machine's kernel counts what the labs read.
    #[test]
    fn reads_this_kernel() {
        let c = Counters::read().expect("read /proc/net counters");
        for name in [
            "TcpExt.ListenOverflows",
            "TcpExt.DelayedACKs",
            "TcpExt.TCPAbortOnClose",
            "Tcp.OutRsts",
            "Tcp.PassiveOpens",
        ] {
            assert!(c.get(name).is_some(), "{name} missing");
        }
    }
}
