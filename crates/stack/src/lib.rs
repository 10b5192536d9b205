//! The whole platform in one process: [`stack::Stack`] runs ingest, scheduler, worker and API
//! against given NATS and Postgres URLs; [`dev::Dev`] adds private nats-server and
//! PostgreSQL, migrations, the default tenant and keys, and `dev.env`. `tocsin dev`,
//! `tocsin demo`, the end-to-end tests and the benchmarks all start the platform this way.
#![forbid(unsafe_code)]

pub mod dev;
pub mod stack;
