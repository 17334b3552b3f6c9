//! `s1-bridge halo map|mappings`: the mapping table of a Halo tenant, from S1 accounts and sites
//! to the Halo clients and sites they land on. A pre-filled row links an S1 account or site to
//! an existing Halo record: the next asset sync records it without renaming it; rows the sync
//! fills itself are the records it created.

use clap::{Args, Subcommand};
use s1_shared::platform::PlatformConfig;
use s1_shared::store::{AssetKind, AssetRecord};

use crate::ops::StoreArgs;

#[derive(Subcommand)]
pub enum HaloCmd {
    /// Map an S1 account onto a Halo client, or an S1 site onto a Halo site (by Halo id).
    Map(MapArgs),
    /// The mapping table: every S1 account and site with the Halo record it lands on.
    Mappings {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args)]
pub struct MapArgs {
    #[arg(long)]
    tenant: String,
    /// The S1 account id (maps to a Halo client with --client).
    #[arg(long, conflicts_with = "site", requires = "client")]
    account: Option<String>,
    /// The Halo client id.
    #[arg(long)]
    client: Option<i64>,
    /// The S1 site id (maps to a Halo site with --halo-site).
    #[arg(long, requires = "halo_site")]
    site: Option<String>,
    /// The Halo site id.
    #[arg(long)]
    halo_site: Option<i64>,
    #[command(flatten)]
    store: StoreArgs,
}

type Res = Result<(), Box<dyn std::error::Error>>;

pub async fn halo(cmd: HaloCmd) -> Res {
    match cmd {
        HaloCmd::Map(args) => map(args).await,
        HaloCmd::Mappings { tenant, store } => mappings(&tenant, store).await,
    }
}

async fn map(args: MapArgs) -> Res {
    let (kind, s1_id, halo_id) = match (&args.account, args.client, &args.site, args.halo_site) {
        (Some(a), Some(c), None, _) => (AssetKind::Customer, a.clone(), c),
        (None, _, Some(s), Some(h)) => (AssetKind::Site, s.clone(), h),
        _ => return Err("give --account <S1 id> --client <Halo id>, or --site <S1 id> --halo-site <Halo id>".into()),
    };
    if halo_id <= 0 {
        return Err(format!("{halo_id} is not a Halo id").into());
    }
    let store = args.store.store.open().await?;
    let tenant = store
        .get_tenant(&args.tenant)
        .await?
        .ok_or_else(|| format!("no tenant {:?}", args.tenant))?;
    if !matches!(tenant.platform, PlatformConfig::Halo(_)) {
        return Err(format!(
            "tenant {} sends to {}, not Halo: nothing to map",
            tenant.id,
            tenant.platform.kind()
        )
        .into());
    }
    // An empty digest marks the row as the operator's: the sync links it without writing.
    store
        .put_assets(
            &tenant.id,
            &[AssetRecord {
                kind,
                id: s1_id.clone(),
                digest: String::new(),
                platform_ref: Some(halo_id.to_string()),
                active: true,
            }],
        )
        .await?;
    let (what, halo_what) = match kind {
        AssetKind::Customer => ("account", "client"),
        _ => ("site", "site"),
    };
    println!(
        "tenant {}: S1 {what} {s1_id} -> Halo {halo_what} {halo_id} (linked at the next asset sync)",
        tenant.id
    );
    Ok(())
}

async fn mappings(tenant: &str, args: StoreArgs) -> Res {
    let store = args.store.open().await?;
    let mut rows = Vec::new();
    for kind in [AssetKind::Customer, AssetKind::Site] {
        let mut cursor = None;
        loop {
            let page = store.scan_assets(tenant, kind, cursor.as_deref(), 500).await?;
            rows.extend(page.items);
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<10} {:<22} {:<10} state", "kind", "S1 id", "Halo id");
    for r in rows {
        let kind = match r.kind {
            AssetKind::Customer => "account",
            AssetKind::Site => "site",
            AssetKind::Asset => "agent",
        };
        let state = if r.digest.is_empty() {
            "mapped, not synced yet"
        } else {
            "synced"
        };
        println!(
            "{kind:<10} {:<22} {:<10} {state}",
            r.id,
            r.platform_ref.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
