//! The adapter tier: the SDK adapters against the emulator, each test with
//! an emulator of its own (moto alone, no functions).

mod embargo_store;
mod migration;
mod reference_data;
mod register_store;
mod relationship_store;
mod stores;
