//! A Subscription's criteria string, as a subscriber writes it.
#![no_main]

use hub::criteria::Criteria;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(criteria) = Criteria::parse(text) else {
        return;
    };
    // The canonical form is what the hub stores and shows back: it must
    // read as the same criteria.
    let canonical = criteria.to_criteria_string();
    assert_eq!(
        Criteria::parse(&canonical).as_ref(),
        Ok(&criteria),
        "{canonical}"
    );
});
