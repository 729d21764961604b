//! `fork-close`: after fork(), close() only drops a reference; shutdown() acts on the socket.
//!
//! Two connections are accepted, then the process forks: parent and child each hold both
//! server sockets. The parent close()s the first — the kernel sends nothing, because the
//! child's descriptor still refers to the socket — and shutdown(SHUT_WR)s the second, which
//! sends a FIN at once although the child holds it too. Then the child closes its copy of the
//! first, the last reference goes, and only now does that client see its FIN.
//!
//! That is why `fork-per-conn`'s parent must close its copy of every connection it hands to a
//! child (or the client never sees EOF, and the parent runs out of descriptors), and why its
//! child closes the listener.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::poll::PollFlags;

use super::{
    Forked, Lab, Recorder, Verdict, accept_within, connect, describe_status, diag, loopback_any,
    outcome, poll_names, read_once, render, settled_state, wait_for,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "fork-close",
    summary: "after fork, close() in one process sends no FIN; shutdown() does",
    claim: "after fork(), close() in one process sends no FIN while another process still holds \
            the descriptor (close drops a reference); shutdown() sends the FIN at once",
    run,
};

const WAIT: Duration = Duration::from_secs(1);
/// How long a client watches for a FIN that should not come.
const QUIET: Duration = Duration::from_millis(200);

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    let server_addr = listener.local_addr()?;
    let client1 = connect(server_addr)?;
    let server1 = accept_within(&listener, WAIT)?;
    let client2 = connect(server_addr)?;
    let server2 = accept_within(&listener, WAIT)?;
    let (addr1, addr2) = (client1.local_addr()?, client2.local_addr()?);
    client1.set_nonblocking(true)?;
    client2.set_nonblocking(true)?;

    let first = server1.as_raw_fd();
    let mut child = Forked::spawn(|orders| {
        while let Some(order) = orders.wait() {
            if order == b'c' {
                // The child's copy of the first connection. Closed by number: the child ends
                // with _exit, so the OwnedFd it inherited is never dropped a second time.
                let closed = nix::unistd::close(first);
                orders.answer(if closed.is_ok() { b'1' } else { b'0' });
            }
        }
        0
    })?;
    rec.say(format!(
        "two connections accepted, then fork(): process {} holds both server sockets too",
        child.pid()
    ));

    drop(server1);
    rec.say("parent: close(connection 1)");
    let quiet = rec.saw(
        "client1_after_parent_close",
        format!("client 1: poll(POLLIN) for {QUIET:?}"),
        poll_names(wait_for(&client1, PollFlags::POLLIN, QUIET)?),
    );
    let no_fin = rec.saw("client1_read", "client 1: read()", read_once(&client1));
    let still = rec.saw(
        "server1_state",
        "server side of connection 1",
        diag::state(server_addr, addr1)?,
    );

    let shut = rec.saw(
        "parent_shutdown",
        "parent: shutdown(connection 2, SHUT_WR)",
        outcome(server2.shutdown(Shutdown::Write).map(|()| "ok")),
    );
    wait_for(&client2, PollFlags::POLLIN, WAIT)?;
    let fin2 = rec.saw("client2_read", "client 2: read()", read_once(&client2));
    let state2 = rec.saw(
        "server2_state",
        "server side of connection 2",
        settled_state(server_addr, addr2, &["FIN_WAIT1"])?,
    );

    let closed = child.ask(b'c', WAIT)?;
    rec.saw(
        "child_close",
        "child: close(its copy of connection 1)",
        if closed == b'1' { "ok" } else { "failed" },
    );
    wait_for(&client1, PollFlags::POLLIN, WAIT)?;
    let fin1 = rec.saw(
        "client1_read_after_child_close",
        "client 1: read()",
        read_once(&client1),
    );
    let state1 = rec.saw(
        "server1_state_after_child_close",
        "server side of connection 1",
        settled_state(server_addr, addr1, &["FIN_WAIT1"])?,
    );
    let status = child.wait(WAIT)?;
    rec.saw("child", "the child", describe_status(&status));
    drop(server2);

    let held = quiet.as_array().is_some_and(Vec::is_empty)
        && no_fin == "EAGAIN"
        && still == "ESTABLISHED"
        && shut == "ok"
        && fin2 == 0
        && state2 == "FIN_WAIT2"
        && fin1 == 0
        && state1 == "FIN_WAIT2";
    let [no_fin, still, state2] = [&no_fin, &still, &state2].map(render);
    let summary = format!(
        "the parent's close() left client 1 reading {no_fin} (connection {still}); the parent's \
         shutdown() gave client 2 EOF at once ({state2}); client 1 saw EOF only when the child \
         closed too"
    );
    Ok(Verdict::new(held, summary))
}
