//! Connecting adapters to the `Ports` a handler takes: [`Adapters`], a set
//! built one adapter at a time, where a port left [`Unconnected`] answers
//! every call with a configuration error (a function connects only the
//! adapters of the tables and services it is given); and every port for a
//! reference to an adapter, so that a set may borrow adapters it does not
//! own (the replay worker's single subscription, a test's counting store).

use super::{
    AuditLog, ClientStore, DeliveryPublisher, DeliveryStats, EventStore, HubSigningKey, Ports,
    QueueMonitor, QueueProvisioner, ReferenceData, RegisterStore, ReplayStore, StoreError,
    SubscriberStore, SubscriptionStore, UsedAssertionIds,
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
/// [`Unconnected`].
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
        }
    }
}

impl Default for Adapters {
    fn default() -> Self {
        Self::new()
    }
}

// Each builder method's return type names the fourteen adapters, one changed.
#[allow(clippy::type_complexity)]
impl<E, S, B, P, Q, C, A, J, U, G, D, M, R, K> Adapters<E, S, B, P, Q, C, A, J, U, G, D, M, R, K> {
    /// Connects the EventStore.
    pub fn events<T: EventStore>(
        self,
        events: T,
    ) -> Adapters<T, S, B, P, Q, C, A, J, U, G, D, M, R, K> {
        Adapters {
            events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the SubscriptionStore.
    pub fn subscriptions<T: SubscriptionStore>(
        self,
        subscriptions: T,
    ) -> Adapters<E, T, B, P, Q, C, A, J, U, G, D, M, R, K> {
        Adapters {
            subscriptions,
            events: self.events,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the SubscriberStore.
    pub fn subscribers<T: SubscriberStore>(
        self,
        subscribers: T,
    ) -> Adapters<E, S, T, P, Q, C, A, J, U, G, D, M, R, K> {
        Adapters {
            subscribers,
            events: self.events,
            subscriptions: self.subscriptions,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the DeliveryPublisher.
    pub fn publisher<T: DeliveryPublisher>(
        self,
        publisher: T,
    ) -> Adapters<E, S, B, T, Q, C, A, J, U, G, D, M, R, K> {
        Adapters {
            publisher,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the QueueProvisioner.
    pub fn provisioner<T: QueueProvisioner>(
        self,
        provisioner: T,
    ) -> Adapters<E, S, B, P, T, C, A, J, U, G, D, M, R, K> {
        Adapters {
            provisioner,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the ClientStore.
    pub fn clients<T: ClientStore>(
        self,
        clients: T,
    ) -> Adapters<E, S, B, P, Q, T, A, J, U, G, D, M, R, K> {
        Adapters {
            clients,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the AuditLog.
    pub fn audit<T: AuditLog>(
        self,
        audit: T,
    ) -> Adapters<E, S, B, P, Q, C, T, J, U, G, D, M, R, K> {
        Adapters {
            audit,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the ReplayStore.
    pub fn replays<T: ReplayStore>(
        self,
        replays: T,
    ) -> Adapters<E, S, B, P, Q, C, A, T, U, G, D, M, R, K> {
        Adapters {
            replays,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the UsedAssertionIds.
    pub fn used_ids<T: UsedAssertionIds>(
        self,
        used_ids: T,
    ) -> Adapters<E, S, B, P, Q, C, A, J, T, G, D, M, R, K> {
        Adapters {
            used_ids,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the RegisterStore.
    pub fn register<T: RegisterStore>(
        self,
        register: T,
    ) -> Adapters<E, S, B, P, Q, C, A, J, U, T, D, M, R, K> {
        Adapters {
            register,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the DeliveryStats.
    pub fn stats<T: DeliveryStats>(
        self,
        stats: T,
    ) -> Adapters<E, S, B, P, Q, C, A, J, U, G, T, M, R, K> {
        Adapters {
            stats,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            queues: self.queues,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the QueueMonitor.
    pub fn queues<T: QueueMonitor>(
        self,
        queues: T,
    ) -> Adapters<E, S, B, P, Q, C, A, J, U, G, D, T, R, K> {
        Adapters {
            queues,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            reference: self.reference,
            signing_key: self.signing_key,
        }
    }

    /// Connects the ReferenceData.
    pub fn reference<T: ReferenceData>(
        self,
        reference: T,
    ) -> Adapters<E, S, B, P, Q, C, A, J, U, G, D, M, T, K> {
        Adapters {
            reference,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            signing_key: self.signing_key,
        }
    }

    /// Connects the HubSigningKey.
    pub fn signing_key<T: HubSigningKey>(
        self,
        signing_key: T,
    ) -> Adapters<E, S, B, P, Q, C, A, J, U, G, D, M, R, T> {
        Adapters {
            signing_key,
            events: self.events,
            subscriptions: self.subscriptions,
            subscribers: self.subscribers,
            publisher: self.publisher,
            provisioner: self.provisioner,
            clients: self.clients,
            audit: self.audit,
            replays: self.replays,
            used_ids: self.used_ids,
            register: self.register,
            stats: self.stats,
            queues: self.queues,
            reference: self.reference,
        }
    }
}

impl<E, S, B, P, Q, C, A, J, U, G, D, M, R, K> Ports
    for Adapters<E, S, B, P, Q, C, A, J, U, G, D, M, R, K>
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
}
