//! Unified alerts as UAM serves them: every field the recorded console listing carries (its
//! deprecated ones too), with the same JSON types, so a document selects from a complete node.

use serde_json::{Value, json};

use super::DetectionSource;
use super::store::{UamNote, UnifiedAlert};
use crate::render::ts_ms;
use crate::world::{GROUP_BASE, OSES, World};

pub(crate) fn alert(w: &World, a: &UnifiedAlert) -> Value {
    let site = &w.sites[a.site];
    let acc = &w.accounts[site.account];
    let group_id = (GROUP_BASE + a.site as u64).to_string();
    let (product, vendor) = a.source.product();
    let agent = a.agent.map(|i| &w.agents[i]);
    let os_type = agent.map_or("UNKNOWN", |ag| match OSES[ag.os].0 {
        "windows" => "WINDOWS",
        "linux" => "LINUX",
        _ => "MACOS",
    });
    let (category, subcategory, asset_type, classifier) = match a.source {
        DetectionSource::Edr => ("Endpoint", "Workstation", "LAPTOP", "Laptop"),
        DetectionSource::Identity => ("Identity", "User Account", "UNKNOWN", "User"),
        DetectionSource::Cloud => ("Cloud Resource", "Storage Bucket", "STORAGE", "Storage"),
        DetectionSource::ThirdParty => ("Identity", "Mailbox", "UNKNOWN", "Mailbox"),
    };
    let asset = json!({
        "__typename": "Asset",
        "id": match agent { Some(ag) => format!("asset-{}", ag.id), None => format!("asset-{}", a.asset_name) },
        "name": a.asset_name,
        "primary": true,
        "accessible": true,
        "deleted": false,
        "paths": [],
        "tags": [],
        "agentUuid": agent.map(|ag| ag.uuid.clone()),
        "agentVersion": agent.map(|_| "24.1.4.257"),
        "assetTypeClassifier": classifier,
        "category": category,
        "subcategory": subcategory,
        "type": asset_type,
        "connectivityToConsole": agent.map(|ag| if ag.is_active { "ONLINE" } else { "OFFLINE" }),
        "osType": os_type,
        "osVersion": agent.map_or(String::new(), |ag| OSES[ag.os].1.to_owned()),
        "pendingReboot": false,
        "lastLoggedInUser": agent.map(|ag| format!("user{}", ag.id % 97)),
        "policy": agent.map(|_| "PROTECT"),
    });
    let ip = agent.map(|ag| format!("{}.{}.{}.{}", ag.ip[0], ag.ip[1], ag.ip[2], ag.ip[3]));
    let file = a.file_name.as_ref().map(|name| {
        json!({
            "certSubject": null,
            "md5": null,
            "name": name,
            "path": format!("C:\\Users\\user\\Downloads\\{name}"),
            "sha1": a.sha1,
            "sha256": null,
        })
    });
    let process = agent.map(|_| {
        json!({
            "cmdLine": null,
            "parentName": "explorer.exe",
            "file": file,
        })
    });
    json!({
        "__typename": "UnifiedAlert",
        "id": a.id,
        "externalId": a.external_id,
        "name": a.name,
        "description": format!("{} detected by {product}", a.name),
        "severity": a.severity,
        "status": a.status,
        "result": "UNMITIGATED",
        "analystVerdict": a.verdict,
        "attackSurfaces": [a.source.surface()],
        "classification": a.classification,
        "confidenceLevel": a.confidence,
        "createdAt": ts_ms(a.created_at),
        "updatedAt": ts_ms(a.updated_at),
        "firstSeenAt": ts_ms(a.detected_at),
        "lastSeenAt": ts_ms(a.detected_at),
        "detectedAt": ts_ms(a.detected_at),
        "noteExists": !a.notes.is_empty(),
        "dataSources": [],
        "labels": [],
        "storylineId": a.storyline,
        "ticketId": a.ticket_id,
        "fileName": a.file_name.clone().unwrap_or_else(|| "N/A".into()),
        "fileHash": a.sha1.clone().unwrap_or_else(|| "N/A".into()),
        "analytics": {
            "uid": null,
            "name": a.name,
            "type": if a.source == DetectionSource::Edr { "OTHER" } else { "RULE" },
            "typeValue": if a.source == DetectionSource::Edr { "STATIC" } else { "BEHAVIORAL" },
            "category": if a.source == DetectionSource::Edr { "On-Write" } else { "Detection Rule" },
        },
        "assignee": null,
        "detectionSource": { "product": product, "vendor": vendor, "engine": null },
        "asset": asset,
        "assets": [asset],
        "detectionTime": {
            "asset": {
                "agentVersion": agent.map(|_| "24.1.4.257"),
                "consoleIpAddress": ip,
                "domain": agent.map(|_| "corp.example"),
                "ipV4": ip,
                "ipV6": null,
                "ipV4Addresses": ip.iter().collect::<Vec<_>>(),
                "lastLoggedInUser": agent.map(|ag| format!("user{}", ag.id % 97)),
                "osName": agent.map(|ag| OSES[ag.os].1),
                "osRevision": agent.map(|ag| OSES[ag.os].2),
                "osType": os_type,
                "policy": "PROTECT",
                "subscriptionTime": null,
            },
            "assets": [],
            "attacker": null,
            "cloud": null,
            "kubernetes": null,
            "scope": {
                "accountId": acc.id.to_string(),
                "accountName": acc.name,
                "siteId": site.id.to_string(),
                "siteName": site.name,
                "groupId": group_id,
                "groupName": "Default Group",
            },
            "targetUser": null,
        },
        "process": process,
        "realTime": {
            "scope": {
                "account": { "id": acc.id.to_string(), "name": acc.name },
                "site": { "id": site.id.to_string(), "name": site.name },
                "group": { "id": group_id, "name": "Default Group" },
            }
        },
    })
}

/// The alert's notes as `alertNotes` lists them.
pub(crate) fn notes(a: &UnifiedAlert) -> Value {
    Value::Array(a.notes.iter().map(|n| note(&a.id, n)).collect())
}

fn note(alert_id: &str, n: &UamNote) -> Value {
    json!({
        "__typename": "AlertNote",
        "id": n.id,
        "alertId": alert_id,
        "text": n.text,
        "type": n.content_type,
        "createdAt": ts_ms(n.created_at),
        "updatedAt": ts_ms(n.created_at),
        "author": { "userId": n.author_id, "fullName": n.author, "email": author_email(&n.author) },
        "createdBy": {
            "__typename": "UserNoteAuthor",
            "userId": n.author_id,
            "fullName": n.author,
            "email": author_email(&n.author),
        },
    })
}

fn author_email(name: &str) -> String {
    format!("{}@msp.example", name.to_ascii_lowercase().replace(' ', "."))
}
