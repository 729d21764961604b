//! Two network namespaces joined by a veth pair, for the labs that need a second host: a peer
//! that can vanish without a FIN (its link set down), a server whose sysctls are set low
//! without touching the machine's, forged SYNs, routes that drop or refuse. And [`Private`]:
//! one fresh namespace with only loopback, for the labs whose verdicts rest on the kernel's
//! counters.
//!
//! The namespaces and their private /30 exist only while the lab runs: nothing is added to the
//! namespace the lab started in, and [`Namespaces`] removes both on drop — on an error, a panic,
//! or after SIGINT turned into an error by the lab. Namespaces left by a run that was killed
//! outright are removed by the next run (their names carry the dead process's id).
//!
//! Most `net.*` sysctls are per namespace (tcp_syncookies, tcp_retries2, ip_local_port_range,
//! ...): [`Namespaces::set_sysctl`] writes one inside a namespace, where only the lab's own
//! sockets see it, and [`Namespaces::counters`] reads that namespace's counters.

use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use super::counters::Counters;
use super::{Recorder, wait_child};
use crate::server::shutdown::Shutdown;

/// The server's address, inside its namespace.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 77, 1);
/// The client's address, inside its namespace.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 77, 2);
/// The client's end of the veth pair, in the client's namespace.
pub const CLIENT_LINK: &str = "ka1";
/// The server's end of the veth pair, in the server's namespace.
pub const SERVER_LINK: &str = "ka0";
/// The links' hardware addresses, fixed (locally administered) so that neighbour entries can
/// be pinned: see [`Namespaces::pin_neighbours`].
const SERVER_MAC: &str = "02:00:0a:c8:4d:01";
const CLIENT_MAC: &str = "02:00:0a:c8:4d:02";
const PREFIX: &str = "smlab-";

/// Why the namespaces cannot be made here, or `None` if they can be tried.
pub fn unavailable() -> Option<String> {
    let euid = effective_uid();
    if euid != Some(0) {
        return Some(format!(
            "not root (euid {}): creating network namespaces needs CAP_SYS_ADMIN",
            euid.map_or("unknown".to_string(), |u| u.to_string())
        ));
    }
    match ip(&["-V"]) {
        Ok(()) => None,
        Err(_) => Some("`ip` from iproute2 is not installed".to_string()),
    }
}

/// Fails with the reason when the namespaces cannot be made here, for the labs that have
/// nothing to show without them.
pub fn needed() -> io::Result<()> {
    match unavailable() {
        None => Ok(()),
        Some(reason) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "this lab stages its network in two network namespaces, which needs root and \
                 `ip` from iproute2: {reason}"
            ),
        )),
    }
}

/// Fails if SIGINT or SIGTERM arrived, so that the namespaces are removed on the way out.
pub fn check(shutdown: &Shutdown) -> io::Result<()> {
    if shutdown.requested() {
        Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
    } else {
        Ok(())
    }
}

/// Sleeps for `d` in short steps, failing as soon as SIGINT or SIGTERM arrives.
pub fn pause(shutdown: &Shutdown, d: Duration) -> io::Result<()> {
    let end = std::time::Instant::now() + d;
    loop {
        check(shutdown)?;
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// The effective user id, from the second field of the Uid line of /proc/self/status.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `ip ARGS`, waiting at most five seconds.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let mut child = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = wait_child(&mut child, Duration::from_secs(5))?;
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    Err(io::Error::other(format!(
        "ip {}: {}",
        args.join(" "),
        err.trim()
    )))
}

/// The server's and the client's network namespaces, joined by a veth pair; removed on drop,
/// after moving this thread back to the namespace it started in.
pub struct Namespaces {
    /// The server's namespace.
    pub server: String,
    /// The client's namespace.
    pub client: String,
    home: File,
    made: Vec<String>,
}

impl Namespaces {
    /// Creates both namespaces, the veth pair and the addresses.
    pub fn create(rec: &mut Recorder) -> io::Result<Namespaces> {
        remove_stale();
        let pid = std::process::id();
        let mut ns = Namespaces {
            server: format!("{PREFIX}{pid}-srv"),
            client: format!("{PREFIX}{pid}-cli"),
            home: File::open("/proc/thread-self/ns/net")?,
            made: Vec::new(),
        };
        for name in [ns.server.clone(), ns.client.clone()] {
            ip(&["netns", "add", &name])?;
            ns.made.push(name);
        }
        let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
        ip(&[
            "-n",
            srv,
            "link",
            "add",
            SERVER_LINK,
            "address",
            SERVER_MAC,
            "type",
            "veth",
            "peer",
            "name",
            CLIENT_LINK,
            "address",
            CLIENT_MAC,
            "netns",
            cli,
        ])?;
        ip(&[
            "-n",
            srv,
            "addr",
            "add",
            &format!("{SERVER_IP}/30"),
            "dev",
            SERVER_LINK,
        ])?;
        ip(&[
            "-n",
            cli,
            "addr",
            "add",
            &format!("{CLIENT_IP}/30"),
            "dev",
            CLIENT_LINK,
        ])?;
        ip(&["-n", srv, "link", "set", SERVER_LINK, "up"])?;
        ip(&["-n", cli, "link", "set", CLIENT_LINK, "up"])?;
        // Loopback comes down in a new namespace; some labs use 127.0.0.1 inside one.
        ip(&["-n", srv, "link", "set", "lo", "up"])?;
        ip(&["-n", cli, "link", "set", "lo", "up"])?;
        rec.say(format!(
            "namespaces {srv} ({SERVER_IP}) and {cli} ({CLIENT_IP}), joined by a veth pair"
        ));
        Ok(ns)
    }

    /// Moves this thread into the named namespace: sockets made now live there.
    pub fn enter(&self, name: &str) -> io::Result<()> {
        let handle = File::open(format!("/run/netns/{name}"))?;
        setns(handle, CloneFlags::CLONE_NEWNET)?;
        Ok(())
    }

    /// Moves this thread back to the namespace it started in.
    pub fn leave(&self) -> io::Result<()> {
        setns(&self.home, CloneFlags::CLONE_NEWNET)?;
        Ok(())
    }

    /// Runs `f` inside namespace `name`, and comes back whatever it returns.
    pub fn inside<T>(&self, name: &str, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.enter(name)?;
        let result = f();
        self.leave()?;
        result
    }

    /// A listener on the server's address, on a port the kernel picks, made as every model's is
    /// (`net::listen`: SO_REUSEADDR, the default backlog).
    pub fn listen(&self) -> io::Result<TcpListener> {
        let at = SocketAddr::V4(SocketAddrV4::new(SERVER_IP, 0));
        self.inside(&self.server, || {
            crate::server::net::listen(at, &crate::server::net::ListenOptions::default())
        })
    }

    /// Runs `ip ARGS` on namespace `name` (`ip -n NAME ARGS`).
    pub fn ip(&self, name: &str, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Makes each side's neighbour entry for the other permanent, so that a host that stops
    /// answering ARP (its address gone) means silence and nothing more. An entry that fails to
    /// resolve reports a link failure for the packets waiting on it (`arp_error_report` calls
    /// `dst_link_failure`, net/ipv4/arp.c), which reaches the sockets as "host unreachable" —
    /// a second effect on top of the silence a lab wants to show.
    pub fn pin_neighbours(&self) -> io::Result<()> {
        self.ip(
            &self.client,
            &[
                "neigh",
                "replace",
                &SERVER_IP.to_string(),
                "lladdr",
                SERVER_MAC,
                "dev",
                CLIENT_LINK,
                "nud",
                "permanent",
            ],
        )?;
        self.ip(
            &self.server,
            &[
                "neigh",
                "replace",
                &CLIENT_IP.to_string(),
                "lladdr",
                CLIENT_MAC,
                "dev",
                SERVER_LINK,
                "nud",
                "permanent",
            ],
        )
    }

    /// Sets a sysctl (`net/ipv4/tcp_syncookies`) inside namespace `name` and returns the
    /// value read back. A sysctl opened from a thread inside a namespace is that namespace's.
    pub fn set_sysctl(&self, name: &str, sysctl: &str, value: &str) -> io::Result<String> {
        self.inside(name, || {
            let path = format!("/proc/sys/{sysctl}");
            std::fs::write(&path, value)
                .map_err(|e| io::Error::new(e.kind(), format!("write {value} to {path}: {e}")))?;
            super::sysctl(sysctl)
        })
    }

    /// Reads a sysctl inside namespace `name`.
    pub fn sysctl(&self, name: &str, sysctl: &str) -> io::Result<String> {
        self.inside(name, || super::sysctl(sysctl))
    }

    /// The counters of namespace `name` (/proc/net/netstat and /proc/net/snmp).
    pub fn counters(&self, name: &str) -> io::Result<Counters> {
        self.inside(name, Counters::read)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = self.leave();
        for name in self.made.iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Removes namespaces this lab left behind in a run that was killed outright (their process
/// is gone). Nothing else is touched.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// A network namespace of this thread's own, with only loopback, for a lab whose verdict
/// rests on the kernel's counters: inside it they count that lab's sockets alone, where in the
/// shared namespace every other connection on the machine adds to them. It has no name and no
/// entry under /run/netns: it lives while this thread or one of its sockets is in it, so
/// nothing is left behind however the lab ends. The thread goes back to the namespace it
/// started in on drop.
pub struct Private {
    home: File,
}

impl Private {
    /// Moves this thread into a fresh namespace and sets its loopback up; `Ok(Err(reason))`
    /// when that is not possible here (not root, or no `ip`).
    pub fn enter() -> io::Result<Result<Private, String>> {
        if let Some(reason) = unavailable() {
            return Ok(Err(reason));
        }
        let home = File::open("/proc/thread-self/ns/net")?;
        // Root without CAP_SYS_ADMIN (a container) is refused here: then the shared namespace.
        if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNET) {
            return Ok(Err(format!("unshare(CLONE_NEWNET): {e}")));
        }
        let private = Private { home };
        // The child `ip` inherits this thread's namespace, so this is the new namespace's lo.
        // On failure `private` drops, and the thread goes home.
        if let Err(e) = ip(&["link", "set", "lo", "up"]) {
            return Ok(Err(e.to_string()));
        }
        Ok(Ok(private))
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = setns(&self.home, CloneFlags::CLONE_NEWNET);
    }
}

/// Where a lab's counters count: a private namespace (exact counts) or the shared one (other
/// traffic adds to them, so only "at least" can be checked).
pub enum Scope {
    /// In a namespace of the lab's own, until this value drops.
    Private {
        /// Held for its drop, which brings the thread back.
        _inside: Private,
    },
    /// In the namespace the lab was started in, with the reason a private one was not made.
    Shared {
        /// Why a private namespace was not made.
        reason: String,
    },
}

impl Scope {
    /// Enters a private namespace if this process may, and records which it is under
    /// `namespace` (and `namespace_reason` when shared).
    pub fn enter(rec: &mut Recorder) -> io::Result<Scope> {
        let scope = match Private::enter()? {
            Ok(inside) => Scope::Private { _inside: inside },
            Err(reason) => Scope::Shared { reason },
        };
        match &scope {
            Scope::Private { .. } => {
                rec.saw(
                    "namespace",
                    "where the counters are read: a fresh network namespace (exact counts)",
                    "private",
                );
            }
            Scope::Shared { reason } => {
                rec.saw(
                    "namespace",
                    "where the counters are read: the shared namespace (at-least counts)",
                    "shared",
                );
                rec.saw("namespace_reason", "why not a private one", reason.clone());
            }
        }
        Ok(scope)
    }

    /// Whether counts are this lab's alone.
    pub fn exact(&self) -> bool {
        matches!(self, Scope::Private { .. })
    }

    /// Whether a counter's growth `got` agrees with `expected`: equal in a private namespace,
    /// at least `expected` in the shared one.
    pub fn agrees(&self, got: u64, expected: u64) -> bool {
        if self.exact() {
            got == expected
        } else {
            got >= expected
        }
    }

    /// "exactly" or "at least", for a verdict line.
    pub fn word(&self) -> &'static str {
        if self.exact() { "exactly" } else { "at least" }
    }
}
