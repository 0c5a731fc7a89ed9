//! Signed links to the unit pages (docs/api.md "Pages"): access without
//! accounts.
//!
//! A link carries a token `<scope>.<expires>.<mac>`: the scope (`admin`, or
//! `u~` and the base64url of a unit code), the expiry in Unix seconds, and an
//! HMAC-SHA256 (first 16 bytes, hex) over both, keyed by `[http] ui_secret`.
//! Nothing is stored on the server: a token is valid while its MAC checks and
//! its expiry has not passed. A unit's token opens that unit's pages and those
//! of the units under it; the admin token opens everything.
//!
//! `notify` builds the links of its e-mails here and `api` checks them, so this
//! sits on the side of both, importing neither.

use crate::config::common::{parse_duration, ConfigError, Secret, Src};
use crate::time::{Instant, SECOND};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use toml::Spanned;

type HmacSha256 = Hmac<Sha256>;

/// Who a token lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every page.
    Admin,
    /// One unit (and the units under it).
    Unit(String),
}

/// Why a token is refused. The page says which, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token in the link.
    #[error("the link has no access token")]
    Missing,
    /// Not a token of this server (tampered, cut, or another key).
    #[error("the link is not valid (altered or incomplete)")]
    Invalid,
    /// Signed by this server, but too old.
    #[error("the link has expired")]
    Expired,
}

/// `[http]` settings of the pages, owned here.
#[derive(Debug, Clone, PartialEq)]
pub struct Links {
    secret: Secret,
    /// Base of every link, without a trailing `/` (e.g. `https://overdued.example.gov.vn`).
    pub public_url: String,
    /// How long a link stays valid.
    pub valid_for: i64,
}

/// The page keys of `[http]` as written.
#[derive(Deserialize, Default)]
pub struct RawLinks {
    /// `ui_secret`: `env:NAME` or `file:PATH`.
    pub ui_secret: Option<Spanned<String>>,
    /// `public_url`.
    pub public_url: Option<Spanned<String>>,
    /// `link_valid_for`: a duration such as `14d`.
    pub link_valid_for: Option<Spanned<String>>,
}

/// Default link lifetime: two weeks, long enough for a digest read late.
pub const DEFAULT_VALID_FOR: i64 = 14 * 86_400 * SECOND;

impl Links {
    /// Links signed with `secret` (at least 32 bytes is advised; 16 are required).
    pub fn new(secret: Secret, public_url: &str, valid_for: i64) -> Links {
        Links {
            secret,
            public_url: public_url.trim_end_matches('/').to_string(),
            valid_for,
        }
    }

    /// Validates the page keys of `[http]`; `None` without a `ui_secret` (no
    /// pages, e-mails without links). `listen` is the default base.
    pub fn validate(
        src: &Src<'_>,
        base: &std::path::Path,
        raw: &RawLinks,
        listen: std::net::SocketAddr,
    ) -> Result<Option<Links>, ConfigError> {
        let valid_for = match &raw.link_valid_for {
            None => DEFAULT_VALID_FOR,
            Some(d) => match parse_duration(d.get_ref()) {
                Some(v) if (3600 * SECOND..=366 * 86_400 * SECOND).contains(&v) => v,
                _ => {
                    return src.err(
                        d.span(),
                        "http.link_valid_for",
                        format!(
                            "{:?} is not a duration from 1h to 366d, like 14d",
                            d.get_ref()
                        ),
                    )
                }
            },
        };
        let public_url = match &raw.public_url {
            None => format!("http://{listen}"),
            Some(u) => {
                let v = u.get_ref().trim();
                let ok = (v.starts_with("http://") || v.starts_with("https://"))
                    && v.len() > "https://".len()
                    && !v.contains(['?', '#', ' ', '"', '<', '>']);
                if !ok {
                    return src.err(
                        u.span(),
                        "http.public_url",
                        format!(
                            "{:?} is not an http:// or https:// address like https://overdued.example.gov.vn",
                            u.get_ref()
                        ),
                    );
                }
                v.to_string()
            }
        };
        let Some(s) = &raw.ui_secret else {
            return Ok(None);
        };
        let Some(secret) = src.secret(s.get_ref(), base, Some(s.span()), "http.ui_secret")? else {
            return Ok(None);
        };
        if secret.expose().len() < 16 {
            return src.err(
                s.span(),
                "http.ui_secret",
                "must be at least 16 characters (use env:NAME or file:PATH)",
            );
        }
        Ok(Some(Links::new(secret, &public_url, valid_for)))
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        let mut m = <HmacSha256 as Mac>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        for p in parts {
            m.update(&(p.len() as u32).to_be_bytes());
            m.update(p);
        }
        let bytes = m.finalize().into_bytes();
        bytes[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A token for `scope`, valid until `expires`.
    pub fn token(&self, scope: &Scope, expires: Instant) -> String {
        let s = match scope {
            Scope::Admin => "admin".to_string(),
            Scope::Unit(u) => format!(
                "u~{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(u.as_bytes())
            ),
        };
        let exp = expires.div_euclid(SECOND);
        let mac = self.mac(&[b"token", s.as_bytes(), exp.to_string().as_bytes()]);
        format!("{s}.{exp}.{mac}")
    }

    /// Checks a token at `now`: its scope, or why it is refused.
    pub fn verify(&self, token: Option<&str>, now: Instant) -> Result<Scope, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        if token.len() > 512 {
            return Err(TokenError::Invalid);
        }
        let mut it = token.splitn(3, '.');
        let (Some(s), Some(exp), Some(mac)) = (it.next(), it.next(), it.next()) else {
            return Err(TokenError::Invalid);
        };
        let want = self.mac(&[b"token", s.as_bytes(), exp.as_bytes()]);
        if !constant_time_eq(want.as_bytes(), mac.as_bytes()) {
            return Err(TokenError::Invalid);
        }
        let exp: i64 = exp.parse().map_err(|_| TokenError::Invalid)?;
        let scope = if s == "admin" {
            Scope::Admin
        } else {
            let b = s.strip_prefix("u~").ok_or(TokenError::Invalid)?;
            let code = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b)
                .ok()
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or(TokenError::Invalid)?;
            Scope::Unit(code)
        };
        if exp.saturating_mul(SECOND) <= now {
            return Err(TokenError::Expired);
        }
        Ok(scope)
    }

    /// The anti-forgery value of a form that acts on `target` with `token`:
    /// a page can only be posted back by whoever was shown it.
    pub fn csrf(&self, token: &str, target: &str) -> String {
        self.mac(&[b"csrf", token.as_bytes(), target.as_bytes()])
    }

    /// Whether `got` is the anti-forgery value of (`token`, `target`).
    pub fn check_csrf(&self, token: &str, target: &str, got: &str) -> bool {
        constant_time_eq(self.csrf(token, target).as_bytes(), got.as_bytes())
    }

    /// The unit page of `unit`, for a token of that unit, valid from `now`.
    pub fn unit_url(&self, unit: &str, now: Instant) -> String {
        let t = self.token(&Scope::Unit(unit.to_string()), now + self.valid_for);
        format!("{}/ui/unit/{}?t={t}", self.public_url, encode_path(unit))
    }

    /// The page of `record`, for a token of `unit` (the recipient's).
    pub fn record_url(&self, unit: &str, record: &str, now: Instant) -> String {
        let t = self.token(&Scope::Unit(unit.to_string()), now + self.valid_for);
        format!(
            "{}/ui/record/{}?t={t}",
            self.public_url,
            encode_path(record)
        )
    }

    /// The province page, for the administrator.
    pub fn province_url(&self, now: Instant) -> String {
        let t = self.token(&Scope::Admin, now + self.valid_for);
        format!("{}/ui/province?t={t}", self.public_url)
    }

    /// The page of `record` for the administrator.
    pub fn admin_record_url(&self, record: &str, now: Instant) -> String {
        let t = self.token(&Scope::Admin, now + self.valid_for);
        format!(
            "{}/ui/record/{}?t={t}",
            self.public_url,
            encode_path(record)
        )
    }
}

/// Percent-encodes a path segment (record ids come from events: untrusted).
pub fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= (x ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        Links::new(
            Secret::new("0123456789abcdef0123"),
            "https://x.example/",
            3600 * SECOND,
        )
    }

    #[test]
    fn a_token_opens_its_scope_until_it_expires() {
        let l = links();
        let now = 1_800_000_000 * SECOND;
        let t = l.token(&Scope::Unit("DL.VPDK".into()), now + 60 * SECOND);
        assert_eq!(l.verify(Some(&t), now), Ok(Scope::Unit("DL.VPDK".into())));
        assert_eq!(
            l.verify(Some(&t), now + 60 * SECOND),
            Err(TokenError::Expired)
        );
        let a = l.token(&Scope::Admin, now + 60 * SECOND);
        assert_eq!(l.verify(Some(&a), now), Ok(Scope::Admin));
        assert_eq!(l.verify(None, now), Err(TokenError::Missing));
        assert_eq!(l.verify(Some(""), now), Err(TokenError::Missing));
    }

    #[test]
    fn a_tampered_token_or_another_key_is_refused() {
        let l = links();
        let now = 1_800_000_000 * SECOND;
        let t = l.token(&Scope::Unit("DL.VPDK".into()), now + 60 * SECOND);
        // another unit, a later expiry, a changed MAC: all refused
        let other = l.token(&Scope::Unit("HA.VPDK".into()), now + 60 * SECOND);
        let (scope_other, _) = other.split_once('.').unwrap();
        let (_, rest) = t.split_once('.').unwrap();
        let forged = format!("{scope_other}.{rest}");
        assert_eq!(l.verify(Some(&forged), now), Err(TokenError::Invalid));
        let mut later = t.clone();
        later = later.replacen(
            &(now / SECOND + 60).to_string(),
            &(now / SECOND + 99_999).to_string(),
            1,
        );
        assert_eq!(l.verify(Some(&later), now), Err(TokenError::Invalid));
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(l.verify(Some(&flipped), now), Err(TokenError::Invalid));
        let other_key = Links::new(Secret::new("another secret of 16+"), "http://a", SECOND);
        assert_eq!(other_key.verify(Some(&t), now), Err(TokenError::Invalid));
        assert_eq!(l.verify(Some("admin.1.2.3"), now), Err(TokenError::Invalid));
        assert_eq!(l.verify(Some("garbage"), now), Err(TokenError::Invalid));
    }

    #[test]
    fn links_are_built_on_the_public_url_and_encode_untrusted_ids() {
        let l = links();
        let now = 1_800_000_000 * SECOND;
        let u = l.record_url("DL.VPDK", "H/1 <x>", now);
        assert!(
            u.starts_with("https://x.example/ui/record/H%2F1%20%3Cx%3E?t=u~"),
            "{u}"
        );
        let csrf = l.csrf("tok", "H1");
        assert!(l.check_csrf("tok", "H1", &csrf));
        assert!(!l.check_csrf("tok", "H2", &csrf));
        assert!(!l.check_csrf("tok2", "H1", &csrf));
    }
}
