//! [`Key`]: a map key for ids and other short strings that keeps them inline.
//!
//! Caches keyed by ids (memberships, announced and last sequence numbers) hold thousands of
//! entries for the life of the process. With `String` keys each entry's id is a separate 32-byte
//! allocation, made while requests are being served and scattered among their short-lived
//! allocations: after a load those few live bytes keep whole heap pages resident that would
//! otherwise be given back (measured: 614 of the 714 ids left on the heap after a load run were
//! the message role's membership cache, each the only live allocation on 180 of its pages). A
//! [`Key`] of up to [`Key::INLINE`] bytes, which covers every id this project makes (24 hex
//! digits) and the room names built from them, lives inside the map's own table.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// A short string kept inline, a longer one on the heap; hashes, compares and borrows as
/// `str`, so a `HashMap<Key, _>` is looked up with a `&str`.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Inline(u8, [u8; Key::INLINE]),
    Heap(Box<str>),
}

impl Key {
    /// Strings up to this many bytes are kept inline (a `Key` is 32 bytes either way).
    pub const INLINE: usize = 30;

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only ever built from a whole `&str` (see `From<&str>`), so the bytes are UTF-8.
            Repr::Inline(len, bytes) => std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("an inline key holds the bytes of a str"),
            Repr::Heap(s) => s,
        }
    }

    /// Whether the string is kept inline (no allocation of its own).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline(..))
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        if s.len() <= Key::INLINE {
            let mut bytes = [0; Key::INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Key(Repr::Inline(s.len() as u8, bytes))
        } else {
            Key(Repr::Heap(s.into()))
        }
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        if s.len() <= Key::INLINE {
            Key::from(s.as_str())
        } else {
            Key(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, which `Borrow<str>` requires.
        self.as_str().hash(state)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ids_are_kept_inline_and_longer_strings_on_the_heap() {
        let id = "6b12a3ce09c6172939b5fb2b";
        let room = format!("g:{id}");
        let long = "x".repeat(Key::INLINE + 1);
        let accented = "é".repeat(Key::INLINE / 2);
        for (s, inline) in [
            (id, true),
            (room.as_str(), true),
            (accented.as_str(), true),
            ("", true),
            (&long, false),
        ] {
            let key = Key::from(s);
            assert_eq!(key.as_str(), s);
            assert_eq!(key.is_inline(), inline, "{s}");
            assert_eq!(Key::from(s.to_string()), key);
        }
        assert_eq!(std::mem::size_of::<Key>(), 32);
    }

    #[test]
    fn a_map_of_keys_is_looked_up_with_a_str() {
        let mut map = HashMap::new();
        map.insert(Key::from("6b12a3ce09c6172939b5fb2b"), 1);
        map.insert(Key::from("é".repeat(20)), 2);
        assert_eq!(map.get("6b12a3ce09c6172939b5fb2b"), Some(&1));
        assert_eq!(map.get("é".repeat(20).as_str()), Some(&2));
        assert_eq!(map.get("6b12a3ce09c6172939b5fb2c"), None);
        assert_eq!(map.remove("6b12a3ce09c6172939b5fb2b"), Some(1));
    }
}
