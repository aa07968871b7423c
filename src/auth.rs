//! Authentication: a `Principal` from a JWT (HS256 secret, or RS256/ES256
//! public keys) or, in `trusted_headers` mode, from headers a sidecar set.
//! A role the service does not know is refused by name
//! (`domain::principal::roles_from_claims`), in either mode.

use std::{path::Path, sync::Arc};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tonic::metadata::MetadataMap;

use crate::{
    config::{AuthMode, AuthSettings},
    domain::principal::{Principal, roles_from_claims},
    error::Error,
};

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// The end customer a calling system acts for (mobile banking backend).
    #[serde(default)]
    on_behalf_of: Option<String>,
}

/// Public keys by the algorithm they verify.
struct KeyRing {
    keys: Vec<(Algorithm, DecodingKey)>,
}

#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

enum Inner {
    Jwt {
        keys: KeyRing,
        issuer: String,
        audience: String,
        leeway: u64,
    },
    TrustedHeaders,
}

/// Reads PEM public keys (one or more blocks); each is tried as RSA, then EC.
fn load_public_keys(path: &Path) -> anyhow::Result<Vec<(Algorithm, DecodingKey)>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "auth.jwt.public_keys_file (CK__AUTH__JWT__PUBLIC_KEYS_FILE) {}: {e}",
            path.display()
        )
    })?;
    let mut keys = Vec::new();
    for block in text.split("-----BEGIN ").skip(1) {
        let pem = format!("-----BEGIN {block}");
        if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            keys.push((Algorithm::RS256, key));
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
            keys.push((Algorithm::ES256, key));
        } else {
            anyhow::bail!(
                "auth.jwt.public_keys_file (CK__AUTH__JWT__PUBLIC_KEYS_FILE) holds a PEM block that is neither an RSA nor an EC public key"
            );
        }
    }
    if keys.is_empty() {
        anyhow::bail!(
            "auth.jwt.public_keys_file (CK__AUTH__JWT__PUBLIC_KEYS_FILE) holds no PEM public key"
        );
    }
    Ok(keys)
}

impl Authenticator {
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let inner = match settings.mode {
            AuthMode::TrustedHeaders => Inner::TrustedHeaders,
            AuthMode::Jwt => {
                let jwt = &settings.jwt;
                let mut keys = Vec::new();
                if let Some(secret) = &jwt.hs256_secret
                    && !secret.expose_secret().is_empty()
                {
                    keys.push((
                        Algorithm::HS256,
                        DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                    ));
                }
                if let Some(path) = &jwt.public_keys_file {
                    keys.extend(load_public_keys(path)?);
                }
                Inner::Jwt {
                    keys: KeyRing { keys },
                    issuer: jwt.issuer.clone().unwrap_or_default(),
                    audience: jwt.audience.clone().unwrap_or_default(),
                    leeway: jwt.leeway_secs,
                }
            }
        };
        Ok(Authenticator {
            inner: Arc::new(inner),
        })
    }

    /// The caller of a request, or UNAUTHENTICATED.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Error> {
        match self.inner.as_ref() {
            Inner::TrustedHeaders => from_trusted_headers(metadata),
            Inner::Jwt {
                keys,
                issuer,
                audience,
                leeway,
            } => {
                let token = bearer_token(metadata)?;
                let header = decode_header(token)
                    .map_err(|_| Error::Unauthenticated("the bearer token is not a JWT".into()))?;
                let mut validation = Validation::new(header.alg);
                validation.set_issuer(&[issuer]);
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                validation.leeway = *leeway;
                // A token whose `nbf` lies ahead is not valid yet.
                validation.validate_nbf = true;
                let mut last_error = None;
                for (_, key) in keys.keys.iter().filter(|(alg, _)| *alg == header.alg) {
                    match decode::<Claims>(token, key, &validation) {
                        Ok(data) => return principal_from_claims(data.claims),
                        Err(e) => last_error = Some(e),
                    }
                }
                Err(Error::Unauthenticated(match last_error {
                    None => format!("tokens signed with {:?} are not accepted", header.alg),
                    Some(e) => format!("the bearer token is not valid: {}", describe(&e)),
                }))
            }
        }
    }
}

/// Says why a token failed without echoing any of its content.
fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "it has expired",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, iss, aud, sub) is missing",
        ErrorKind::ImmatureSignature => "it is not valid yet",
        _ => "it cannot be decoded",
    }
}

fn bearer_token(metadata: &MetadataMap) -> Result<&str, Error> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| Error::Unauthenticated("authorization: Bearer <JWT> is required".into()))?
        .to_str()
        .map_err(|_| Error::Unauthenticated("the authorization header is not text".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| Error::Unauthenticated("authorization must be 'Bearer <JWT>'".into()))?;
    Ok(token.trim())
}

fn principal_from_claims(claims: Claims) -> Result<Principal, Error> {
    if claims.sub.is_empty() || claims.sub.len() > 128 {
        return Err(Error::Unauthenticated(
            "the token's sub claim must be 1 to 128 characters".into(),
        ));
    }
    Ok(Principal {
        subject: claims.sub,
        branch: claims.branch.filter(|b| !b.is_empty()),
        team: claims.team.filter(|t| !t.is_empty()),
        roles: roles_from_claims(&claims.roles)?,
        on_behalf_of: claims.on_behalf_of.filter(|c| !c.is_empty()),
    })
}

fn from_trusted_headers(metadata: &MetadataMap) -> Result<Principal, Error> {
    let header = |name: &str| -> Result<Option<String>, Error> {
        match metadata.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                .map_err(|_| Error::Unauthenticated(format!("{name} is not text"))),
        }
    };
    let subject = header("x-employee-id")?.ok_or_else(|| {
        Error::Unauthenticated("x-employee-id is required in trusted_headers mode".into())
    })?;
    principal_from_claims(Claims {
        sub: subject,
        branch: header("x-branch")?,
        team: header("x-team")?,
        roles: header("x-roles")?
            .map(|r| r.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
        on_behalf_of: header("x-on-behalf-of")?,
    })
}
