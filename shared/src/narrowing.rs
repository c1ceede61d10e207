//! Client narrowing: when an operator replaces a client's registration
//! (`POST /clients`) with one that no longer gives what one of its
//! subscriptions rested on, that subscription ends, as it would on any
//! other loss of its basis (`status` off, `error`, a `BasisLost` record).
//!
//! The subscriptions are read only when the new registration narrows what
//! the stored one gave ([`narrows`]): a key rotation or a widening reads
//! none, however many the subscriber holds. Each is then judged on the new
//! registration alone ([`no_longer_given`]), so one the old registration
//! no longer gave either ends too. Each subscriber is one client's
//! (onboarding makes a new subscriber for one client,
//! `Subscriber::client_id`), so no other client's registration can still
//! give the basis.

use crate::auth::{Caller, Role};
use crate::basis::{Basis, EndReason, Ended, granted};
use crate::criteria::Target;
use crate::pchr::VerificationLevel;
use crate::subscription::Subscription;

/// Why the new registration no longer gives the subscription its basis, as
/// its owner reads it in `error`: None when it still does. `registered` is
/// the client as the new registration reads (`Caller::of`); `attested` the
/// identity level the app attested for the person a relationship basis
/// names (None when it never attested them: the relationship's own end
/// covers that, not narrowing). Names rules, codes and levels, never the
/// child or the person.
pub fn no_longer_given(
    subscription: &Subscription,
    registered: &Caller,
    attested: Option<VerificationLevel>,
) -> Option<String> {
    if !registered.has_role(Role::Subscriber) {
        return Some("the client no longer holds the subscriber role".to_owned());
    }
    match &subscription.criteria.target {
        Target::Generic { rule, organisation } => {
            let code = organisation.as_deref().unwrap_or_default();
            (!granted(&registered.subscribe_generic, rule.code(), code)).then(|| {
                format!(
                    "the client's registration no longer grants {} {code}",
                    rule.code()
                )
            })
        }
        Target::Explicit(_) => {
            if registered
                .may_subscribe(&subscription.criteria.target)
                .is_err()
            {
                return Some(
                    "the client is no longer registered for explicit subscriptions".to_owned(),
                );
            }
            match (subscription.basis(), registered.pchr) {
                (Basis::Area { rule, code }, _)
                    if !granted(&registered.subscribe_generic, &rule, &code) =>
                {
                    Some(format!(
                        "the client's registration no longer grants {rule} {code}"
                    ))
                }
                (Basis::Relationship { .. }, None) => {
                    Some("the client is no longer registered as a parent's app".to_owned())
                }
                (Basis::Relationship { .. }, Some(pchr)) => attested
                    .filter(|level| *level < pchr.minimum_verification)
                    .map(|level| {
                        format!(
                            "the app now acts only for people verified to {} or above, and \
                             attested {} for the person this subscription rests on",
                            pchr.minimum_verification.code(),
                            level.code()
                        )
                    }),
                // A parent's app subscribes through relationships alone.
                (basis, Some(_)) => Some(format!(
                    "the client is now registered as a parent's app, which may rest a \
                     subscription only on a relationship, not on {}",
                    basis.kind()
                )),
                (
                    Basis::Area { .. } | Basis::RegisteredGp { .. } | Basis::DeclaredDirectCare,
                    None,
                ) => None,
            }
        }
    }
}

/// Whether the registration `after` takes away anything `before` gave a
/// subscription to rest on: the subscriber role, explicit subscriptions, a
/// grant (a rule and code, compared without regard to case), or the
/// parent's app's terms (it becomes or stops being one, or its
/// `minimumVerification` rises). When it does not, no subscription the
/// old registration gave loses its basis, and none need be read.
pub fn narrows(before: &Caller, after: &Caller) -> bool {
    let role_lost = before.has_role(Role::Subscriber) && !after.has_role(Role::Subscriber);
    let explicit_lost = before.may_subscribe_explicitly() && !after.may_subscribe_explicitly();
    let grant_lost = before.subscribe_generic.iter().any(|(rule, codes)| {
        codes
            .iter()
            .any(|code| !granted(&after.subscribe_generic, rule, code))
    });
    let pchr_narrowed = match (before.pchr, after.pchr) {
        (None, None) => false,
        (Some(was), Some(now)) => now.minimum_verification > was.minimum_verification,
        // Becoming a parent's app ends its other bases; ceasing to be one
        // ends its relationship bases.
        _ => true,
    };
    role_lost || explicit_lost || grant_lost || pchr_narrowed
}

/// The end of a subscription whose basis a new registration no longer
/// gives: None when it still does.
pub fn narrowed(
    subscription: &Subscription,
    registered: &Caller,
    attested: Option<VerificationLevel>,
    at: &str,
) -> Option<Ended> {
    no_longer_given(subscription, registered, attested).map(|removed| Ended {
        at: at.to_owned(),
        reason: EndReason::RegistrationNarrowed,
        last_event: None,
        detail: format!("registration narrowed: {removed}"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::nhs_number::NhsNumber;
    use crate::ods::OdsCode;
    use crate::pchr::PchrRegistration;

    const CHILD: &str = "9912003888";

    /// Read from its stored form, so that fields added later default.
    fn subscription(criteria: &str, basis: Option<Basis>) -> Subscription {
        let mut stored = serde_json::json!({
            "id": "s1",
            "subscriberId": "sub",
            "contactOds": "RR8",
            "reason": "care",
            "criteria": criteria,
            "versionId": 1,
            "lastUpdated": "2026-12-07T10:00:00.000Z",
        });
        if let Some(basis) = basis {
            stored["basis"] = serde_json::to_value(basis).expect("serialises");
        }
        serde_json::from_value(stored).expect("a stored subscription")
    }

    fn explicit(basis: Basis) -> Subscription {
        subscription(
            &format!(
                "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{CHILD}&MessageHeader.event=vaccinations-1"
            ),
            Some(basis),
        )
    }

    fn registered(
        grants: &[(&str, &str)],
        explicit: bool,
        pchr: Option<VerificationLevel>,
    ) -> Caller {
        let mut subscribe_generic: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (rule, code) in grants {
            subscribe_generic
                .entry((*rule).to_owned())
                .or_default()
                .insert((*code).to_owned());
        }
        Caller {
            client_id: "c".into(),
            ods_code: OdsCode::parse("RR8").expect("an ODS code"),
            roles: BTreeSet::from([Role::Subscriber]),
            subscriber_id: Some("sub".into()),
            publish_event_types: BTreeSet::new(),
            publish_for_ods: BTreeSet::new(),
            subscribe_explicit: explicit,
            subscribe_generic,
            sensitivity_authority: false,
            relationship_sources: BTreeSet::new(),
            pchr: pchr.map(|minimum_verification| PchrRegistration {
                minimum_verification,
            }),
        }
    }

    fn area(rule: &str, code: &str) -> Basis {
        Basis::Area {
            rule: rule.into(),
            code: code.into(),
        }
    }

    fn person() -> Basis {
        Basis::Relationship {
            person: NhsNumber::parse("9449305552").expect("an NHS number"),
        }
    }

    #[test]
    fn an_area_basis_ends_when_its_grant_is_removed_and_only_then() {
        let subscription = explicit(area("UHV_POSTCODE_LACODE", "E06000047"));
        let both = registered(
            &[
                ("UHV_POSTCODE_LACODE", "e06000047"),
                ("CHO_POSTCODE_CCG", "84H"),
            ],
            true,
            None,
        );
        assert_eq!(
            no_longer_given(&subscription, &both, None),
            None,
            "any case"
        );
        let narrower = registered(&[("CHO_POSTCODE_CCG", "84H")], true, None);
        let ended = narrowed(&subscription, &narrower, None, "2026-12-07T11:00:00.000Z")
            .expect("the grant went");
        assert_eq!(ended.reason, EndReason::RegistrationNarrowed);
        assert_eq!(ended.last_event, None);
        assert_eq!(
            ended.detail,
            "registration narrowed: the client's registration no longer grants UHV_POSTCODE_LACODE E06000047"
        );
        assert!(!ended.detail.contains(CHILD));
    }

    #[test]
    fn explicit_subscriptions_end_when_the_client_may_no_longer_make_them() {
        let no_explicit = registered(&[("CHO_POSTCODE_CCG", "84H")], false, None);
        let gp = Basis::RegisteredGp {
            practice: OdsCode::parse("RR8").expect("an ODS code"),
        };
        for basis in [
            gp.clone(),
            Basis::DeclaredDirectCare,
            area("CHO_POSTCODE_CCG", "84H"),
        ] {
            let detail = no_longer_given(&explicit(basis.clone()), &no_explicit, None);
            assert_eq!(
                detail.as_deref(),
                Some("the client is no longer registered for explicit subscriptions"),
                "{basis:?}"
            );
            assert_eq!(
                no_longer_given(
                    &explicit(basis),
                    &registered(&[("CHO_POSTCODE_CCG", "84H")], true, None),
                    None
                ),
                None
            );
        }
        // A subscription made before bases were recorded reads as declared.
        let unrecorded = subscription(
            &format!(
                "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{CHILD}&MessageHeader.event=vaccinations-1"
            ),
            None,
        );
        assert!(no_longer_given(&unrecorded, &no_explicit, None).is_some());
        let mut no_role = registered(&[], true, None);
        no_role.roles.clear();
        assert!(no_longer_given(&explicit(gp), &no_role, None).is_some());
    }

    #[test]
    fn a_relationship_basis_ends_when_the_app_is_no_longer_one_or_requires_more() {
        let subscription = explicit(person());
        let p5_app = registered(&[], false, Some(VerificationLevel::P5));
        let p9_app = registered(&[], false, Some(VerificationLevel::P9));
        assert_eq!(
            no_longer_given(&subscription, &p5_app, Some(VerificationLevel::P5)),
            None
        );
        assert_eq!(
            no_longer_given(&subscription, &p9_app, Some(VerificationLevel::P9)),
            None
        );
        let detail = no_longer_given(&subscription, &p9_app, Some(VerificationLevel::P5))
            .expect("P5 attested, P9 required");
        assert!(detail.contains("P9") && detail.contains("P5"), "{detail}");
        assert!(!detail.contains("9449305552"), "no person in it: {detail}");
        // Not attested at all: the relationship's own end covers it.
        assert_eq!(no_longer_given(&subscription, &p9_app, None), None);
        assert_eq!(
            no_longer_given(
                &subscription,
                &registered(&[], true, None),
                Some(VerificationLevel::P9)
            )
            .as_deref(),
            Some("the client is no longer registered as a parent's app")
        );
        // Turned into a parent's app: only relationships remain.
        assert!(no_longer_given(&explicit(Basis::DeclaredDirectCare), &p5_app, None).is_some());
    }

    #[test]
    fn only_a_registration_that_takes_something_away_narrows() {
        let both = registered(
            &[
                ("CHO_POSTCODE_CCG", "84H"),
                ("UHV_POSTCODE_LACODE", "E06000047"),
            ],
            true,
            None,
        );
        let same_lower = registered(
            &[
                ("cho_postcode_ccg", "84h"),
                ("UHV_POSTCODE_LACODE", "e06000047"),
            ],
            true,
            None,
        );
        let wider = registered(
            &[
                ("CHO_POSTCODE_CCG", "84H"),
                ("CHO_POSTCODE_CCG", "15F"),
                ("UHV_POSTCODE_LACODE", "E06000047"),
            ],
            true,
            None,
        );
        assert!(!narrows(&both, &both), "a key rotation");
        assert!(!narrows(&both, &same_lower), "case aside, the same");
        assert!(!narrows(&both, &wider));
        assert!(!narrows(&registered(&[], false, None), &both));
        let fewer = registered(&[("CHO_POSTCODE_CCG", "84H")], true, None);
        assert!(narrows(&both, &fewer));
        assert!(narrows(
            &both,
            &registered(
                &[
                    ("CHO_POSTCODE_CCG", "84H"),
                    ("UHV_POSTCODE_LACODE", "E06000047")
                ],
                false,
                None
            )
        ));
        let mut no_role = both.clone();
        no_role.roles.clear();
        assert!(narrows(&both, &no_role));
        let p5 = registered(&[], false, Some(VerificationLevel::P5));
        let p9 = registered(&[], false, Some(VerificationLevel::P9));
        assert!(narrows(&p5, &p9));
        assert!(!narrows(&p9, &p5), "a lower minimum takes nothing away");
        assert!(narrows(&p9, &registered(&[], true, None)));
        assert!(narrows(&registered(&[], true, None), &p9));
    }

    /// What a registration that narrows nothing would end, the old one
    /// did not give either: skipping the sweep then loses no end.
    #[test]
    fn what_a_registration_that_narrows_nothing_would_end_was_not_given_before() {
        let callers = [
            registered(&[], false, None),
            registered(&[], true, None),
            registered(&[("UHV_POSTCODE_LACODE", "E06000047")], true, None),
            registered(
                &[
                    ("UHV_POSTCODE_LACODE", "E06000047"),
                    ("CHO_POSTCODE_CCG", "84H"),
                ],
                true,
                None,
            ),
            registered(&[("CHO_POSTCODE_CCG", "84H")], false, None),
            registered(&[], false, Some(VerificationLevel::P5)),
            registered(&[], false, Some(VerificationLevel::P9)),
        ];
        let subscriptions = [
            explicit(area("UHV_POSTCODE_LACODE", "E06000047")),
            explicit(area("CHO_POSTCODE_CCG", "84H")),
            explicit(Basis::DeclaredDirectCare),
            explicit(person()),
            subscription(
                "/Bundle?type=message&serviceType=CHO&subscriptionRuleType=CHO_POSTCODE_CCG&Organization.identifier=84H&MessageHeader.event=vaccinations-1",
                None,
            ),
        ];
        for before in &callers {
            for after in callers.iter().filter(|after| !narrows(before, after)) {
                for subscription in &subscriptions {
                    for attested in [
                        None,
                        Some(VerificationLevel::P5),
                        Some(VerificationLevel::P9),
                    ] {
                        if no_longer_given(subscription, after, attested).is_some() {
                            assert!(
                                no_longer_given(subscription, before, attested).is_some(),
                                "{before:?} -> {after:?}: {subscription:?} at {attested:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_generic_subscription_ends_when_its_rule_and_code_are_no_longer_granted() {
        let generic = subscription(
            "/Bundle?type=message&serviceType=CHO&subscriptionRuleType=CHO_POSTCODE_CCG&Organization.identifier=84H&MessageHeader.event=vaccinations-1",
            None,
        );
        assert_eq!(
            no_longer_given(
                &generic,
                &registered(&[("CHO_POSTCODE_CCG", "84H")], false, None),
                None
            ),
            None
        );
        assert_eq!(
            no_longer_given(
                &generic,
                &registered(&[("CHO_POSTCODE_CCG", "15F")], true, None),
                None
            )
            .as_deref(),
            Some("the client's registration no longer grants CHO_POSTCODE_CCG 84H")
        );
    }
}
