//! The fake Halo through real HTTP: token discovery, tenant, scopes and revocation; writes and
//! reads with Halo's semantics, filters and paging.

mod halo_support;

use halo_support::{Api, discover_token, form, post_token};
use s1_bridge_sim::{FakeHalo, HaloAuthInfo, HaloConfig, HaloEntity};
use serde_json::{Value, json};

#[tokio::test]
async fn the_token_is_found_through_authinfo_needs_the_tenant_and_a_revoked_one_answers_401() {
    let halo = FakeHalo::start(HaloConfig {
        tenant: Some("acme".into()),
        auth_path: "/identity".into(),
        expires_in: 120,
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let base = halo.base_url();
    let info: Value = reqwest::get(format!("{base}/api/authinfo"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info,
        json!({"auth_url": format!("{base}/identity"), "tenant_id": "acme"})
    );
    assert_eq!(halo.token_url(), format!("{base}/identity/token"));

    let good = form(halo.config(), "all");
    let (status, body) = post_token(&format!("{base}/identity/token?tenant=acme"), good.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 120);
    let token = body["access_token"].as_str().unwrap().to_owned();

    // Not where AuthInfo does not point; not without the tenant; not with a wrong secret or grant.
    let (status, _) = post_token(&format!("{base}/auth/token?tenant=acme"), good.clone()).await;
    assert_eq!(status, 400);
    let (status, body) = post_token(&format!("{base}/identity/token"), good.clone()).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let wrong = good.replace("halo-test-client-secret", "guess");
    let (status, body) = post_token(&format!("{base}/identity/token?tenant=acme"), wrong).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("invalid_client")));
    assert!(
        !body.to_string().contains("guess"),
        "the answer does not echo the secret"
    );
    let password = good.replace("client_credentials", "password");
    let (status, body) = post_token(&format!("{base}/identity/token?tenant=acme"), password).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    let http = reqwest::Client::new();
    let tickets = format!("{base}/api/Tickets");
    let r = http.get(&tickets).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(&tickets).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));

    halo.revoke_tokens();
    let r = http.get(&tickets).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401, "a revoked token");
    let fresh = discover_token(&halo).await;
    let r = http.get(&tickets).bearer_auth(&fresh).send().await.unwrap();
    assert_eq!(r.status(), 200, "a new token after the revocation");
    assert_eq!(halo.stats().tokens_issued, 2);
    assert!(
        halo.requests()
            .iter()
            .filter(|r| r.path.ends_with("/token"))
            .all(|r| r.body.is_none()),
        "token requests (with the secret) are logged without their body"
    );
}

#[tokio::test]
async fn an_expired_token_answers_401() {
    let halo = FakeHalo::start(HaloConfig {
        expires_in: 0,
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let api = Api::new(&halo).await;
    let (status, body) = api.get("/api/Status").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(halo.stats().unauthorized, 1);
}

#[tokio::test]
async fn when_authinfo_fails_the_token_endpoint_is_at_the_fallback_location() {
    let halo = FakeHalo::start(HaloConfig {
        auth_info: HaloAuthInfo::Fail(500),
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let base = halo.base_url();
    assert_eq!(
        reqwest::get(format!("{base}/api/AuthInfo")).await.unwrap().status(),
        500
    );
    let (status, body) = post_token(&format!("{base}/auth/token"), form(halo.config(), "all")).await;
    assert_eq!(status, 200, "{body}");
    halo.set_auth_info(HaloAuthInfo::Serve);
    let info: Value = reqwest::get(format!("{base}/api/AuthInfo"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["auth_url"], format!("{base}/auth"));
    assert!(info.get("tenant_id").is_none(), "self-hosted: no tenant");
}

#[tokio::test]
async fn a_token_can_do_only_what_its_scopes_cover() {
    let halo = FakeHalo::start(HaloConfig {
        granted_scopes: vec!["read:tickets".into(), "edit:tickets".into()],
        ..HaloConfig::default()
    })
    .await
    .unwrap();
    let url = halo.token_url();
    let (status, body) = post_token(&url, form(halo.config(), "all")).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, body) = post_token(&url, form(halo.config(), "read:tickets edit:tickets")).await;
    assert_eq!(status, 200);
    let api = Api {
        base: halo.base_url(),
        token: body["access_token"].as_str().unwrap().to_owned(),
        http: reqwest::Client::new(),
    };
    assert_eq!(api.get("/api/Tickets").await.0, 200);
    let (status, body) = api.get("/api/Asset").await;
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0], "the token's scopes do not include read:assets");
}

#[tokio::test]
async fn writes_create_and_update_and_lists_filter_and_page() {
    let halo = FakeHalo::start(HaloConfig::default()).await.unwrap();
    let api = Api::new(&halo).await;

    // One element answers the object; several, an array.
    let (status, one) = api.post("/api/Client", &json!([{"name": "Globex"}])).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!((one["id"].as_i64(), one["name"].as_str()), (Some(13), Some("Globex")));
    let (_, many) = api
        .post(
            "/api/client",
            &json!([{"name": "Initech"}, {"name": "Umbrella", "inactive": true}]),
        )
        .await;
    assert_eq!(many.as_array().map(Vec::len), Some(2));
    // An element with an id updates only the fields it gives.
    let (_, renamed) = api
        .post("/api/Client", &json!([{"id": 13, "name": "Globex Corp"}]))
        .await;
    assert_eq!(
        (renamed["name"].as_str(), renamed["inactive"].as_bool()),
        (Some("Globex Corp"), Some(false))
    );
    assert_eq!(halo.record(HaloEntity::Client, 13).unwrap()["name"], "Globex Corp");

    // Paging, Halo's spelling; inactive records only on request.
    let (_, page) = api.get("/api/Client?pageinate=true&page_size=2&page_no=2").await;
    assert_eq!(
        page["record_count"], 3,
        "Contoso, Globex, Initech (Umbrella is inactive): {page}"
    );
    assert_eq!(page["page_no"], 2);
    assert_eq!(page["clients"].as_array().unwrap().len(), 1);
    let (_, all) = api.get("/api/Client?includeinactive=true&search=umb").await;
    assert_eq!(all["record_count"], 1);
    assert_eq!(all["clients"][0]["name"], "Umbrella");

    // Sites by client; a site given without its client takes the site's client.
    let (_, site) = api
        .post("/api/Site", &json!([{"name": "Globex Plant", "client_id": 13}]))
        .await;
    let site_id = site["id"].as_i64().unwrap();
    let (status, refused) = api
        .post(
            "/api/Tickets",
            &json!([{"summary": "x", "client_id": 12, "site_id": site_id}]),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        refused["errors"][0],
        format!("[0]: site {site_id} belongs to client 13, not 12")
    );
    let (_, sites) = api.get("/api/Site?client_id=13").await;
    assert_eq!(sites["record_count"], 1);
    assert_eq!(sites["sites"][0]["client_name"], "Globex Corp");

    // Assets: by inventory number, search, type; inactive hidden unless asked for.
    let (_, asset) = api
        .post(
            "/api/Asset",
            &json!([{"inventory_number": "S1:agent-1", "assettype_id": 1, "site_id": site_id,
                      "fields": [{"id": 1, "value": "HOST-01"}, {"id": 4, "value": "corp.example"}]}]),
        )
        .await;
    assert_eq!(asset["client_id"], 13, "derived from the site");
    assert_eq!(asset["assettype_name"], "Workstation");
    api.post(
        "/api/Asset",
        &json!([{"inventory_number": "S1:agent-2", "fields": [{"id": 1, "value": "SRV-01"}], "assettype_id": 2, "client_id": 12,
                  "site_id": 34, "inactive": true}]),
    )
    .await;
    let (_, found) = api.get("/api/Asset?inventory_number=s1:AGENT-1").await;
    assert_eq!(found["record_count"], 1);
    assert_eq!(
        found["assets"][0]["key_field"], "HOST-01",
        "the type's first key field (Hostname), as Halo shows it"
    );
    let (_, none) = api.get("/api/Asset?inventory_number=S1:agent-2").await;
    assert_eq!(none["record_count"], 0, "inactive");
    let (_, servers) = api
        .get("/api/Asset?search=srv&includeinactive=true&assettype_id=2")
        .await;
    assert_eq!(servers["record_count"], 1);

    // Tickets: defaults from the ticket type, names rendered; read back case-insensitively.
    let (_, ticket) = api
        .post(
            "/api/Tickets",
            &json!([{"summary": "S1 threat on HOST-01", "details_html": "<p>x</p>", "tickettype_id": 21,
                      "client_id": 12, "site_id": 34, "user_id": 1}]),
        )
        .await;
    let id = ticket["id"].as_i64().unwrap();
    assert_eq!(id, 1001);
    assert_eq!(
        (ticket["status_id"].as_i64(), ticket["priority_id"].as_i64()),
        (Some(1), Some(2))
    );
    let (status, read) = api.get(&format!("/api/tickets/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read["priority_name"], "High");
    assert_eq!(read["tickettype_name"], "Security Incident");
    assert_eq!(read["client_name"], "Contoso Ltd");
    assert_eq!(api.get("/api/Tickets/999").await.0, 404);

    // An action by the API agent; a new_status moves the ticket; listed by ticket.
    let (_, note) = api
        .post(
            "/api/Actions",
            &json!([{"ticket_id": id, "note": "joined", "outcome": "Private Note", "new_status": 2}]),
        )
        .await;
    assert_eq!(
        (note["id"].as_i64(), note["who"].as_str()),
        (Some(1), Some("S1 Bridge API"))
    );
    assert_eq!(halo.ticket(id).unwrap()["status_name"], "In Progress");
    let (_, actions) = api.get(&format!("/api/Actions?ticket_id={id}")).await;
    assert_eq!(actions["record_count"], 1);
    assert_eq!(actions["actions"][0]["outcome_id"], 2);
    let (_, action) = api.get(&format!("/api/Actions/1?ticket_id={id}")).await;
    assert_eq!(action["note"], "joined");

    // Lookups are bare arrays; priorities carry `priorityid`.
    let (_, priorities) = api.get("/api/Priority").await;
    let names: Vec<(&str, i64)> = priorities
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["priorityid"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, [("Critical", 1), ("High", 2), ("Medium", 3), ("Low", 4)]);
    let (_, statuses) = api.get("/api/Status?excludeclosed=true").await;
    assert!(statuses.as_array().unwrap().iter().all(|s| s["name"] != "Closed"));
}
