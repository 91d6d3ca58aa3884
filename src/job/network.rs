//! The connections between the processes of a cluster: timely's own
//! handshake, plus a bound on how long a peer may go without acknowledging
//! what is sent to it.
//!
//! A peer that exits or crashes closes its connections, and the network
//! threads see it at once. A peer that is cut off (its host lost the
//! network, its node was partitioned, its pod was rescheduled elsewhere)
//! closes nothing: without a bound, TCP retransmits for about fifteen
//! minutes and an idle connection is never probed, so the other processes
//! would wait for it forever. With `job.heartbeat-timeout` set on every
//! connection (`TCP_USER_TIMEOUT`, and keepalive probes for connections
//! with nothing to send), a silent peer breaks the connection within that
//! bound; the processes stop, their restart policy brings them back, and
//! they re-form from the last complete checkpoint.

use std::any::Any;
use std::net::TcpStream;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::networking::create_sockets;
use timely::communication::{AllocatorBuilder, Hooks};
use timely::CommunicationConfig;

use crate::core::error::{Error, Result, CLUSTER};

/// The allocators of a cluster process whose connections to its peers
/// break after `heartbeat_timeout` without acknowledgement; the second value
/// keeps the network threads alive and goes to timely with the allocators.
/// Blocks until every peer has connected.
pub fn connect(
    config: CommunicationConfig,
    heartbeat_timeout: Duration,
) -> Result<(Vec<AllocatorBuilder>, Box<dyn Any + Send>)> {
    let CommunicationConfig::Cluster {
        threads,
        process,
        addresses,
        report,
        zerocopy,
    } = config
    else {
        return config.try_build().map_err(Error::Config);
    };
    let hooks = Hooks::default();
    let local = if zerocopy {
        ProcessBuilder::new_bytes_vector(threads, hooks.refill.clone(), hooks.spill.clone())
    } else {
        ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone())
    };
    let unreachable = |e: std::io::Error| Error::External {
        system: CLUSTER,
        message: format!("connecting to the peer processes: {e}"),
        retryable: true,
    };
    let sockets = create_sockets(addresses, process, report).map_err(unreachable)?;
    for socket in sockets.iter().flatten() {
        bound_silence(socket, heartbeat_timeout).map_err(unreachable)?;
    }
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, process, threads, hooks)
            .map_err(unreachable)?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    Ok((builders, Box::new(guard)))
}

/// Makes a connection fail once what it sent has gone unacknowledged for
/// `limit`, and probes it when idle so that a silent peer is noticed even
/// when there is nothing to send.
fn bound_silence(socket: &TcpStream, limit: Duration) -> std::io::Result<()> {
    let sock = SockRef::from(socket);
    // Probes start after a quarter of the bound and repeat every tenth;
    // the user timeout, not the probe count, decides when to give up.
    let probe = (limit / 4).max(Duration::from_secs(1));
    let every = (limit / 10).max(Duration::from_secs(1));
    let keepalive = TcpKeepalive::new()
        .with_time(probe)
        .with_interval(every)
        .with_retries(10);
    sock.set_tcp_keepalive(&keepalive)?;
    sock.set_tcp_user_timeout(Some(limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_connection_gets_the_bound_and_probes() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        bound_silence(&client, Duration::from_secs(20)).expect("options set");
        let sock = SockRef::from(&client);
        assert_eq!(
            sock.tcp_user_timeout().expect("user timeout"),
            Some(Duration::from_secs(20))
        );
        assert!(sock.keepalive().expect("keepalive"));
        assert_eq!(
            sock.tcp_keepalive_time().expect("probe time"),
            Duration::from_secs(5)
        );
        assert_eq!(
            sock.tcp_keepalive_interval().expect("probe interval"),
            Duration::from_secs(2)
        );
    }
}
