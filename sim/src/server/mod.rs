//! HTTP front of the simulator: S1's routes under `/web/api/v2.1`, the control API under
//! `/_sim`, fault injection, and an accept loop that can reset a connection on demand.

mod alerts;
mod assets;
mod control;
mod errors;
mod middleware;
mod request;
mod threats;
mod uam;
mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

use self::alerts::{get_alerts, post_alert_incident, post_alert_verdict};
use self::assets::{get_accounts, get_agents, get_sites};
use self::control::{
    ctl_add_fault, ctl_add_threats, ctl_add_token, ctl_add_unified, ctl_change_agent, ctl_change_unified,
    ctl_clear_faults, ctl_clear_requests, ctl_console_update, ctl_requests, ctl_rotate_uam_actions, ctl_settings,
    ctl_stats, ctl_threat, ctl_uam_actions, ctl_uam_settings, ctl_unified, ctl_unified_ids,
};
use self::errors::ApiError;
use self::middleware::faults_and_log;
use self::threats::{get_notes, get_threats, post_external_ticket, post_incident, post_notes, post_verdict};
use self::users::{get_system_info, get_system_status, get_user, post_generate_token, post_token_details};
use crate::console::Console;
use crate::control::RequestLogEntry;
use crate::world::SimConfig;

const API: &str = "/web/api/v2.1";

pub(crate) struct Shared {
    console: Mutex<Console>,
    requests: Mutex<Vec<RequestLogEntry>>,
    counts: Mutex<HashMap<String, u64>>,
    started: std::time::Instant,
}

impl Shared {
    fn console(&self) -> MutexGuard<'_, Console> {
        // A panic while holding the lock must not take the whole simulator down with it.
        self.console.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Shr = Arc<Shared>;

/// A running simulator. Dropping it stops the server.
pub struct Sim {
    addr: SocketAddr,
    shared: Shr,
    stop: Option<oneshot::Sender<()>>,
}

impl Sim {
    /// Generates the console from `config` and serves it on a free loopback port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(config: SimConfig) -> std::io::Result<Sim> {
        Self::start_on(config, "127.0.0.1:0".parse().expect("valid address")).await
    }

    /// As [`Sim::start`], on a given address.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Sim> {
        let shared = Arc::new(Shared {
            console: Mutex::new(Console::generate(&config)),
            requests: Mutex::new(Vec::new()),
            counts: Mutex::new(HashMap::new()),
            started: std::time::Instant::now(),
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let router = router(shared.clone());
        let (stop, mut stopped) = oneshot::channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(serve_connection(stream, router.clone()));
                    }
                }
            }
        });
        Ok(Sim {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    /// The console origin, e.g. `http://127.0.0.1:41234` (the API is under `/web/api/v2.1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client for the control API of this simulator.
    pub fn control(&self) -> crate::SimControl {
        crate::SimControl::new(&self.base_url())
    }

    /// Number of threats held.
    pub fn threat_count(&self) -> usize {
        self.shared.console().threats.len()
    }

    /// Number of unified (UAM) alerts held.
    pub fn unified_alert_count(&self) -> usize {
        self.shared.console().uam.alerts.len()
    }

    /// Blocks until the process is asked to stop (for the binary).
    pub async fn wait(mut self) {
        let _ = tokio::signal::ctrl_c().await;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Lets a handler cut its own connection with a TCP reset.
#[derive(Clone)]
struct ConnReset(Arc<Notify>);

async fn serve_connection(stream: tokio::net::TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    // A duplicate descriptor of the same socket lets us set SO_LINGER=0 at the moment of a reset
    // fault, so closing sends RST instead of FIN; ordinary closes stay graceful.
    let dup: Option<OwnedFd> = stream.as_fd().try_clone_to_owned().ok();
    let reset = Arc::new(Notify::new());
    let svc = TowerToHyperService::new(router.layer(Extension(ConnReset(reset.clone()))));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = reset.notified() => {
            if let Some(fd) = &dup {
                let _ = socket2::SockRef::from(fd).set_linger(Some(std::time::Duration::ZERO));
            }
        }
    }
}

fn router(shared: Shr) -> Router {
    let api = Router::new()
        .route("/threats", get(get_threats))
        .route("/threats/incident", post(post_incident))
        .route("/threats/analyst-verdict", post(post_verdict))
        .route("/threats/notes", post(post_notes))
        .route("/threats/{id}/notes", get(get_notes))
        .route("/threats/external-ticket-id", post(post_external_ticket))
        .route("/cloud-detection/alerts", get(get_alerts))
        .route("/cloud-detection/alerts/incident", post(post_alert_incident))
        .route("/cloud-detection/alerts/analyst-verdict", post(post_alert_verdict))
        .route("/agents", get(get_agents))
        .route("/accounts", get(get_accounts))
        .route("/sites", get(get_sites))
        .route("/users/api-token-details", post(post_token_details))
        .route("/users/generate-api-token", post(post_generate_token))
        .route("/user", get(get_user))
        .route("/system/status", get(get_system_status))
        .route("/system/info", get(get_system_info))
        .route("/unifiedalerts/graphql", post(self::uam::post_graphql))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, 4040010, "Not Found", Some("No such API path")) })
        .layer(axum::middleware::from_fn_with_state(shared.clone(), faults_and_log));
    Router::new()
        .nest(API, api)
        .route("/_sim/faults", post(ctl_add_fault).delete(ctl_clear_faults))
        .route("/_sim/tokens", post(ctl_add_token))
        .route("/_sim/settings", post(ctl_settings))
        .route("/_sim/requests", get(ctl_requests).delete(ctl_clear_requests))
        .route("/_sim/stats", get(ctl_stats))
        .route("/_sim/threats", post(ctl_add_threats))
        .route("/_sim/agents/{uuid}", post(ctl_change_agent))
        .route("/_sim/threats/{id}", get(ctl_threat))
        .route("/_sim/threats/{id}/console", post(ctl_console_update))
        .route("/_sim/uam/alerts", post(ctl_add_unified).get(ctl_unified_ids))
        .route("/_sim/uam/alerts/{id}", get(ctl_unified).post(ctl_change_unified))
        .route("/_sim/uam/actions", get(ctl_uam_actions))
        .route("/_sim/uam/actions/rotate", post(ctl_rotate_uam_actions))
        .route("/_sim/uam/settings", post(ctl_uam_settings))
        .with_state(shared)
}
