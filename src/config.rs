//! Typed settings: built-in defaults → optional TOML file → `CK__SECTION__KEY`
//! environment variables, plus `DATABASE_URL`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Built-in defaults; every key the service reads is listed here, so this is
/// also the reference of the configuration file format.
const DEFAULTS: &str = r#"
[server]
grpc_addr = "127.0.0.1:50051"
admin_addr = "127.0.0.1:9464"
shutdown_grace_secs = 25
max_message_bytes = 4194304
request_timeout_secs = 30
concurrency_limit_per_connection = 256

[database]
migrate = true
max_connections = 16
acquire_timeout_ms = 2000
statement_timeout_ms = 10000
health_check_interval_ms = 2000

[auth]
mode = "jwt"
trusted_headers_allow_non_loopback = false
jwt.leeway_secs = 30

[api]

[log]
format = "json"
level = "info"
"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub api: ApiSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shutdown_grace_secs: u64,
    pub max_message_bytes: usize,
    pub request_timeout_secs: u64,
    pub concurrency_limit_per_connection: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: Option<SecretString>,
    pub migrate: bool,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub health_check_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Jwt,
    TrustedHeaders,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// `trusted_headers` trusts whoever can reach the port, so it is only
    /// allowed on a loopback address unless this is set (a mesh sidecar that
    /// validates the JWT is then the only way in).
    pub trusted_headers_allow_non_loopback: bool,
    pub jwt: JwtSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JwtSettings {
    pub hs256_secret: Option<SecretString>,
    pub public_keys_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// Key that signs page tokens. Replicas behind one load balancer must
    /// share it; when unset each process draws a random one.
    pub page_token_secret: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads settings from the defaults, the optional file and the process
    /// environment.
    pub fn load(file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let env: std::collections::HashMap<String, String> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Loads settings with an explicit environment (tests use this).
    pub fn load_from(
        file: Option<PathBuf>,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let file = file.or_else(|| env.get("CK_CONFIG").map(PathBuf::from));
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = &file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "configuration file {} (--config / CK_CONFIG) does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
        }
        let ck_vars: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("CK__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("CK")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(ck_vars)),
        );
        if let Some(url) = env.get("DATABASE_URL")
            && !env.contains_key("CK__DATABASE__URL")
        {
            builder = builder
                .set_override("database.url", url.as_str())
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        let settings: Settings = builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: &str| Err(ConfigError(msg.to_string()));
        if self.server.max_message_bytes < 1024 || self.server.max_message_bytes > 64 << 20 {
            return fail(
                "server.max_message_bytes (CK__SERVER__MAX_MESSAGE_BYTES) must be between 1 KiB and 64 MiB",
            );
        }
        if self.server.request_timeout_secs == 0 {
            return fail(
                "server.request_timeout_secs (CK__SERVER__REQUEST_TIMEOUT_SECS) must be positive",
            );
        }
        if self.server.concurrency_limit_per_connection == 0 {
            return fail(
                "server.concurrency_limit_per_connection (CK__SERVER__CONCURRENCY_LIMIT_PER_CONNECTION) must be positive",
            );
        }
        if self.database.max_connections == 0 {
            return fail(
                "database.max_connections (CK__DATABASE__MAX_CONNECTIONS) must be positive",
            );
        }
        if self.database.acquire_timeout_ms == 0 || self.database.statement_timeout_ms == 0 {
            return fail(
                "database.acquire_timeout_ms and database.statement_timeout_ms must be positive",
            );
        }
        match &self.database.url {
            None => {
                return fail(
                    "database.url is not set: set DATABASE_URL or CK__DATABASE__URL \
                     (scripts/run.sh provides a local Postgres when neither is set)",
                );
            }
            Some(url)
                if !(url.expose_secret().starts_with("postgres://")
                    || url.expose_secret().starts_with("postgresql://")) =>
            {
                return fail(
                    "database.url (DATABASE_URL / CK__DATABASE__URL) must start with postgres://",
                );
            }
            Some(_) => {}
        }
        match self.auth.mode {
            AuthMode::Jwt => {
                let jwt = &self.auth.jwt;
                let has_secret = jwt
                    .hs256_secret
                    .as_ref()
                    .is_some_and(|s| !s.expose_secret().is_empty());
                if !has_secret && jwt.public_keys_file.is_none() {
                    return fail(
                        "auth.jwt.hs256_secret (CK__AUTH__JWT__HS256_SECRET) or \
                         auth.jwt.public_keys_file (CK__AUTH__JWT__PUBLIC_KEYS_FILE) must be set \
                         when auth.mode = jwt",
                    );
                }
                if has_secret
                    && jwt
                        .hs256_secret
                        .as_ref()
                        .is_some_and(|s| s.expose_secret().len() < 32)
                {
                    return fail(
                        "auth.jwt.hs256_secret (CK__AUTH__JWT__HS256_SECRET) must be at least 32 bytes",
                    );
                }
                if jwt.issuer.as_deref().unwrap_or("").is_empty() {
                    return fail(
                        "auth.jwt.issuer (CK__AUTH__JWT__ISSUER) must be set when auth.mode = jwt",
                    );
                }
                if jwt.audience.as_deref().unwrap_or("").is_empty() {
                    return fail(
                        "auth.jwt.audience (CK__AUTH__JWT__AUDIENCE) must be set when auth.mode = jwt",
                    );
                }
            }
            AuthMode::TrustedHeaders => {
                if !self.server.grpc_addr.ip().is_loopback()
                    && !self.auth.trusted_headers_allow_non_loopback
                {
                    return fail(
                        "auth.mode = trusted_headers refuses the non-loopback server.grpc_addr \
                         (CK__SERVER__GRPC_ADDR) unless auth.trusted_headers_allow_non_loopback \
                         (CK__AUTH__TRUSTED_HEADERS_ALLOW_NON_LOOPBACK) is true",
                    );
                }
            }
        }
        if let Some(secret) = &self.api.page_token_secret
            && secret.expose_secret().len() < 32
        {
            return fail(
                "api.page_token_secret (CK__API__PAGE_TOKEN_SECRET) must be at least 32 bytes",
            );
        }
        Ok(())
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://localhost/ck"),
            (
                "CK__AUTH__JWT__HS256_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
            ("CK__AUTH__JWT__ISSUER", "https://idp"),
            ("CK__AUTH__JWT__AUDIENCE", "ck"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert(k.to_string(), v.to_string());
            }
        }
        env
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        Settings::load_from(None, &env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_match_the_operating_contract() {
        let settings = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(settings.server.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(settings.server.admin_addr.to_string(), "127.0.0.1:9464");
        assert!(settings.database.migrate);
        assert_eq!(settings.auth.mode, AuthMode::Jwt);
    }

    #[test]
    fn environment_overrides_and_database_url_precedence() {
        let settings = Settings::load_from(
            None,
            &env(&[
                ("CK__SERVER__GRPC_ADDR", "0.0.0.0:6000"),
                ("CK__DATABASE__MIGRATE", "false"),
                ("CK__DATABASE__URL", "postgres://primary/ck"),
                ("CK__SERVER__SHUTDOWN_GRACE_SECS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.grpc_addr.port(), 6000);
        assert!(!settings.database.migrate);
        assert_eq!(settings.server.shutdown_grace_secs, 5);
        assert_eq!(
            settings.database.url.unwrap().expose_secret(),
            "postgres://primary/ck"
        );
    }

    #[test]
    fn invalid_configuration_names_the_key() {
        assert!(error(&[("CK__SERVER__GRPC_ADDR", "nowhere")]).contains("server.grpc_addr"));
        assert!(
            error(&[("CK__SERVER__SHUTDOWN_GRACE_SECS", "soon")])
                .contains("server.shutdown_grace_secs")
        );
        assert!(error(&[("CK__AUTH__MODE", "basic")]).contains("auth.mode"));
        assert!(error(&[("DATABASE_URL", "")]).contains("DATABASE_URL"));
        assert!(error(&[("DATABASE_URL", "mysql://x")]).contains("database.url"));
        assert!(
            error(&[("CK__AUTH__JWT__HS256_SECRET", "")]).contains("CK__AUTH__JWT__HS256_SECRET")
        );
        assert!(error(&[("CK__AUTH__JWT__HS256_SECRET", "short")]).contains("32 bytes"));
        assert!(error(&[("CK__AUTH__JWT__ISSUER", "")]).contains("auth.jwt.issuer"));
        assert!(
            error(&[
                ("CK__AUTH__MODE", "trusted_headers"),
                ("CK__SERVER__GRPC_ADDR", "0.0.0.0:50051"),
            ])
            .contains("CK__AUTH__TRUSTED_HEADERS_ALLOW_NON_LOOPBACK")
        );
        assert!(
            Settings::load_from(
                None,
                &env(&[
                    ("CK__AUTH__MODE", "trusted_headers"),
                    ("CK__SERVER__GRPC_ADDR", "0.0.0.0:50051"),
                    ("CK__AUTH__TRUSTED_HEADERS_ALLOW_NON_LOOPBACK", "true"),
                ])
            )
            .is_ok()
        );
        let missing = Settings::load_from(Some("/nonexistent/ck.toml".into()), &env(&[]));
        assert!(missing.unwrap_err().to_string().contains("CK_CONFIG"));
    }

    #[test]
    fn a_config_file_sits_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.toml");
        std::fs::write(
            &path,
            "[server]\ngrpc_addr = \"127.0.0.1:7000\"\nshutdown_grace_secs = 9\n",
        )
        .unwrap();
        let settings = Settings::load_from(
            Some(path),
            &env(&[("CK__SERVER__SHUTDOWN_GRACE_SECS", "3")]),
        )
        .unwrap();
        assert_eq!(settings.server.grpc_addr.port(), 7000);
        assert_eq!(settings.server.shutdown_grace_secs, 3);
    }
}
