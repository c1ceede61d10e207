//! Connecting adapters to the `Ports` a handler takes: [`Adapters`], a set
//! built one adapter at a time, where a port left [`Unconnected`] answers
//! every call with a configuration error (a function connects only the
//! adapters of the tables and services it is given); and every port for a
//! reference to an adapter, so that a set may borrow adapters it does not
//! own (the replay worker's single subscription, a test's counting store).

use super::RelationshipStore;
use super::{
    AuditLog, ClientStore, DeliveryPublisher, DeliveryStats, EmbargoStore, EventStore,
    HubSigningKey, Ports, QueueMonitor, QueueProvisioner, ReferenceData, RegisterStore,
    ReplayStore, StoreError, SubscriberStore, SubscriptionStore, UsedAssertionIds,
};

/// The adapter of a port a function does not use: every call fails with
/// `StoreError::Configuration` naming the port, so a handler reaching for a
/// port its function was not given fails clearly instead of panicking.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unconnected;

pub(super) fn not_connected(port: &str) -> StoreError {
    StoreError::Configuration(format!("the {port} is not connected in this function"))
}

/// The adapters of one function, connected one at a time
/// (`Adapters::new().events(...).audit(...)`); the ports left out stay
/// [`Unconnected`]. On an `Adapters` value `.events(x)` is the builder;
/// the accessor of the same name is `Ports::events(&adapters)`, and is what
/// a handler, generic over `P: Ports`, calls.
pub struct Adapters<
    E = Unconnected,
    S = Unconnected,
    B = Unconnected,
    P = Unconnected,
    Q = Unconnected,
    C = Unconnected,
    A = Unconnected,
    J = Unconnected,
    U = Unconnected,
    G = Unconnected,
    D = Unconnected,
    M = Unconnected,
    R = Unconnected,
    K = Unconnected,
    X = Unconnected,
    L = Unconnected,
> {
    events: E,
    subscriptions: S,
    subscribers: B,
    publisher: P,
    provisioner: Q,
    clients: C,
    audit: A,
    replays: J,
    used_ids: U,
    register: G,
    stats: D,
    queues: M,
    reference: R,
    signing_key: K,
    embargoes: X,
    relationships: L,
}

impl Adapters {
    /// No adapter connected yet.
    pub fn new() -> Self {
        Adapters {
            events: Unconnected,
            subscriptions: Unconnected,
            subscribers: Unconnected,
            publisher: Unconnected,
            provisioner: Unconnected,
            clients: Unconnected,
            audit: Unconnected,
            replays: Unconnected,
            used_ids: Unconnected,
            register: Unconnected,
            stats: Unconnected,
            queues: Unconnected,
            reference: Unconnected,
            signing_key: Unconnected,
            embargoes: Unconnected,
            relationships: Unconnected,
        }
    }
}

impl Default for Adapters {
    fn default() -> Self {
        Self::new()
    }
}

/// The builder methods, one per port: `$field` takes an adapter of `$port`
/// in place of the `$param` it had. Written out, each would restate every
/// other field; the recursion carries the fields before it (`done`) and
/// after it (`rest`).
macro_rules! connectors {
    ([$($done:ident: $done_param:ident,)*] []) => {};
    (
        [$($done:ident: $done_param:ident,)*]
        [$field:ident: $param:ident: $port:ident, $($rest:ident: $rest_param:ident: $rest_port:ident,)*]
    ) => {
        #[doc = concat!("Connects the ", stringify!($port), ".")]
        pub fn $field<T: $port>(
            self,
            $field: T,
        ) -> Adapters<$($done_param,)* T, $($rest_param,)*> {
            Adapters {
                $($done: self.$done,)*
                $field,
                $($rest: self.$rest,)*
            }
        }

        connectors!(
            [$($done: $done_param,)* $field: $param,]
            [$($rest: $rest_param: $rest_port,)*]
        );
    };
}

// The return types name the sixteen adapters, one changed.
#[allow(clippy::type_complexity)]
impl<E, S, B, P, Q, C, A, J, U, G, D, M, R, K, X, L>
    Adapters<E, S, B, P, Q, C, A, J, U, G, D, M, R, K, X, L>
{
    connectors!(
        []
        [
            events: E: EventStore,
            subscriptions: S: SubscriptionStore,
            subscribers: B: SubscriberStore,
            publisher: P: DeliveryPublisher,
            provisioner: Q: QueueProvisioner,
            clients: C: ClientStore,
            audit: A: AuditLog,
            replays: J: ReplayStore,
            used_ids: U: UsedAssertionIds,
            register: G: RegisterStore,
            stats: D: DeliveryStats,
            queues: M: QueueMonitor,
            reference: R: ReferenceData,
            signing_key: K: HubSigningKey,
            embargoes: X: EmbargoStore,
            relationships: L: RelationshipStore,
        ]
    );
}

impl<E, S, B, P, Q, C, A, J, U, G, D, M, R, K, X, L> Ports
    for Adapters<E, S, B, P, Q, C, A, J, U, G, D, M, R, K, X, L>
where
    E: EventStore,
    S: SubscriptionStore,
    B: SubscriberStore,
    P: DeliveryPublisher,
    Q: QueueProvisioner,
    C: ClientStore,
    A: AuditLog,
    J: ReplayStore,
    U: UsedAssertionIds,
    G: RegisterStore,
    D: DeliveryStats,
    M: QueueMonitor,
    R: ReferenceData,
    K: HubSigningKey,
    X: EmbargoStore,
    L: RelationshipStore,
{
    type Events = E;
    type Subscriptions = S;
    type Subscribers = B;
    type Publisher = P;
    type Provisioner = Q;
    type Clients = C;
    type Audit = A;
    type Replays = J;
    type UsedIds = U;
    type Register = G;
    type Stats = D;
    type Queues = M;
    type Reference = R;
    type SigningKey = K;
    type Embargoes = X;
    type Relationships = L;

    fn events(&self) -> &E {
        &self.events
    }

    fn subscriptions(&self) -> &S {
        &self.subscriptions
    }

    fn subscribers(&self) -> &B {
        &self.subscribers
    }

    fn publisher(&self) -> &P {
        &self.publisher
    }

    fn provisioner(&self) -> &Q {
        &self.provisioner
    }

    fn clients(&self) -> &C {
        &self.clients
    }

    fn audit(&self) -> &A {
        &self.audit
    }

    fn replays(&self) -> &J {
        &self.replays
    }

    fn used_ids(&self) -> &U {
        &self.used_ids
    }

    fn register(&self) -> &G {
        &self.register
    }

    fn stats(&self) -> &D {
        &self.stats
    }

    fn queues(&self) -> &M {
        &self.queues
    }

    fn reference(&self) -> &R {
        &self.reference
    }

    fn signing_key(&self) -> &K {
        &self.signing_key
    }

    fn embargoes(&self) -> &X {
        &self.embargoes
    }

    fn relationships(&self) -> &L {
        &self.relationships
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_left_unconnected_fails_with_a_configuration_error_naming_it() {
        let ports = Adapters::new().audit(Unconnected);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let error = runtime
            .block_on(EventStore::get(Ports::events(&ports), "vaccinations-1/id"))
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Configuration(text) if text.contains("EventStore")),
            "{error}"
        );
        assert_eq!(Ports::signing_key(&ports).key_id(), "");
        assert!(matches!(
            runtime.block_on(Ports::signing_key(&ports).sign(b"x")),
            Err(StoreError::Configuration(_))
        ));
    }
}
