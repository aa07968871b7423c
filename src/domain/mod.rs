//! Pure types and rules of the customer knowledge model: no tonic, no sqlx.

pub mod customer;
pub mod filter;
pub mod mask;
pub mod principal;
pub mod search;
