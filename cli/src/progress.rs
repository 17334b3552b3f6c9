//! Live counts for long runs (`run poll|assets`, the demo's backlog), and the one-line summaries
//! printed when they end.
//!
//! On a terminal each tenant gets a bar on stderr (S1 says how many items a listing will return,
//! so the bar has a length); `--progress lines` prints one line per page instead, for logs; a
//! `--json` run or a pipe gets nothing unless asked, so scripts read clean output.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use s1_shared::usecase::poll_threats::TenantReport;
use s1_shared::usecase::sync_assets::AssetReport;
use s1_shared::usecase::token_expiry::TokenReport;
use s1_shared::usecase::{Progress, Tick};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal; nothing when stderr is a pipe or `--json` is set.
    #[default]
    Auto,
    /// Bars, even when stderr is not a terminal.
    Bar,
    /// One line per page on stderr (for logs).
    Lines,
    Off,
}

/// The live display of one run.
pub struct Live {
    job: &'static str,
    lines: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Live {
    /// `None` when nothing should be drawn.
    pub fn new(job: &'static str, mode: ProgressMode, json: bool) -> Option<Arc<Self>> {
        let (bars, lines) = match mode {
            ProgressMode::Auto if !json && std::io::stderr().is_terminal() => (true, false),
            ProgressMode::Bar => (true, false),
            ProgressMode::Lines => (false, true),
            _ => return None,
        };
        let target = if bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Some(Arc::new(Self {
            job,
            lines,
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
        }))
    }

    fn show(&self, tenant: &str, Tick { done, expected }: Tick, counts: String) {
        if self.lines {
            let of = expected.map(|e| format!(" of {e}")).unwrap_or_default();
            eprintln!("{} {tenant}: {done}{of} so far: {counts}", self.job);
            return;
        }
        let mut bars = self.bars.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bar = bars.entry(tenant.to_owned()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::no_length());
            bar.set_style(
                ProgressStyle::with_template("{prefix:>10} [{bar:20}] {pos}/{len} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(tenant.to_owned());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        if let Some(e) = expected {
            bar.set_length(e);
        }
        bar.set_position(done);
        bar.set_message(counts);
    }

    /// The hook for poll-threats.
    pub fn poll(self: &Arc<Self>) -> Progress<TenantReport> {
        let live = Arc::clone(self);
        Arc::new(move |r: &TenantReport, tick: Tick| {
            let counts = format!(
                "{} new, {} changed, {} unchanged, {} echoes, {} sent",
                r.new, r.changed, r.unchanged, r.echoes, r.published
            );
            live.show(&r.tenant, tick, counts);
        })
    }

    /// The hook for sync-assets.
    pub fn assets(self: &Arc<Self>) -> Progress<AssetReport> {
        let live = Arc::clone(self);
        Arc::new(move |r: &AssetReport, tick: Tick| {
            let counts = format!(
                "{} created, {} updated, {} unchanged, {} deactivated",
                r.created, r.updated, r.unchanged, r.deactivated
            );
            live.show(&r.tenant, tick, counts);
        })
    }

    /// Clears the bars so the summary prints on a clean screen.
    pub fn finish(&self) {
        let bars = self.bars.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for bar in bars.values() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// A poll report in one line.
pub fn poll_line(r: &TenantReport) -> String {
    format!(
        "fetched {} in {} pages: {} new, {} changed, {} unchanged, {} echoes; published {}, refused {}; lag {} s",
        r.fetched,
        r.pages,
        r.new,
        r.changed,
        r.unchanged,
        r.echoes,
        r.published,
        r.failed,
        r.lag_seconds.unwrap_or_default()
    )
}

/// An asset sync report in one line.
pub fn assets_line(r: &AssetReport) -> String {
    if let Some(note) = &r.note {
        return note.clone();
    }
    let mut s = format!(
        "{} created, {} updated, {} unchanged, {} deactivated, {} reactivated, {} skipped, {} refused",
        r.created, r.updated, r.unchanged, r.deactivated, r.reactivated, r.skipped, r.failed
    );
    if r.accounts_from_sites {
        s.push_str(" (customers derived from sites: the token cannot list accounts)");
    }
    if r.outcome == s1_shared::usecase::sync_assets::Outcome::Partial {
        s.push_str("; partial: stopped before the deadline, the next run continues");
    }
    s
}

/// A token check in one line.
pub fn token_line(r: &TokenReport) -> String {
    let mut s = match (r.expires_at, r.days_left) {
        (Some(at), Some(days)) => format!("expires {at} ({days} day(s) left)"),
        _ if r.unauthorized => "S1 refused the token (revoked or expired)".to_owned(),
        _ => "expiry unknown".to_owned(),
    };
    if let Some(t) = r.alerted {
        s.push_str(&format!("; alert sent for the {t}-day threshold"));
    }
    s
}
