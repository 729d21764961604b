//! What the kernel holds for each connection, which PSS cannot see: the socket, the file that
//! names it, epoll's entries, and for the models that pay a task per connection, the task's
//! kernel stack, its `task_struct`, its page tables.
//!
//! Read from three places, before and after N connections are opened and left idle:
//! - `/proc/slabinfo` (root only): objects in use × object size of each cache in [`CACHES`],
//!   and of every `kmalloc-*` cache that moved by more than [`NOISE_OBJECTS`] per connection.
//!   SLUB merges caches of the same size and flags, so a cache may live inside another one's
//!   entry (`eventpoll_pwq` inside `anon_vma_chain`, `eventpoll_epi` with `tcp_bind_bucket`):
//!   `/sys/kernel/slab/NAME` is then a link to the shared cache, and the entry is reported once,
//!   named as /proc/slabinfo names it, with the caches it holds.
//! - `/proc/meminfo`: `KernelStack` (a thread's kernel stack is not a slab object) and `Percpu`
//!   (per-CPU counters a process carries), machine-wide.
//! - `VmPTE` of `/proc/PID/status`, summed over the server's processes: their page tables.
//!   (The machine-wide `PageTables` of /proc/meminfo moves with every process that starts or
//!   ends anywhere; the server's own figure does not.)
//! - `/proc/net/sockstat`: `TCP: mem`, pages of socket buffer memory charged to TCP. It is
//!   reported but kept out of the total: it is one counter for the whole machine, every network
//!   namespace's sockets together, batched per CPU, and other processes' sockets move it by far
//!   more than idle connections do (by −100 KiB per connection in a sweep whose previous point
//!   had just closed its sockets).
//!
//! **The client's share.** The connections' other ends are on this host too, and slabs are
//! global: every client socket adds one object to `TCP`, `sock_inode_cache`, `filp` and
//! `dentry` (the socket, its inode, its file, the file's dentry), and its local port one
//! `tcp_bind_bucket` and one `tcp_bind2_bucket`. Those [`CLIENT_SOCKET`] objects are taken off
//! each cache's growth; everything else is the server's. For the port buckets to be the
//! client's own, one each, its sockets are made by [`client_socket`]: bound before they
//! connect, and closed with an RST. (A plain `connect` picks its port itself and shares the
//! bucket of a port that a TIME_WAIT socket still holds: on Linux 6.18 it added between 0.6
//! and 0.8 bucket objects per connection, varying with what earlier runs left behind.) The
//! test `kernel_objects_per_loopback_connection` checks the premise: N loopback connections
//! opened by the test itself grow those caches by the client's objects plus one bare accepted
//! socket's. `TCP: mem` cannot be split by owner and is both ends' (after one round trip, the
//! idle sockets hold little of it).
//!
//! **Noise.** Other processes allocate from the same caches (`dentry`, `filp`, `kmalloc-*`
//! above all) while the connections are opened. Every model's server holds exactly one `TCP`
//! object per connection (its accepted socket), so that cache's server share is a check: far
//! from 1, the reading was disturbed, and [`PerConnection::disturbed`] says so. Objects free in
//! per-CPU slabs count as in use in /proc/slabinfo, a few dozen per cache: small against
//! thousands of connections.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};

use serde::{Deserialize, Serialize};

/// A slab cache a connection may pin, and what its objects are.
pub struct Cache {
    /// The cache's name in the kernel (`/sys/kernel/slab/NAME`).
    pub name: &'static str,
    /// What one object is.
    pub what: &'static str,
}

/// The caches read, besides `kmalloc-*`: per connection for every model (the socket), per
/// watched socket (epoll), per request in flight (io_uring), per thread or process.
pub const CACHES: &[Cache] = &[
    Cache {
        name: "TCP",
        what: "struct tcp_sock: the TCP socket, its queues and timers",
    },
    Cache {
        name: "TCPv6",
        what: "the same for an IPv6 socket",
    },
    Cache {
        name: "sock_inode_cache",
        what: "struct socket_alloc: the socket and its inode in sockfs",
    },
    Cache {
        name: "filp",
        what: "struct file: the open file a descriptor names",
    },
    Cache {
        name: "dentry",
        what: "the socket file's directory entry",
    },
    Cache {
        name: "tcp_bind_bucket",
        what: "a bound local port (the client's ephemeral port)",
    },
    Cache {
        name: "tcp_bind2_bucket",
        what: "a bound local (port, address) pair",
    },
    Cache {
        name: "eventpoll_epi",
        what: "struct epitem: one per descriptor an epoll instance watches",
    },
    Cache {
        name: "eventpoll_pwq",
        what: "struct eppoll_entry: epoll's hook on the socket's wait queue",
    },
    Cache {
        name: "io_kiocb",
        what: "an io_uring request in flight (a multishot receive armed per connection)",
    },
    Cache {
        name: "task_struct",
        what: "a thread (every task, the main thread of a process included)",
    },
    Cache {
        name: "vm_area_struct",
        what: "a mapping: a thread's stack, a process's regions",
    },
    Cache {
        name: "mm_struct",
        what: "a process's address space",
    },
    Cache {
        name: "files_cache",
        what: "a process's descriptor table",
    },
    Cache {
        name: "signal_cache",
        what: "a process's shared signal state",
    },
    Cache {
        name: "sighand_cache",
        what: "a process's signal handlers",
    },
    Cache {
        name: "fs_cache",
        what: "a process's root and working directory",
    },
    Cache {
        name: "pid",
        what: "struct pid: a task's id",
    },
    Cache {
        name: "cred_jar",
        what: "a task's credentials",
    },
    Cache {
        name: "anon_vma",
        what: "reverse map of a process's anonymous pages",
    },
    Cache {
        name: "anon_vma_chain",
        what: "links between mappings and anon_vmas (copied by fork)",
    },
];

/// What one client socket adds to each cache: its `tcp_sock`, socket inode, file and dentry,
/// and the bucket of its ephemeral port (by name and by address).
pub const CLIENT_SOCKET: &[(&str, f64)] = &[
    ("TCP", 1.0),
    ("sock_inode_cache", 1.0),
    ("filp", 1.0),
    ("dentry", 1.0),
    ("tcp_bind_bucket", 1.0),
    ("tcp_bind2_bucket", 1.0),
];

/// What an accepted socket that nothing else watches adds: its `tcp_sock`, inode, file and
/// dentry (the listener's port bucket is shared).
pub const ACCEPTED_SOCKET: &[(&str, f64)] = &[
    ("TCP", 1.0),
    ("sock_inode_cache", 1.0),
    ("filp", 1.0),
    ("dentry", 1.0),
];

/// A `kmalloc-*` cache is reported when it grew or shrank by at least this many objects per
/// connection; under it, it is other processes' noise rather than the connections'.
pub const NOISE_OBJECTS: f64 = 0.05;

/// The memory lines of /proc/meminfo that are kernel memory outside the slabs.
pub const MEMINFO: &[(&str, &str)] = &[
    (
        "KernelStack",
        "kernel stacks: one per thread (16 KiB on x86-64)",
    ),
    (
        "Percpu",
        "per-CPU allocations: a process's counters, among others",
    ),
];

/// The name of the page-table line: the server's processes' `VmPTE`.
pub const PAGE_TABLES: &str = "PageTables";

/// The name of the sockstat line, reported beside the total and not in it.
pub const TCP_MEM: &str = "sockstat TCP mem";

/// A client socket connected to `addr` whose kernel objects are known: bound to a port of its
/// own before it connects (so its port buckets are its own: one `tcp_bind_bucket`, one
/// `tcp_bind2_bucket`), with SO_LINGER 0 (its close is an RST, which leaves no TIME_WAIT socket
/// holding the port for a minute), and `timeout` on the connect and on every read and write.
pub fn client_socket(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    // Bound to the wildcard address, port 0: the kernel gives it a port no one else holds.
    let (family, local) = match addr {
        SocketAddr::V4(_) => (AddressFamily::Inet, SocketAddr::from(([0u8; 4], 0))),
        SocketAddr::V6(_) => (AddressFamily::Inet6, SocketAddr::from(([0u16; 8], 0))),
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros() as _);
    // connect(2) waits at most SO_SNDTIMEO, and then fails with EINPROGRESS.
    socket::setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &tv)?;
    socket::setsockopt(
        &fd,
        sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )?;
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(local),
    )?;
    match socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    ) {
        Ok(()) => Ok(TcpStream::from(fd)),
        Err(nix::errno::Errno::EINPROGRESS) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {addr} took longer than {timeout:?}"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// One cache's entry in /proc/slabinfo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slab {
    /// Objects in use (`active_objs`).
    pub active: u64,
    /// Bytes per object (`objsize`).
    pub size: u64,
}

/// The kernel's memory at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// /proc/slabinfo, by entry name.
    pub slabs: BTreeMap<String, Slab>,
    /// For each cache of [`CACHES`] that has an entry: the entry's name (itself, or the cache
    /// it is merged into).
    pub entry_of: BTreeMap<&'static str, String>,
    /// The [`MEMINFO`] lines, bytes.
    pub meminfo: BTreeMap<&'static str, u64>,
    /// `TCP: mem` of /proc/net/sockstat, pages.
    pub tcp_mem_pages: u64,
    /// `TCP: inuse` of /proc/net/sockstat: TCP sockets in this network namespace.
    pub tcp_inuse: u64,
    /// `VmPTE` summed over a process tree, bytes, when the snapshot was taken of one.
    pub tree_page_tables: Option<u64>,
}

/// `VmPTE` of one `/proc/PID/status` text, in bytes.
pub fn parse_vmpte(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmPTE:"))?;
    let kb: u64 = line["VmPTE:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The page tables of every process of the tree rooted at `root`, bytes (a process that
/// vanished meanwhile, or a zombie without an address space, counts nothing).
pub fn tree_page_tables(root: i32) -> io::Result<u64> {
    let mut total = 0;
    for pid in super::procfs::tree(root)? {
        match fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(text) => total += parse_vmpte(&text).unwrap_or(0),
            Err(e) if super::procfs::vanished(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// [`snapshot`], with the page tables of the server's tree rooted at `root`.
pub fn snapshot_of(root: i32) -> io::Result<Snapshot> {
    let mut s = snapshot()?;
    s.tree_page_tables = Some(tree_page_tables(root)?);
    Ok(s)
}

/// Parses /proc/slabinfo (version 2.1): name, active_objs, num_objs, objsize, ...
pub fn parse_slabinfo(text: &str) -> BTreeMap<String, Slab> {
    text.lines()
        .filter(|l| !l.starts_with("slabinfo") && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            Some((
                f.first()?.to_string(),
                Slab {
                    active: f.get(1)?.parse().ok()?,
                    size: f.get(3)?.parse().ok()?,
                },
            ))
        })
        .collect()
}

/// Parses the [`MEMINFO`] lines of /proc/meminfo (kB) into bytes.
pub fn parse_meminfo(text: &str) -> BTreeMap<&'static str, u64> {
    MEMINFO
        .iter()
        .filter_map(|&(key, _)| {
            let line = text.lines().find(|l| l.split(':').next() == Some(key))?;
            let kb: u64 = line
                .split(':')
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((key, kb * 1024))
        })
        .collect()
}

/// Parses `TCP: inuse N ... mem M` of /proc/net/sockstat: (inuse, mem pages).
pub fn parse_sockstat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    let value = |key: &str| {
        f.iter()
            .position(|&w| w == key)
            .and_then(|i| f.get(i + 1)?.parse().ok())
    };
    Some((value("inuse")?, value("mem")?))
}

/// Where the cache called `name` lives: the folder `/sys/kernel/slab/NAME` links to (merged
/// caches share one), or its own.
fn slab_group(name: &str) -> Option<String> {
    let path = Path::new("/sys/kernel/slab").join(name);
    match fs::read_link(&path) {
        Ok(target) => Some(target.file_name()?.to_string_lossy().into_owned()),
        Err(_) if path.is_dir() => Some(name.to_string()),
        Err(_) => None,
    }
}

/// Finds the /proc/slabinfo entry of each cache of [`CACHES`]: its own, or the one it is
/// merged into (the entry whose `/sys/kernel/slab` link goes to the same place).
fn entries(slabs: &BTreeMap<String, Slab>) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let mut groups: Option<BTreeMap<String, String>> = None;
    for cache in CACHES {
        if slabs.contains_key(cache.name) {
            out.insert(cache.name, cache.name.to_string());
            continue;
        }
        let Some(group) = slab_group(cache.name) else {
            continue;
        };
        // The group of every entry, read once and only when a cache is merged.
        let groups = groups.get_or_insert_with(|| {
            slabs
                .keys()
                .filter_map(|e| Some((slab_group(e)?, e.clone())))
                .collect()
        });
        if let Some(entry) = groups.get(&group) {
            out.insert(cache.name, entry.clone());
        }
    }
    out
}

/// Reads the kernel's memory now. Fails when /proc/slabinfo cannot be read (it is root's).
pub fn snapshot() -> io::Result<Snapshot> {
    let slabs = match fs::read_to_string("/proc/slabinfo") {
        Ok(text) => parse_slabinfo(&text),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(io::Error::new(
                e.kind(),
                "/proc/slabinfo is readable by root only",
            ));
        }
        Err(e) => return Err(io::Error::new(e.kind(), format!("/proc/slabinfo: {e}"))),
    };
    let meminfo = parse_meminfo(&fs::read_to_string("/proc/meminfo")?);
    let (tcp_inuse, tcp_mem_pages) =
        parse_sockstat(&fs::read_to_string("/proc/net/sockstat")?).unwrap_or((0, 0));
    Ok(Snapshot {
        entry_of: entries(&slabs),
        slabs,
        meminfo,
        tcp_mem_pages,
        tcp_inuse,
        tree_page_tables: None,
    })
}

/// One entry's share of a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheShare {
    /// Bytes per connection (the server's share).
    pub bytes_per_connection: f64,
    /// Objects per connection (the server's share); `null` for meminfo and sockstat lines.
    pub objects_per_connection: Option<f64>,
    /// Bytes per object; `null` for meminfo and sockstat lines.
    pub object_size: Option<u64>,
    /// The caches of [`CACHES`] this entry holds, when it holds others than its own name (a
    /// merged cache), or what the line is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
}

/// How far the server's `TCP` objects per connection may be from one before a reading is
/// called disturbed.
pub const DISTURBED: f64 = 0.1;

/// The kernel's memory per connection, the server's share.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerConnection {
    /// Every entry read, by its name in /proc/slabinfo (or `KernelStack`, `PageTables`,
    /// `Percpu`, `sockstat TCP mem`).
    pub caches: BTreeMap<String, CacheShare>,
    /// The sum of the entries but `sockstat TCP mem`, bytes per connection.
    pub total: f64,
}

impl PerConnection {
    /// Why the reading looks disturbed, if it does: the server's share of `TCP` objects,
    /// which is one per connection for every model, is off by more than a tenth.
    pub fn disturbed(&self) -> Option<String> {
        let tcp = self.caches.get("TCP")?.objects_per_connection?;
        ((tcp - 1.0).abs() > DISTURBED).then(|| {
            format!("kernel memory disturbed: {tcp:.2} TCP objects per connection, expected 1")
        })
    }
}

/// Objects per connection that the clients' sockets account for, by /proc/slabinfo entry.
fn client_objects(snapshot: &Snapshot) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for &(cache, n) in CLIENT_SOCKET {
        if let Some(entry) = snapshot.entry_of.get(cache) {
            *out.entry(entry.clone()).or_insert(0.0) += n;
        }
    }
    out
}

/// The growth from `base` to `loaded`, divided by `connections`, with the clients' sockets
/// taken off (see the module's doc).
pub fn per_connection(base: &Snapshot, loaded: &Snapshot, connections: usize) -> PerConnection {
    let n = connections.max(1) as f64;
    let client = client_objects(loaded);
    let mut caches = BTreeMap::new();
    let mut holds: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (cache, entry) in &loaded.entry_of {
        holds
            .entry(entry.clone())
            .or_default()
            .push(cache.to_string());
    }
    let kmalloc = loaded.slabs.keys().filter(|e| e.starts_with("kmalloc-"));
    let names: Vec<String> = holds.keys().cloned().chain(kmalloc.cloned()).collect();
    for entry in names {
        let (Some(after), Some(before)) = (loaded.slabs.get(&entry), base.slabs.get(&entry)) else {
            continue;
        };
        let grown = (after.active as f64 - before.active as f64) / n;
        let is_kmalloc = !holds.contains_key(&entry);
        if is_kmalloc && grown.abs() < NOISE_OBJECTS {
            continue;
        }
        let objects = grown - client.get(&entry).copied().unwrap_or(0.0);
        let inside = holds.remove(&entry).unwrap_or_default();
        caches.insert(
            entry.clone(),
            CacheShare {
                bytes_per_connection: objects * after.size as f64,
                objects_per_connection: Some(objects),
                object_size: Some(after.size),
                holds: if inside.len() == 1 && inside[0] == entry {
                    Vec::new()
                } else {
                    inside
                },
            },
        );
    }
    for &(key, _) in MEMINFO {
        if let (Some(&a), Some(&b)) = (loaded.meminfo.get(key), base.meminfo.get(key)) {
            caches.insert(key.to_string(), line_share((a as f64 - b as f64) / n));
        }
    }
    if let (Some(a), Some(b)) = (loaded.tree_page_tables, base.tree_page_tables) {
        let mut pt = line_share((a as f64 - b as f64) / n);
        pt.holds = vec!["VmPTE of the server's processes".into()];
        caches.insert(PAGE_TABLES.into(), pt);
    }
    let total = caches.values().map(|c| c.bytes_per_connection).sum();
    let pages = loaded.tcp_mem_pages as f64 - base.tcp_mem_pages as f64;
    let mut tcp_mem = line_share(pages * page_size() as f64 / n);
    tcp_mem.holds = vec!["machine-wide, both ends; not in the total".into()];
    caches.insert(TCP_MEM.into(), tcp_mem);
    PerConnection { caches, total }
}

fn line_share(bytes: f64) -> CacheShare {
    CacheShare {
        bytes_per_connection: bytes,
        objects_per_connection: None,
        object_size: None,
        holds: Vec::new(),
    }
}

fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(p)) if p > 0 => p as u64,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLABINFO: &str = "slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
TCP                  104    104   2368   13    8 : tunables    0    0    0 : slabdata      8      8      0
eventpoll_epi        311    416    128   32    1 : tunables    0    0    0 : slabdata     13     13      0
kmalloc-64          1646   1856     64   64    1 : tunables    0    0    0 : slabdata     29     29      0
";

    /// The fields are active objects and object size; the headers are skipped.
    #[test]
    fn slabinfo_fields() {
        let s = parse_slabinfo(SLABINFO);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s["TCP"],
            Slab {
                active: 104,
                size: 2368
            }
        );
        assert_eq!(s["kmalloc-64"].active, 1646);
    }

    /// Kilobytes become bytes; `Percpu` is not confused with another line.
    #[test]
    fn meminfo_sockstat_and_vmpte() {
        let m = parse_meminfo("KernelStack:   1412 kB\nSecPageTables: 9 kB\nPercpu:  688 kB\n");
        assert_eq!(m["KernelStack"], 1412 * 1024);
        assert_eq!(m["Percpu"], 688 * 1024);
        assert_eq!(
            parse_vmpte("VmLib:\t 2 kB\nVmPTE:\t      52 kB\n"),
            Some(52 * 1024)
        );
        let t = "sockets: used 12\nTCP: inuse 7 orphan 0 tw 2 alloc 9 mem 3\nUDP: inuse 0 mem 0\n";
        assert_eq!(parse_sockstat(t), Some((7, 3)));
    }

    /// The clients' objects are taken off a merged entry once per cache it holds; a kmalloc
    /// cache that barely moved is left out; the total is the entries' sum.
    #[test]
    fn growth_less_the_clients_share() {
        let slab = |active, size| Slab { active, size };
        let mut base = Snapshot::default();
        base.slabs.insert("TCP".into(), slab(100, 2000));
        base.slabs.insert("eventpoll_epi".into(), slab(50, 128));
        base.slabs.insert("kmalloc-64".into(), slab(1000, 64));
        base.slabs.insert("kmalloc-512".into(), slab(1000, 512));
        base.entry_of.insert("TCP", "TCP".into());
        base.entry_of
            .insert("eventpoll_epi", "eventpoll_epi".into());
        base.entry_of
            .insert("tcp_bind_bucket", "eventpoll_epi".into());
        base.entry_of
            .insert("tcp_bind2_bucket", "eventpoll_epi".into());
        base.meminfo.insert("KernelStack", 1 << 20);
        let mut loaded = base.clone();
        // 100 connections: both ends' sockets, the client's two port buckets and the server's
        // epitem per connection; kmalloc-64 moved by 3 objects (noise), kmalloc-512 by 100.
        loaded.slabs.insert("TCP".into(), slab(300, 2000));
        loaded.slabs.insert("eventpoll_epi".into(), slab(350, 128));
        loaded.slabs.insert("kmalloc-64".into(), slab(1003, 64));
        loaded.slabs.insert("kmalloc-512".into(), slab(1100, 512));
        loaded
            .meminfo
            .insert("KernelStack", (1 << 20) + 100 * 16384);
        let k = per_connection(&base, &loaded, 100);
        assert_eq!(k.caches["TCP"].objects_per_connection, Some(1.0));
        assert_eq!(k.caches["TCP"].bytes_per_connection, 2000.0);
        let epi = &k.caches["eventpoll_epi"];
        assert_eq!(epi.objects_per_connection, Some(1.0));
        assert_eq!(
            epi.holds,
            ["eventpoll_epi", "tcp_bind2_bucket", "tcp_bind_bucket"]
        );
        assert!(!k.caches.contains_key("kmalloc-64"));
        assert_eq!(k.caches["kmalloc-512"].bytes_per_connection, 512.0);
        assert_eq!(k.caches["KernelStack"].bytes_per_connection, 16384.0);
        assert_eq!(k.total, 2000.0 + 128.0 + 512.0 + 16384.0);
        // sockstat's machine-wide TCP memory is shown, not added.
        assert!(k.caches.contains_key(TCP_MEM));
        assert!(k.disturbed().is_none());
    }

    /// A TCP share far from one object per connection marks the reading as disturbed.
    #[test]
    fn disturbed_when_tcp_is_off() {
        let mut k = PerConnection::default();
        k.caches.insert(
            "TCP".into(),
            CacheShare {
                bytes_per_connection: 0.0,
                objects_per_connection: Some(1.4),
                object_size: Some(2368),
                holds: Vec::new(),
            },
        );
        assert!(k.disturbed().expect("disturbed").contains("1.40"));
    }
}
