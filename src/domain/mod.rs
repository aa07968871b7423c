//! Pure types and rules of the customer knowledge model: no tonic, no sqlx.

/// An enum spelled in Postgres and filters as its UPPER_SNAKE_CASE name.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling stored in Postgres and used in filters.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

pub mod audit;
pub mod campaign;
pub mod customer;
pub mod filter;
pub mod insight;
pub mod interaction;
pub mod knowledge;
pub mod mask;
pub mod principal;
pub mod report;
pub mod search;
pub mod service;
pub mod systems;
