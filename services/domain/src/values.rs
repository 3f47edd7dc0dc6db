//! Domain values that validate on construction, so invalid data cannot reach the stores.

use crate::contracts::auth::AuthError;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The time now at millisecond precision: what the stores keep and every timestamp a client sees
/// (`seenAt` equals what a later read returns).
pub fn now_millis() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now().timestamp_millis();
    chrono::DateTime::from_timestamp_millis(now).unwrap_or_default()
}

/// A normalised email address: trimmed and lower-cased, so `John@Example.com` and
/// `john@example.com` are the same account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let email = raw.trim().to_lowercase();
        let invalid = || Error::from(AuthError::InvalidEmail);
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longest first or last name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A first or last name: at most 100 characters, not blank, no control characters; stored
/// trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, Error> {
        let name = raw.trim();
        if name.is_empty()
            || raw.chars().count() > MAX_NAME_CHARS
            || raw.chars().any(char::is_control)
        {
            return Err(AuthError::InvalidName {
                field: field.to_string(),
            }
            .into());
        }
        Ok(PersonName(name.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Password length bounds. The upper bound keeps hashing cost bounded.
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;

/// Checks a new password against the policy: 8 to 128 characters, not only whitespace.
pub fn check_new_password(password: &str) -> Result<(), Error> {
    let len = password.chars().count();
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&len) || password.trim().is_empty() {
        return Err(AuthError::InvalidPassword {
            min: PASSWORD_MIN_CHARS,
            max: PASSWORD_MAX_CHARS,
        }
        .into());
    }
    Ok(())
}

/// The last page number a listing accepts.
pub const MAX_PAGE_NUMBER: u32 = 1_000_000;

/// Page size bounds for listings.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
pub const MAX_PAGE_SIZE: u32 = 100;

/// A validated page request: `page` from 1, `limit` from 1 and capped at [`MAX_PAGE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub limit: u32,
}

impl PageRequest {
    pub fn parse(page: Option<u32>, limit: Option<u32>) -> Result<Self, Error> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 || page > MAX_PAGE_NUMBER {
            return Err(Error::validation(format!(
                "page must be 1 to {MAX_PAGE_NUMBER}"
            )));
        }
        if limit == 0 {
            return Err(Error::validation("limit must be 1 or more"));
        }
        Ok(PageRequest {
            page,
            limit: limit.min(MAX_PAGE_SIZE),
        })
    }

    pub fn skip(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.limit)
    }
}

/// Most words of a user search that count; the rest are ignored.
pub const MAX_SEARCH_WORDS: usize = 8;

/// The words of a user search (`GET /users?search=`): every one must match the name or email.
pub fn search_words(search: Option<&str>) -> impl Iterator<Item = &str> {
    search
        .unwrap_or("")
        .split_whitespace()
        .take(MAX_SEARCH_WORDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("  John.Doe@Example.COM ").unwrap().as_str(),
            "john.doe@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@c.d",
            "a@.com",
            "a@b..c",
            "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            PersonName::parse("firstName", "  Ada ")
                .unwrap()
                .into_inner(),
            "Ada"
        );
        assert!(PersonName::parse("firstName", "   ").is_err());
        assert!(PersonName::parse("firstName", &"x".repeat(101)).is_err());
    }

    #[test]
    fn password_policy_bounds_length() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("        ").is_err());
        assert!(check_new_password(&"x".repeat(129)).is_err());
        assert!(check_new_password("correct horse").is_ok());
    }

    #[test]
    fn page_size_is_capped_at_100() {
        assert_eq!(
            PageRequest::parse(Some(2), Some(500)).unwrap(),
            PageRequest {
                page: 2,
                limit: 100
            }
        );
        assert_eq!(PageRequest::parse(None, None).unwrap().skip(), 0);
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(None, Some(0)).is_err());
    }
}
