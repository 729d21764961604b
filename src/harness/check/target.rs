//! The server under test: how to start it, and what is known about it.
//!
//! A [`Target`] is either one of the workbook's models — started as `serve MODEL --addr
//! 127.0.0.1:0`, ready when it prints its `listening on` line, and known by the registry (how
//! many clients it serves at once, its descriptor limit, that it exits 0 on SIGTERM) — or any
//! command with `{port}` in it: a free port is picked, the command is run with it (split into
//! words as a shell would, but run without one, so that a signal reaches the server itself),
//! and it is ready once a connection to 127.0.0.1:PORT succeeds. Of such a server nothing is
//! known but what the user states ([`Known`]); a case that depends on what is not stated says
//! so and does not run.
//!
//! Either way the server runs in a process group of its own ([`ServerProcess`]): stopping it
//! reaches only what it started, and it is reaped.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::resource::{Resource, setrlimit};
use serde::Serialize;

use crate::harness::spawn::{ServerProcess, serve_command};
use crate::server::model::{Config, Model};
use crate::server::protocol::Protocol;

/// Workers asked of the models that have a fixed number of them: enough to show a pool's
/// limit, few enough to reach it with a handful of clients.
pub const MODEL_WORKERS: usize = 4;

/// The idle timeout a model is started with by the cases that need one.
pub const MODEL_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The request-head deadline a model is started with by the cases that need one.
pub const MODEL_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times a command is started on a fresh port before its failure to start is final
/// (another process may take the free port between its pick and the server's bind).
const START_ATTEMPTS: usize = 3;

/// What is known about a server beyond what a case can observe.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Known {
    /// How many clients it serves at once, if that is limited by design (a pool of N, an
    /// iterative server's 1); `None`: no limit is stated.
    pub concurrency: Option<usize>,
    /// The highest descriptor it can watch, if it has such a limit (select's FD_SETSIZE).
    pub fd_limit: Option<usize>,
    /// Whether SIGTERM makes it close every connection, end every process it started, and
    /// exit 0 — the graceful shutdown the SIGTERM cases test.
    pub signals: bool,
    /// The idle timeout it closes silent connections after, if it has one (a model is given
    /// one by the cases that need it; a command is taken at the user's word).
    #[serde(serialize_with = "seconds")]
    pub idle_timeout: Option<Duration>,
    /// The deadline for a whole request head, if it has one (HTTP: a 408 and a close when a
    /// head is still incomplete that long after its first byte).
    #[serde(serialize_with = "seconds")]
    pub header_timeout: Option<Duration>,
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// What a case asks of the server it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Start it with its idle timeout ([`Known::idle_timeout`]): a model gets
    /// `--idle-timeout`; a command has its own or none.
    pub idle_timeout: bool,
    /// Start it with its request-head deadline ([`Known::header_timeout`]): a model gets
    /// `--header-timeout`; a command has its own or none.
    pub header_timeout: bool,
    /// A model's `--out-cap`; a command keeps its own cap.
    pub out_cap: Option<usize>,
    /// A model's `--max-body`; a command keeps its own limit.
    pub max_body: Option<u64>,
    /// RLIMIT_NOFILE for the server (soft and hard), set between fork and exec.
    pub nofile: Option<u64>,
}

/// How a target is started.
#[derive(Clone, Debug)]
enum Launch {
    /// `BIN serve MODEL --addr 127.0.0.1:0 --protocol P --workers N`.
    Model {
        bin: PathBuf,
        model: &'static dyn Model,
        workers: usize,
    },
    /// A command template, split into words, `{port}` (and `{protocol}`) in any of them.
    Command {
        template: String,
        words: Vec<String>,
    },
}

/// The server under test.
#[derive(Clone, Debug)]
pub struct Target {
    launch: Launch,
    known: Known,
}

impl std::fmt::Debug for dyn Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Target {
    /// A model of the registry, run by `bin` (the `server-models` binary) with `workers`
    /// workers; what it is known to do comes from the registry.
    pub fn model(bin: &Path, model: &'static dyn Model, workers: usize) -> Target {
        let config = Config {
            workers,
            ..Config::default()
        };
        Target {
            known: Known {
                concurrency: model.concurrency().limit(&config),
                fd_limit: model.fd_limit(),
                signals: true,
                idle_timeout: Some(MODEL_IDLE_TIMEOUT),
                header_timeout: Some(MODEL_HEADER_TIMEOUT),
            },
            launch: Launch::Model {
                bin: bin.to_path_buf(),
                model,
                workers,
            },
        }
    }

    /// Any server, started by `template` (`./c-epoll echo {port}`), of which `known` is all
    /// that is known. The template is split into words as a shell would split it; it must
    /// name `{port}`, where the server is to listen on 127.0.0.1.
    pub fn command(template: &str, known: Known) -> io::Result<Target> {
        let words = shlex::split(template).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot split the command {template:?} into words (an open quote?)"),
            )
        })?;
        if words.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the command is empty",
            ));
        }
        if !words.iter().any(|w| w.contains("{port}")) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the command {template:?} does not say where to listen: put {{port}} where \
                     the port goes (the server must listen on 127.0.0.1:{{port}})"
                ),
            ));
        }
        Ok(Target {
            launch: Launch::Command {
                template: template.to_string(),
                words,
            },
            known,
        })
    }

    /// What is known about the server.
    pub fn known(&self) -> &Known {
        &self.known
    }

    /// The model's name, or the command template.
    pub fn name(&self) -> &str {
        match &self.launch {
            Launch::Model { model, .. } => model.name(),
            Launch::Command { template, .. } => template,
        }
    }

    /// The registry's model, if the target is one.
    pub fn registry_model(&self) -> Option<&'static dyn Model> {
        match &self.launch {
            Launch::Model { model, .. } => Some(*model),
            Launch::Command { .. } => None,
        }
    }

    /// Starts the server for `protocol`, as `opts` asks, and waits until it accepts
    /// connections.
    pub fn start(&self, protocol: Protocol, opts: &ServerOptions) -> io::Result<ServerProcess> {
        match &self.launch {
            Launch::Model {
                bin,
                model,
                workers,
            } => {
                let mut args = vec!["--workers".to_string(), workers.to_string()];
                if opts.idle_timeout
                    && let Some(t) = self.known.idle_timeout
                {
                    args.extend(["--idle-timeout".into(), t.as_secs_f64().to_string()]);
                }
                if opts.header_timeout
                    && let Some(t) = self.known.header_timeout
                {
                    args.extend(["--header-timeout".into(), t.as_secs_f64().to_string()]);
                }
                if let Some(cap) = opts.out_cap {
                    args.extend(["--out-cap".into(), cap.to_string()]);
                }
                if let Some(max) = opts.max_body {
                    args.extend(["--max-body".into(), max.to_string()]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut cmd = serve_command(bin, model.name(), protocol, &args);
                limit_descriptors(&mut cmd, opts.nofile);
                ServerProcess::start_command(cmd)
            }
            Launch::Command { words, .. } => {
                let mut last = None;
                for _ in 0..START_ATTEMPTS {
                    let port = free_port()?;
                    let word = |w: &String| {
                        w.replace("{port}", &port.to_string())
                            .replace("{protocol}", protocol.name())
                    };
                    let mut cmd = Command::new(word(&words[0]));
                    cmd.args(words[1..].iter().map(word));
                    limit_descriptors(&mut cmd, opts.nofile);
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                    match ServerProcess::start_on(cmd, addr) {
                        Ok(server) => return Ok(server),
                        // A command that cannot be run at all will not run on another port.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(e),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| io::Error::other("the server did not start")))
            }
        }
    }
}

/// A port no socket on 127.0.0.1 uses now: bound with port 0 (the kernel picks) and closed.
/// Another process may take it before the server binds it; [`Target::start`] then tries again.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Makes `cmd` start with RLIMIT_NOFILE = `nofile` (soft and hard), if one is given.
fn limit_descriptors(cmd: &mut Command, nofile: Option<u64>) {
    let Some(n) = nofile else { return };
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed; it makes one setrlimit(2) system call and allocates nothing.
    unsafe {
        cmd.pre_exec(move || Ok(setrlimit(Resource::RLIMIT_NOFILE, n, n)?));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template is split as a shell splits it, and must say where the port goes.
    #[test]
    fn a_command_needs_its_port() {
        let t = Target::command("'/tmp/my server' echo {port}", Known::default()).expect("ok");
        assert_eq!(t.name(), "'/tmp/my server' echo {port}");
        match &t.launch {
            Launch::Command { words, .. } => {
                assert_eq!(words, &["/tmp/my server", "echo", "{port}"])
            }
            Launch::Model { .. } => panic!("a command"),
        }
        let err = Target::command("./server 8080", Known::default()).expect_err("no port");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("{port}"), "{err}");
        assert!(Target::command("./server '{port}", Known::default()).is_err());
        assert!(Target::command("", Known::default()).is_err());
    }

    /// A model is known by the registry: a pool's limit is its workers.
    #[test]
    fn a_model_is_known_by_the_registry() {
        let prefork = crate::server::model::find("prefork").expect("registered");
        let t = Target::model(Path::new("server-models"), prefork, 3);
        assert_eq!(t.known().concurrency, Some(3));
        assert!(t.known().signals);
        let select = crate::server::model::find("select").expect("registered");
        let t = Target::model(Path::new("server-models"), select, 3);
        assert_eq!(t.known().concurrency, None);
        assert!(t.known().fd_limit.is_some());
    }
}
