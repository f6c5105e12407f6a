//! Container id rules: 1..1024 characters of `[A-Za-z0-9_.-]`, not starting with `.`.

use crate::error::Error;

/// Longest id we accept.
pub const MAX_ID_LEN: usize = 1024;

/// Checks that `id` is a valid container id.
pub fn validate_id(id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_ID_LEN {
        Some("it is longer than 1024 characters")
    } else if id.starts_with('.') {
        Some("it starts with '.'")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("only A-Z a-z 0-9 _ . - are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidId {
            id: id.chars().take(64).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for id in [
            "web",
            "a",
            "web-1.2_x",
            "A9",
            &"x".repeat(1024),
            "..a".trim_start_matches('.'),
        ] {
            assert!(validate_id(id).is_ok(), "{id} should be valid");
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        for id in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "ü",
            "a\0",
            &"x".repeat(1025),
            "a:b",
        ] {
            let err = validate_id(id).unwrap_err();
            assert!(err.to_string().starts_with("invalid container id"), "{err}");
        }
    }
}
