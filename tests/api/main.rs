//! Integration tests: the real server over TCP, real Postgres, generated
//! tonic clients. One binary, so the crate links once.

mod admin;
mod audit;
mod auth;
mod bad_input;
mod campaigns;
mod complaints;
mod customers;
mod datagen;
mod group_commit;
mod grpcurl;
mod helpers;
mod idempotency;
mod import;
mod insights;
mod interactions;
mod knowledge;
mod lifecycle;
mod matrix;
mod operations;
mod operator_errors;
mod pagination;
mod read_replica;
mod recurrence;
mod reliability;
mod scale_out;
mod server;
mod service_requests;
mod sharing;
mod telemetry;
mod tls;
mod trust;
mod void_merge;
mod watch;
mod wire_compat;
