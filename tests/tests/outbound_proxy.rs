//! A proxy named in the environment does not get around the address guard. Its own binary: the
//! proxy variables it sets are process-wide, and no other test may run under them.

use std::time::Duration;

use integration_tests::outbound::CountingListener;
use s1_shared::config::AllowedHosts;
use s1_shared::net::outbound_client;

/// With `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` pointing at a listener, a call to a name that
/// resolves inside (as a metadata address would) is still refused by the guard, and neither the
/// proxy nor the inside address is ever reached: the outbound client uses no proxy from the
/// environment, so the target's own address is what the guard checks.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_in_the_environment_does_not_bypass_the_address_guard() {
    let proxy = CountingListener::start().await;
    let inside = CountingListener::start().await;
    let proxy_url = format!("http://{}", proxy.addr);
    for var in [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "https_proxy",
        "http_proxy",
        "all_proxy",
    ] {
        // SAFETY: set before any client exists and before any other thread reads the
        // environment; this binary holds this one test.
        unsafe { std::env::set_var(var, &proxy_url) };
    }
    // SAFETY: as above.
    unsafe {
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let allowed = AllowedHosts::parse("*.sentinelone.net").unwrap();
    let http = outbound_client(Duration::from_secs(2), Duration::from_secs(5), &allowed).unwrap();
    for url in [
        format!("http://localhost:{}/latest/meta-data", inside.addr.port()),
        format!("https://localhost:{}/hooks", inside.addr.port()),
    ] {
        let err = http.get(&url).send().await.unwrap_err();
        let cause = s1_shared::net::describe(&err);
        assert!(
            cause.contains("localhost resolves only to private, loopback or link-local addresses"),
            "{url}: the guard refused the target itself: {cause}"
        );
    }
    assert_eq!(proxy.connections(), 0, "the proxy was never used");
    assert_eq!(inside.connections(), 0, "nothing reached the inside address");
}
