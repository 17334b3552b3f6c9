//! The demo's HTTP: every step (the main demo, Halo's, the unified alerts') calls only loopback
//! services, through the one outbound client the functions use.

use std::time::Duration;

use s1_shared::config::AllowedHosts;

/// Everything the demo calls is on loopback: the simulated console, the receiver, the PagerDuty
/// stand-in and the writeback endpoint.
pub(crate) fn local_hosts() -> AllowedHosts {
    AllowedHosts::parse("127.0.0.1").expect("a valid host")
}

pub(crate) fn reqwest_client() -> Result<reqwest::Client, reqwest::Error> {
    s1_shared::net::outbound_client(Duration::from_secs(5), Duration::from_secs(30), &local_hosts())
}
