//! MariaDB GTID positions: parse, print, compare per replication domain.
//!
//! A MariaDB GTID is `domain-server-sequence` (for example `0-223344-17`). A position is the last
//! GTID seen in each replication domain, written comma-separated (`0-1-100,1-2-7`), which is the
//! form `@@gtid_binlog_pos`, `BINLOG_GTID_POS()` and `@slave_connect_state` use.
//!
//! Positions are only partially ordered: `0-1-5,1-1-3` and `0-1-4,1-1-9` are each ahead in one
//! domain. [`GtidPosition::covers`] answers "has everything in `other` been seen?", which is the
//! question a checkpoint must ask before it moves.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One MariaDB global transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtid {
    pub domain_id: u32,
    pub server_id: u32,
    pub sequence: u64,
}

/// A GTID or GTID position that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid MariaDB GTID {input:?}: {reason} (expected domain-server-sequence, e.g. 0-1-42, comma-separated per domain)"
)]
pub struct ParseGtidError {
    input: String,
    reason: &'static str,
}

impl ParseGtidError {
    fn new(input: &str, reason: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            reason,
        }
    }
}

impl FromStr for Gtid {
    type Err = ParseGtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let mut parts = s.split('-');
        let (Some(d), Some(sv), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseGtidError::new(s, "it needs exactly three numbers"));
        };
        let num = |p: &str| -> Result<u64, ParseGtidError> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseGtidError::new(s, "a part is not a decimal number"));
            }
            p.parse()
                .map_err(|_| ParseGtidError::new(s, "a number is out of range"))
        };
        let domain_id = u32::try_from(num(d)?)
            .map_err(|_| ParseGtidError::new(s, "domain id is over 2^32-1"))?;
        let server_id = u32::try_from(num(sv)?)
            .map_err(|_| ParseGtidError::new(s, "server id is over 2^32-1"))?;
        Ok(Gtid {
            domain_id,
            server_id,
            sequence: num(seq)?,
        })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain_id, self.server_id, self.sequence)
    }
}

/// The last GTID seen in each replication domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidPosition {
    domains: BTreeMap<u32, Gtid>,
}

impl GtidPosition {
    /// The empty position: nothing seen (streaming from it starts at the oldest binlog).
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Record `gtid` as the newest transaction of its domain.
    pub fn advance(&mut self, gtid: Gtid) {
        self.domains.insert(gtid.domain_id, gtid);
    }

    /// The GTID recorded for `domain_id`, if any.
    pub fn get(&self, domain_id: u32) -> Option<Gtid> {
        self.domains.get(&domain_id).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Gtid> {
        self.domains.values()
    }

    /// True when every transaction in `other` is also at or behind this position, domain by
    /// domain. A position covers itself and the empty position.
    pub fn covers(&self, other: &GtidPosition) -> bool {
        other.domains.iter().all(|(domain, theirs)| {
            self.domains
                .get(domain)
                .is_some_and(|ours| ours.sequence >= theirs.sequence)
        })
    }
}

impl FromStr for GtidPosition {
    type Err = ParseGtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut pos = GtidPosition::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let gtid: Gtid = part.parse()?;
            if pos.domains.insert(gtid.domain_id, gtid).is_some() {
                return Err(ParseGtidError::new(s, "a domain appears twice"));
            }
        }
        Ok(pos)
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl FromIterator<Gtid> for GtidPosition {
    fn from_iter<I: IntoIterator<Item = Gtid>>(iter: I) -> Self {
        let mut pos = GtidPosition::new();
        for gtid in iter {
            pos.advance(gtid);
        }
        pos
    }
}

impl serde::Serialize for GtidPosition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GtidPosition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &str) -> GtidPosition {
        s.parse().expect("valid position")
    }

    #[test]
    fn parses_and_prints_round_trip() {
        for s in [
            "",
            "0-223344-17",
            "0-1-100,1-2-7",
            "4294967295-4294967295-18446744073709551615",
        ] {
            assert_eq!(pos(s).to_string(), s);
        }
        // Whitespace and order do not matter; output is sorted by domain.
        assert_eq!(pos(" 1-2-7 , 0-1-100 ").to_string(), "0-1-100,1-2-7");
    }

    #[test]
    fn rejects_malformed_input() {
        for s in [
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0--2",
            "-1-2-3",
            "0-1-2,0-3-4",
            "4294967296-1-1",
            "0-1-+2",
        ] {
            let err = s.parse::<GtidPosition>().expect_err(s);
            assert!(err.to_string().contains("invalid MariaDB GTID"), "{err}");
        }
    }

    #[test]
    fn covers_compares_per_domain() {
        assert!(pos("0-1-5").covers(&pos("0-1-5")));
        assert!(pos("0-1-6").covers(&pos("0-1-5")));
        assert!(!pos("0-1-4").covers(&pos("0-1-5")));
        assert!(pos("0-1-5").covers(&GtidPosition::new()));
        assert!(!GtidPosition::new().covers(&pos("0-1-5")));
        // Sequence numbers are per domain and survive a server id change (failover).
        assert!(pos("0-2-9").covers(&pos("0-1-5")));
        // Partially ordered: neither covers the other.
        let a = pos("0-1-5,1-1-3");
        let b = pos("0-1-4,1-1-9");
        assert!(!a.covers(&b) && !b.covers(&a));
        // A new domain does not undo an old one.
        assert!(pos("0-1-5,1-1-1").covers(&pos("0-1-5")));
        assert!(!pos("1-1-1").covers(&pos("0-1-5")));
    }

    #[test]
    fn advance_replaces_the_domain_entry() {
        let mut p = pos("0-1-5,1-1-3");
        p.advance("1-2-4".parse().expect("gtid"));
        assert_eq!(p.to_string(), "0-1-5,1-2-4");
        assert_eq!(p.get(1).map(|g| g.sequence), Some(4));
    }

    #[test]
    fn serde_uses_the_text_form() {
        let p = pos("0-1-5,1-1-3");
        let json = serde_json::to_string(&p).expect("serialize");
        assert_eq!(json, "\"0-1-5,1-1-3\"");
        let back: GtidPosition = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, p);
    }
}
