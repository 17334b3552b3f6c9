//! The validator refuses each kind of bad request and accepts good ones, so it cannot silently
//! pass everything.

use super::Spec;

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn body_errors(method: &str, path: &str, body: &str) -> Vec<String> {
    let spec = Spec::get();
    let m = spec.route(method, path).unwrap();
    spec.check_body(&m, body.as_bytes()).err().unwrap_or_default()
}

#[test]
fn the_document_is_parsed_with_its_32_paths() {
    assert_eq!(Spec::get().routes.len(), 32);
}

#[test]
fn paths_match_case_insensitively_with_typed_path_parameters() {
    let spec = Spec::get();
    let m = spec.route("GET", "/tickets/1001").unwrap();
    assert_eq!(m.template, "/Tickets/{id}");
    assert_eq!(m.params, vec![("id".to_owned(), "1001".to_owned())]);
    assert_eq!(spec.route("get", "/TICKETS").unwrap().template, "/Tickets");
    assert_eq!(spec.route("GET", "/Agent/me").unwrap().template, "/Agent/me");
    assert_eq!(
        spec.route("GET", "/Priority/anything").unwrap().template,
        "/Priority/{id}"
    );
}

#[test]
fn unknown_paths_methods_and_path_parameter_types_are_refused() {
    let spec = Spec::get();
    let err = spec.route("GET", "/Ticket").err().unwrap();
    assert!(err.contains("unknown path /api/Ticket"), "{err}");
    let err = spec.route("PUT", "/Tickets").err().unwrap();
    assert!(err.contains("method PUT is not declared for /Tickets"), "{err}");
    let err = spec.route("POST", "/Tickets/5").err().unwrap();
    assert!(err.contains("not declared"), "{err}");
    let err = spec.route("GET", "/Tickets/abc").err().unwrap();
    assert!(err.contains("path parameter 'id'") && err.contains("integer"), "{err}");
    let err = spec.route("GET", "/Webhook/not-a-guid").err().unwrap();
    assert!(err.contains("GUID"), "{err}");
}

#[test]
fn query_parameters_must_be_declared_for_the_operation_and_well_typed() {
    let spec = Spec::get();
    let m = spec.route("GET", "/Asset").unwrap();
    let good = query(&[
        ("pageinate", "true"),
        ("page_size", "50"),
        ("PAGE_NO", "2"),
        ("inventory_number", "S1:abc"),
        ("includeinactive", "True"),
        ("integration_tenantids", "1,2"),
    ]);
    assert_eq!(spec.check_query(&m, "GET", &good), Vec::<String>::new());

    let errors = spec.check_query(&m, "GET", &query(&[("paginate", "true")]));
    assert_eq!(errors, vec!["unknown query parameter 'paginate' for GET /Asset"]);
    let errors = spec.check_query(&m, "GET", &query(&[("page_size", "ten")]));
    assert_eq!(
        errors,
        vec!["query parameter 'page_size' must be an integer, got 'ten'"]
    );
    let errors = spec.check_query(&m, "GET", &query(&[("includeinactive", "yes")]));
    assert!(errors[0].contains("boolean"), "{errors:?}");
    let errors = spec.check_query(&m, "GET", &query(&[("integration_tenantids", "1,x")]));
    assert!(errors[0].contains("list of integers"), "{errors:?}");

    // Declared on one operation is not declared on another: /Actions has no paging parameters.
    let actions = spec.route("GET", "/Actions").unwrap();
    let errors = spec.check_query(&actions, "GET", &query(&[("ticket_id", "1"), ("pageinate", "true")]));
    assert_eq!(errors, vec!["unknown query parameter 'pageinate' for GET /Actions"]);
    let tickets = spec.route("GET", "/Tickets").unwrap();
    let errors = spec.check_query(&tickets, "GET", &query(&[("utcoffset", "1.5"), ("count", "1.5")]));
    assert_eq!(errors, vec!["query parameter 'count' must be an integer, got '1.5'"]);
}

#[test]
fn a_good_body_is_accepted_with_field_names_in_the_documents_spelling() {
    let spec = Spec::get();
    let m = spec.route("POST", "/Tickets").unwrap();
    let body = r#"[{"summary": "S1 threat", "details_html": "<p>x</p>", "tickettype_id": 1,
        "client_id": 12, "site_id": null, "Priority_ID": 2, "customfields": [{"id": 5, "value": "abc"}],
        "dateoccurred": "2030-01-01T00:00:00Z"}]"#;
    let items = spec.check_body(&m, body.as_bytes()).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["priority_id"], 2);
    let m = spec.route("POST", "/Asset").unwrap();
    let body = r#"[{"inventory_number": "S1:1", "key_field": "HOST", "assettype_id": 1, "client_id": 12,
        "site_id": 34, "inactive": false, "fields": [{"id": 1, "value": {"any": "thing"}}]}]"#;
    assert!(spec.check_body(&m, body.as_bytes()).is_ok());
    // Site.client_id is declared as a double: an integer is a number.
    assert_eq!(
        body_errors("POST", "/Site", r#"[{"name": "HQ", "client_id": 12}]"#),
        Vec::<String>::new()
    );
}

#[test]
fn a_body_that_is_not_an_array_is_refused() {
    let errors = body_errors("POST", "/Tickets", r#"{"summary": "x"}"#);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("must be a JSON array of Faults"), "{errors:?}");
    let errors = body_errors("POST", "/Tickets", "not json");
    assert!(errors[0].contains("not valid JSON"), "{errors:?}");
    let errors = body_errors("POST", "/Tickets", r#"["x"]"#);
    assert_eq!(errors, vec!["[0]: expected an object, got a string"]);
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let errors = body_errors("POST", "/Tickets", r#"[{"summary": "x", "severity": "high"}]"#);
    assert_eq!(
        errors,
        vec!["[0]: unknown field 'severity' (not in the document's schema)"]
    );
    // `who` is a ticket field but not an action field.
    let errors = body_errors("POST", "/Actions", r#"[{"ticket_id": 1, "who": "me"}]"#);
    assert_eq!(errors, vec!["[0]: unknown field 'who' (not in the document's schema)"]);
    // Inside a $ref'd array item (CustomField).
    let errors = body_errors(
        "POST",
        "/Tickets",
        r#"[{"customfields": [{"id": 1, "colour": "red"}]}]"#,
    );
    assert_eq!(
        errors,
        vec!["[0].customfields[0]: unknown field 'colour' (not in the document's schema)"]
    );
}

#[test]
fn wrongly_typed_fields_are_refused_and_nullable_is_honoured() {
    let errors = body_errors(
        "POST",
        "/Tickets",
        r#"[{"summary": 5, "client_id": "12", "hasbeenclosed": "yes", "priority_id": 1.5}]"#,
    );
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors.contains(&"[0].summary: expected a string, got a number".to_owned()));
    assert!(errors.contains(&"[0].client_id: expected an integer (int32), got a string".to_owned()));
    assert!(errors.contains(&"[0].hasbeenclosed: expected a boolean, got a string".to_owned()));
    assert!(errors.contains(&"[0].priority_id: expected an integer (int32), got a number".to_owned()));
    // `id` is not nullable; out-of-range int32 is refused.
    let errors = body_errors("POST", "/Client", r#"[{"id": null}, {"id": 3000000000}]"#);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("[0].id: null is not allowed"), "{errors:?}");
    let errors = body_errors("POST", "/Actions", r#"[{"ticket_id": 1, "guid": "nope"}]"#);
    assert_eq!(errors, vec!["[0].guid: expected a GUID, got 'nope'"]);
    let errors = body_errors("POST", "/Tickets", r#"[{"customfields": "abc"}]"#);
    assert_eq!(errors, vec!["[0].customfields: expected an array, got a string"]);
}

#[test]
fn all_of_parts_and_untyped_properties_are_honoured() {
    let doc = r##"{"paths": {"/Thing": {"post": {"requestBody": {"content": {"application/json": {"schema":
        {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}}}}}}},
      "components": {"schemas": {
        "Base": {"type": "object", "properties": {"id": {"type": "integer", "format": "int32"}},
                 "additionalProperties": false},
        "Thing": {"allOf": [{"$ref": "#/components/schemas/Base"},
                            {"type": "object", "properties": {"name": {"type": "string"}, "value": {}}}]}}}}"##;
    let spec = Spec::parse(doc).unwrap();
    let m = spec.route("POST", "/thing").unwrap();
    let good = r#"[{"id": 1, "name": "a", "value": [1, {"x": null}]}, {"value": null}]"#;
    assert!(spec.check_body(&m, good.as_bytes()).is_ok());
    let errors = spec
        .check_body(&m, br#"[{"id": "1", "name": null, "other": 1}]"#)
        .unwrap_err();
    assert_eq!(
        errors,
        vec![
            "[0].id: expected an integer (int32), got a string",
            "[0].name: null is not allowed (not nullable in the document)",
            "[0]: unknown field 'other' (not in the document's schema)",
        ]
    );
}
