//! Client narrowing: after an operator replaces a client's registration,
//! the subscriptions of its subscriber whose basis the new registration no
//! longer gives end (the rule is `crate::narrowing`).

use time::OffsetDateTime;

use super::ending::end_on_lost_basis;
use crate::auth::{Caller, Client};
use crate::basis::Basis;
use crate::narrowing;
use crate::ports::{ClientStore, Ports, RelationshipStore, StoreError, SubscriptionStore};

/// Subscriptions read a page at a time.
const PAGE: usize = 100;

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// True when the client is new.
    pub created: bool,
    /// The client as stored now (with the subscriber it acts as).
    pub client: Client,
    /// The subscriptions it ended.
    pub ended: usize,
}

/// Registers a client, or replaces its registration; a replacement that
/// narrows what the stored one gave (`narrowing::narrows`) then ends the
/// subscriptions it no longer gives a basis ([`end_narrowed`]). Stored
/// first, so that no subscription is made on the old registration after
/// the sweep has passed it. Should the sweep fail, the previous
/// registration is put back before the error is returned: the operator's
/// retry then narrows again and completes it (a subscription already ended
/// stays ended, which is the safe side).
pub async fn register<P: Ports>(
    ports: &P,
    client: &Client,
    now: OffsetDateTime,
) -> Result<Registered, StoreError> {
    let clients = ports.clients();
    let before = clients.get(&client.client_id).await?;
    let created = clients.register(client).await?;
    let registered = clients
        .get(&client.client_id)
        .await?
        .unwrap_or_else(|| client.clone());
    let Some(before) =
        before.filter(|before| narrowing::narrows(&Caller::of(before), &Caller::of(&registered)))
    else {
        return Ok(Registered {
            created,
            client: registered,
            ended: 0,
        });
    };
    match end_narrowed(ports, &registered, now).await {
        Ok(ended) => Ok(Registered {
            created,
            client: registered,
            ended,
        }),
        Err(error) => {
            if let Err(restoring) = clients.register(&before).await {
                tracing::error!(
                    client_id = %before.client_id,
                    error = %restoring,
                    "the previous registration could not be put back after a failed narrowing: \
                     post the previous registration, then the new one"
                );
            }
            Err(error)
        }
    }
}

/// Ends every active subscription of the client's subscriber whose basis
/// its registration, as now stored, no longer gives, each audited first
/// (`BasisLost`, naming `client-registration/<client id>`): how many it
/// ended. A client linked to no subscriber has none. Safe to run again: an
/// ended subscription is skipped, so a sweep that failed part-way is
/// completed by the retry ([`register`]).
///
/// Cost: one Query per 100 of the subscriber's subscriptions, and one
/// GetItem per person a parent's app's relationship subscriptions rest on
/// (the level it attested for them).
pub async fn end_narrowed<P: Ports>(
    ports: &P,
    client: &Client,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let Some(subscriber_id) = client.subscriber_id.as_deref() else {
        return Ok(0);
    };
    let registered = Caller::of(client);
    let at = crate::audit::timestamp(now);
    let reference = format!("client-registration/{}", client.client_id);
    let mut ended = 0;
    // The level the app attested for each person, read once per person:
    // its subscriptions to several children rest on the same attestation.
    let mut levels = std::collections::BTreeMap::new();
    let mut page_token: Option<String> = None;
    loop {
        let page = ports
            .subscriptions()
            .list_by_subscriber(subscriber_id, PAGE, page_token.as_deref())
            .await?;
        for subscription in page.items.iter().filter(|s| s.is_active(now)) {
            // The level is read only where it can matter: a relationship
            // basis of a client that is still a parent's app.
            let attested = match (subscription.basis(), registered.pchr) {
                (Basis::Relationship { person }, Some(_))
                    if subscription.criteria.target.patient().is_some() =>
                {
                    match levels.get(&person) {
                        Some(level) => *level,
                        None => {
                            let level = ports
                                .relationships()
                                .acted_for(subscriber_id, person)
                                .await?
                                .map(|acted| acted.verification_level);
                            levels.insert(person, level);
                            level
                        }
                    }
                }
                _ => None,
            };
            let Some(end) = narrowing::narrowed(subscription, &registered, attested, &at) else {
                continue;
            };
            if end_on_lost_basis(ports, &reference, subscription, &end, now).await? {
                ended += 1;
            }
        }
        match page.next {
            Some(next) => page_token = Some(next),
            None => return Ok(ended),
        }
    }
}
