//! HTTP Basic auth against an lwsws credentials file (spec 3), parsed when the table was
//! compiled (`table::Credentials`: an edit applies at the next reload). Plain `user:password`
//! lines as in lwsws, plus bcrypt (`$2y$`, `$2b$`, `$2a$`) and `{SHA}` htpasswd lines (D17).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::table::Credentials;

#[derive(Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The user name, which replaces the Authorization value for later phases.
    Allowed(String),
    /// No or wrong credentials: 401 with a challenge.
    Denied,
    /// A header that is not Basic, not base64, or has no colon: 403.
    Malformed,
}

const MAX_HEADER: usize = 1024;

pub fn check(credentials: &Credentials, header: Option<&[u8]>) -> AuthOutcome {
    let Some(header) = header else {
        return AuthOutcome::Denied;
    };
    if header.len() > MAX_HEADER {
        return AuthOutcome::Malformed;
    }
    let Some(b64) = header.strip_prefix(b"Basic ").or_else(|| header.strip_prefix(b"basic ")) else {
        return AuthOutcome::Malformed;
    };
    let Ok(decoded) = STANDARD.decode(b64.trim_ascii()) else {
        return AuthOutcome::Malformed;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return AuthOutcome::Malformed;
    };
    let Some((user, pass)) = decoded.split_once(':') else {
        return AuthOutcome::Malformed;
    };
    if credentials.stored_for(user).any(|stored| password_matches(stored, pass)) {
        return AuthOutcome::Allowed(user.to_string());
    }
    AuthOutcome::Denied
}

fn password_matches(stored: &str, given: &str) -> bool {
    if stored.starts_with("$2y$") || stored.starts_with("$2b$") || stored.starts_with("$2a$") {
        return bcrypt::verify(given, stored).unwrap_or(false);
    }
    if let Some(sha) = stored.strip_prefix("{SHA}") {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, given.as_bytes());
        return constant_time_eq(STANDARD.encode(digest.as_ref()).as_bytes(), sha.as_bytes());
    }
    constant_time_eq(stored.as_bytes(), given.as_bytes())
}

/// Compares without an early exit, so response timing says nothing about how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(s: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(s)).into_bytes()
    }

    #[test]
    fn plain_bcrypt_sha_and_malformed() {
        let bc = bcrypt::hash("bpass", 4).unwrap();
        // {SHA} of "spass"
        let sha =
            STANDARD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, b"spass").as_ref());
        let text = format!("plain:ppass\r\nbc:{bc}\nsh:{{SHA}}{sha}\n");
        let f = Credentials::parse(std::path::Path::new("logins"), &text);
        assert_eq!(check(&f, Some(&hdr("plain:ppass"))), AuthOutcome::Allowed("plain".into()));
        assert_eq!(check(&f, Some(&hdr("plain:wrong"))), AuthOutcome::Denied);
        assert_eq!(check(&f, Some(&hdr("bc:bpass"))), AuthOutcome::Allowed("bc".into()));
        assert_eq!(check(&f, Some(&hdr("sh:spass"))), AuthOutcome::Allowed("sh".into()));
        assert_eq!(check(&f, Some(&hdr("sh:nope"))), AuthOutcome::Denied);
        assert_eq!(check(&f, None), AuthOutcome::Denied);
        assert_eq!(check(&f, Some(b"Bearer x")), AuthOutcome::Malformed);
        assert_eq!(check(&f, Some(b"Basic !!!")), AuthOutcome::Malformed);
        assert_eq!(check(&f, Some(&hdr("nocolon"))), AuthOutcome::Malformed);
        let empty = Credentials::parse(std::path::Path::new("empty"), "");
        assert_eq!(check(&empty, Some(&hdr("plain:ppass"))), AuthOutcome::Denied);
    }
}
