//! Customer Knowledge Service: captures, classifies and shares what a bank
//! knows about its customers, over gRPC on Postgres.

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod codec;
pub mod config;
pub mod datagen;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod pb;
pub mod startup;
pub mod store;
pub mod telemetry;
