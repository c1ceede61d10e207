use super::*;

#[test]
fn the_next_page_is_a_path_on_the_hub() {
    let bundle = json!({"link": [
        {"relation": "self", "url": "https://hub.example/prod/Subscription?_count=2"},
        {"relation": "next", "url": "https://hub.example/prod/Subscription?_count=2&_page=abc"}
    ]});
    assert_eq!(
        next_link(&bundle, "https://hub.example/prod").as_deref(),
        Some("/Subscription?_count=2&_page=abc")
    );
    assert_eq!(next_link(&json!({"link": []}), "https://hub.example"), None);
}

#[test]
fn an_object_is_shown_as_aligned_lines_with_register_facts_spelt_out() {
    let record = json!({
        "nhsNumber": "9912003888",
        "gpPractice": {"value": "B86056", "changedAt": "2017-11-01T15:00:33Z", "byEvent": "pds-change-of-gp-1/x"},
        "death": null,
    });
    let mut out = Vec::new();
    show(&mut out, &record, false, Colours::never()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "death       -\n\
         gpPractice  B86056  (since 2017-11-01T15:00:33Z, by pds-change-of-gp-1/x)\n\
         nhsNumber   9912003888\n"
    );
    let mut out = Vec::new();
    show(&mut out, &record, true, Colours::never()).unwrap();
    let parsed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed, record, "--json: the hub's JSON as it is");
}
