//! JSON as S1 serves it. Field names, nesting and enum values follow the vendor's v2.1 export;
//! the swagger conformance test holds every shape here to it.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::world::{Agent, CloudAlert, GROUP_BASE, Note, OSES, RULES, THREAT_NAMES, Threat, World};

pub(crate) fn ts(t: OffsetDateTime) -> String {
    format!("{}.{:06}Z", seconds(t), t.microsecond())
}

/// Millisecond precision, as UAM writes its timestamps (`2025-12-23T12:24:03.056Z`).
pub(crate) fn ts_ms(t: OffsetDateTime) -> String {
    format!("{}.{:03}Z", seconds(t), t.millisecond())
}

fn seconds(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn describe(s: &str) -> String {
    let mut out = s.replace('_', " ");
    if let Some(first) = out.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    out
}

fn agent_ip(a: &Agent) -> String {
    format!("{}.{}.{}.{}", a.ip[0], a.ip[1], a.ip[2], a.ip[3])
}

fn interfaces(a: &Agent) -> Value {
    json!([{
        "id": (a.id + 7).to_string(),
        "name": if a.os == 0 { "Ethernet" } else { "eth0" },
        "inet": [agent_ip(a)],
        "inet6": [],
        "physical": format!("00:50:56:{:02x}:{:02x}:{:02x}", a.ip[1], a.ip[2], a.ip[3]),
    }])
}

pub(crate) fn threat(w: &World, t: &Threat) -> Value {
    let a = &w.agents[t.agent];
    let site = &w.sites[a.site];
    let acc = &w.accounts[site.account];
    let (file, class) = THREAT_NAMES[t.name];
    let os = OSES[a.os];
    let initiated_by = if t.fileless { "star_active" } else { "agent_policy" };
    let mut info = json!({
        "threatId": t.id.to_string(),
        "threatName": file,
        "classification": class,
        "classificationSource": if t.fileless { "Behavioral" } else { "Static" },
        "confidenceLevel": t.confidence,
        "sha1": t.sha1,
        "incidentStatus": t.incident_status,
        "incidentStatusDescription": describe(t.incident_status),
        "analystVerdict": t.verdict,
        "analystVerdictDescription": describe(t.verdict),
        "mitigationStatus": t.mitigation,
        "mitigationStatusDescription": describe(t.mitigation),
        "createdAt": ts(t.created_at),
        "updatedAt": ts(t.updated_at),
        "identifiedAt": ts(t.created_at),
        "filePath": if t.fileless { String::new() } else { format!("\\Device\\HarddiskVolume3\\Users\\user{}\\Downloads\\{file}", t.agent % 97) },
        "fileExtension": file.rsplit('.').next().unwrap_or_default().to_ascii_uppercase(),
        "fileExtensionType": "Executable",
        "fileSize": 40_960 + (t.storyline % 900_000) as i64,
        "fileVerificationType": "NotSigned",
        "publisherName": "",
        "storyline": format!("{:016X}", t.storyline),
        "collectionId": (t.id + 11).to_string(),
        "initiatedBy": initiated_by,
        "initiatedByDescription": describe(initiated_by),
        "isFileless": t.fileless,
        "detectionType": if t.fileless { "dynamic" } else { "static" },
        "detectionEngines": [{"key": if t.fileless { "executables" } else { "sentinelone_cloud" }, "title": if t.fileless { "Behavioral AI" } else { "SentinelOne Cloud" }}],
        "engines": [if t.fileless { "DBT - Executables" } else { "SentinelOne Cloud" }],
        "processUser": format!("{}\\user{}", a.computer_name, t.agent % 97),
        "originatorProcess": if t.fileless { "powershell.exe" } else { "explorer.exe" },
        "maliciousProcessArguments": "",
        "automaticallyResolved": false,
        "mitigatedPreemptively": false,
        "pendingActions": false,
        "failedActions": false,
        "rebootRequired": false,
        "reachedEventsLimit": false,
        "externalTicketExists": t.external_ticket_id.is_some(),
    });
    if let Some(ticket) = &t.external_ticket_id {
        info["externalTicketId"] = json!(ticket);
    }
    json!({
        "id": t.id.to_string(),
        "threatInfo": info,
        "agentRealtimeInfo": {
            "agentId": a.id.to_string(),
            "agentUuid": a.uuid,
            "agentComputerName": a.computer_name,
            "agentDomain": "CORP",
            "accountId": acc.id.to_string(),
            "accountName": acc.name,
            "siteId": site.id.to_string(),
            "siteName": site.name,
            "groupId": (GROUP_BASE + a.site as u64).to_string(),
            "groupName": "Default Group",
            "agentOsType": os.0,
            "agentOsName": os.1,
            "agentOsRevision": os.2,
            "agentMachineType": a.machine_type,
            "agentVersion": "24.1.4.257",
            "agentIsActive": a.is_active,
            "agentIsDecommissioned": a.is_decommissioned,
            "agentNetworkStatus": if a.is_active { "connected" } else { "disconnected" },
            "agentMitigationMode": "protect",
            "agentInfected": t.incident_status != "resolved",
            "activeThreats": 1,
            "networkInterfaces": interfaces(a),
            "scanStatus": "none",
            "userActionsNeeded": [],
            "operationalState": "na",
            "rebootRequired": false,
        },
        "agentDetectionInfo": {
            "agentUuid": a.uuid,
            "agentVersion": "24.1.4.257",
            "agentOsName": os.1,
            "agentOsRevision": os.2,
            "agentIpV4": agent_ip(a),
            "agentIpV6": null,
            "externalIp": "203.0.113.10",
            "agentDomain": "CORP",
            "agentLastLoggedInUserName": format!("user{}", t.agent % 97),
            "agentLastLoggedInUpn": null,
            "agentMitigationMode": "protect",
            "agentRegisteredAt": ts(a.created_at),
            "accountId": acc.id.to_string(),
            "accountName": acc.name,
            "siteId": site.id.to_string(),
            "siteName": site.name,
            "groupId": (GROUP_BASE + a.site as u64).to_string(),
            "groupName": "Default Group",
        },
        "indicators": [{
            "category": if t.fileless { "Evasion" } else { "Malware" },
            "description": if t.fileless { "Suspicious script execution" } else { "Known malicious file" },
            "tactics": [{
                "name": "Execution",
                "source": "MITRE",
                "techniques": [{"name": "T1059", "link": "https://attack.mitre.org/techniques/T1059/"}],
            }],
        }],
        "mitigationStatus": if t.mitigation == "mitigated" { json!([{
            "action": "kill",
            "status": "success",
            "lastUpdate": ts(t.created_at),
            "mitigationStartedAt": ts(t.created_at),
            "mitigationEndedAt": ts(t.created_at),
            "agentSupportsReport": true,
            "groupNotFound": false,
            "actionsCounters": {"success": 1, "failed": 0, "pendingReboot": 0, "notFound": 0, "total": 1},
        }]) } else { json!([]) },
        "containerInfo": {},
        "kubernetesInfo": {},
        "whiteningOptions": ["hash", "path"],
    })
}

pub(crate) fn agent(w: &World, a: &Agent) -> Value {
    let site = &w.sites[a.site];
    let acc = &w.accounts[site.account];
    let os = OSES[a.os];
    json!({
        "id": a.id.to_string(),
        "uuid": a.uuid,
        "computerName": a.computer_name,
        "osType": os.0,
        "osName": os.1,
        "osRevision": os.2,
        "osArch": "64 bit",
        "machineType": a.machine_type,
        "siteId": site.id.to_string(),
        "siteName": site.name,
        "accountId": acc.id.to_string(),
        "accountName": acc.name,
        "groupId": (GROUP_BASE + a.site as u64).to_string(),
        "groupName": "Default Group",
        "groupIp": format!("{}.{}.{}.x", a.ip[0], a.ip[1], a.ip[2]),
        "isActive": a.is_active,
        "isDecommissioned": a.is_decommissioned,
        "isUninstalled": false,
        "isPendingUninstall": false,
        "isUpToDate": true,
        "infected": false,
        "activeThreats": 0,
        "networkStatus": if a.is_active { "connected" } else { "disconnected" },
        "agentVersion": "24.1.4.257",
        "externalIp": "203.0.113.10",
        "lastIpToMgmt": agent_ip(a),
        "domain": "CORP",
        "modelName": if a.machine_type == "server" { "VMware Virtual Platform" } else { "Latitude 7440" },
        "serialNumber": format!("SN{:08}", a.id % 100_000_000),
        "cpuCount": 1,
        "coreCount": 8,
        "totalMemory": 16384,
        "lastLoggedInUserName": format!("user{}", a.id % 97),
        "lastActiveDate": ts(a.updated_at),
        "registeredAt": ts(a.created_at),
        "createdAt": ts(a.created_at),
        "updatedAt": ts(a.updated_at),
        "mitigationMode": "protect",
        "mitigationModeSuspicious": "detect",
        "networkInterfaces": interfaces(a),
        "userActionsNeeded": [],
        "installerType": if a.os == 0 { ".msi" } else if a.os == 1 { ".deb" } else { ".pkg" },
        "scanStatus": "finished",
        "operationalState": "na",
        "externalId": "",
    })
}

fn licenses() -> Value {
    json!({"bundles": [{"name": "complete", "displayName": "Complete", "majorVersion": 1, "minorVersion": 0, "totalSurfaces": 100, "surfaces": [{"name": "Total Agents", "count": 100}]}], "modules": [], "settings": []})
}

pub(crate) fn account(w: &World, i: usize) -> Value {
    let a = &w.accounts[i];
    let sites = w.sites.iter().filter(|s| s.account == i).count();
    let agents = w
        .agents
        .iter()
        .filter(|ag| w.sites[ag.site].account == i && ag.is_active)
        .count();
    json!({
        "id": a.id.to_string(),
        "name": a.name,
        "state": a.state,
        "accountType": a.account_type,
        "usageType": "customer",
        "billingMode": "subscription",
        "activeAgents": agents,
        "numberOfSites": sites,
        "totalLicenses": 100,
        "unlimitedExpiration": a.state == "active",
        "externalId": "",
        "isDefault": i == 0,
        "creator": "Sim Admin",
        "creatorId": "1000000000000000001",
        "createdAt": ts(a.created_at),
        "updatedAt": ts(a.updated_at),
        "licenses": licenses(),
    })
}

pub(crate) fn site(w: &World, i: usize) -> Value {
    let s = &w.sites[i];
    let acc = &w.accounts[s.account];
    let agents = w.agents.iter().filter(|ag| ag.site == i && ag.is_active).count();
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "accountId": acc.id.to_string(),
        "accountName": acc.name,
        "state": s.state,
        "siteType": acc.account_type,
        "activeLicenses": agents,
        "totalLicenses": 50,
        "unlimitedLicenses": false,
        "unlimitedExpiration": s.state == "active",
        "externalId": "",
        "description": "",
        "isDefault": s.is_default,
        "healthStatus": true,
        "creator": "Sim Admin",
        "creatorId": "1000000000000000001",
        "createdAt": ts(s.created_at),
        "updatedAt": ts(s.updated_at),
        "licenses": licenses(),
    })
}

pub(crate) fn cloud_alert(w: &World, al: &CloudAlert) -> Value {
    let a = &w.agents[al.agent];
    let site = &w.sites[a.site];
    let acc = &w.accounts[site.account];
    let (rule, severity) = RULES[al.rule];
    let os = OSES[a.os];
    json!({
        "alertInfo": {
            "alertId": al.id.to_string(),
            "createdAt": ts(al.created_at),
            "reportedAt": ts(al.created_at),
            "updatedAt": ts(al.updated_at),
            "incidentStatus": al.incident_status,
            "analystVerdict": al.verdict,
            "eventType": "PROCESSCREATION",
            "hitType": "Events",
            "isEdr": true,
            "source": "STAR",
        },
        "ruleInfo": {
            "id": (al.rule as u64 + 1_650_000_000_000_000_000).to_string(),
            "name": rule,
            "description": format!("Custom detection rule: {rule}"),
            "severity": severity,
            "s1ql": "EventType = \"Process Creation\"",
            "queryType": "events",
            "scopeLevel": "account",
            "treatAsThreat": "UNDEFINED",
        },
        "agentDetectionInfo": {
            "uuid": a.uuid,
            "name": a.computer_name,
            "siteId": site.id.to_string(),
            "accountId": acc.id.to_string(),
            "osFamily": os.0,
            "osName": os.1,
            "osRevision": os.2,
            "version": "24.1.4.257",
            "machineType": a.machine_type,
        },
        "sourceProcessInfo": {
            "name": "powershell.exe",
            "commandline": "powershell.exe -nop -w hidden -enc SQBFAFgA",
            "filePath": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "fileHashSha1": "6cbce4a295c163791b60fc23d285e6d84f28ee4c",
            "fileHashSha256": "de96a6e69944335375dc1ac238336066889d9ffc7d73628ef4fe1b1b160ab32c",
            "storyline": format!("{:016X}", al.id),
            "user": format!("CORP\\user{}", al.agent % 97),
            "pid": "4242",
            "integrityLevel": "high",
            "subsystem": "sys_win32",
        },
        "containerInfo": {},
        "kubernetesInfo": {},
    })
}

pub(crate) fn note(n: &Note) -> Value {
    json!({
        "id": n.id.to_string(),
        "text": n.text,
        "creator": n.creator,
        "creatorId": "1000000000000000950",
        "createdAt": ts(n.created_at),
        "updatedAt": ts(n.created_at),
        "edited": false,
    })
}
