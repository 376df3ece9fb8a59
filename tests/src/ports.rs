//! Free loopback ports for member processes.
//!
//! Ports come from binding 127.0.0.1:0 and releasing the socket, so another process can take one
//! before the member binds it; the cluster start retries with new ports when a member reports
//! "address already in use".

use std::net::TcpListener;

use anyhow::Context;

/// `count` distinct free ports: every socket is held until all are chosen, so none repeats.
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .map(|addr| addr.port())
                .context("read a bound port")
        })
        .collect()
}
