//! Two network namespaces joined by a veth pair, for the `keepalive` lab: a peer that can be
//! made to vanish without a FIN by setting its link down. And [`Private`]: one fresh namespace
//! with only loopback, for the labs whose verdicts rest on the kernel's counters.
//!
//! The namespaces and their private /30 exist only while the lab runs: nothing is added to the
//! namespace the lab started in, and [`Namespaces`] removes both on drop — on an error, a panic,
//! or after SIGINT turned into an error by the lab. Namespaces left by a run that was killed
//! outright are removed by the next run (their names carry the dead process's id).

use std::fs::File;
use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use super::{Recorder, wait_child};

/// The server's address, inside its namespace.
pub const SERVER_IP: &str = "10.200.77.1";
/// The client's address, inside its namespace.
pub const CLIENT_IP: &str = "10.200.77.2";
/// The client's end of the veth pair, in the client's namespace.
pub const CLIENT_LINK: &str = "ka1";
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
            "ka0",
            "type",
            "veth",
            "peer",
            "name",
            CLIENT_LINK,
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
            "ka0",
        ])?;
        ip(&[
            "-n",
            cli,
            "addr",
            "add",
            &format!("{CLIENT_IP}/30"),
            "dev",
            "ka1",
        ])?;
        ip(&["-n", srv, "link", "set", "ka0", "up"])?;
        ip(&["-n", cli, "link", "set", CLIENT_LINK, "up"])?;
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
