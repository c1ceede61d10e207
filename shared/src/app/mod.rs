//! The application layer: the use cases, which take the ports they read and
//! write. They depend on the domain modules and on `crate::ports`; the
//! adapters (`memory`, `aws`) and the Lambda handlers depend on them, never
//! the other way round.

pub mod auth;
pub mod backfill;
pub mod dispatch;
pub mod embargo;
pub mod ending;
pub mod events;
pub mod generic;
pub mod narrowing;
pub mod people;
pub mod register;
pub mod relationship;
pub mod replay;
pub mod status;
pub mod subscriber;
pub mod subscription;
