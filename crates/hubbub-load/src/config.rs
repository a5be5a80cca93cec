//! Everything a run can be told, as flags, and the rooms it loads ([`Group`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Everything a run can be told.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "hubbub-load",
    version,
    about = "Load-test a hubbub (or any htmx WebSocket chat) server."
)]
pub struct LoadConfig {
    /// The chat page (`http://host:port/`, `/rooms/NAME`) or its WebSocket URL (`ws://…`).
    #[arg(long, default_value = "http://127.0.0.1:3000/")]
    pub url: String,
    /// Another node of the same chat (repeatable). Clients are spread over `--url` and
    /// these in turn (client i on node i mod n, senders included), so most deliveries
    /// cross from one node to another.
    #[arg(long = "also-url", value_name = "URL")]
    pub also_urls: Vec<String>,
    /// Connections to open (one room: the URL's, or `--room`).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// How many of the clients send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Several rooms at once (repeatable), instead of `--clients`, `--senders`, `--rate`
    /// and `--room`: ROOMS rooms (default 1) of CLIENTS clients each, SENDERS of whom send
    /// RATE messages per second in total, in each room. Room R of the G-th group (both
    /// counted from 0) is `/rooms/load-G-R` (`--room-prefix`). `--group 9000:5:50 --group 10:1:1:100` is one
    /// room of 9,000 clients and 100 rooms of 10.
    #[arg(
        long = "group",
        value_name = "CLIENTS:SENDERS:RATE[:ROOMS]",
        conflicts_with_all = ["clients", "senders", "rate", "room"]
    )]
    pub groups: Vec<Group>,
    /// With `--group`, rooms are `/rooms/PREFIX-G-R`: two load tools at once (say one per
    /// group, so one group's traffic cannot delay the other's measurement inside one
    /// process) need prefixes of their own. Lowercase letters, digits, `-` and `_`.
    #[arg(long, default_value = "load", value_parser = room_prefix)]
    pub room_prefix: String,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Sending before measuring (not counted).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// After the last message, how long to wait for deliveries still in flight.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Use this room's page (`/rooms/NAME`) instead of the URL's path.
    #[arg(long)]
    pub room: Option<String>,
    /// Only connect and hold the connections for `--duration`; send nothing.
    #[arg(long)]
    pub idle: bool,
    /// Read this process's resident memory before and after connecting.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Fail (exit 1) when more than this fraction of deliveries is lost.
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Do not spread connections over source addresses 127.0.x.y (only used for loopback
    /// targets, where it lifts the ephemeral-port limit).
    #[arg(long)]
    pub no_spread: bool,
}

impl LoadConfig {
    /// The groups to load: `--group`s as given, or else the one room of `--clients`,
    /// `--senders` and `--rate`.
    pub fn effective_groups(&self) -> Vec<Group> {
        if !self.groups.is_empty() {
            return self.groups.clone();
        }
        vec![Group {
            clients: self.clients,
            senders: self.senders,
            rate: self.rate,
            rooms: 1,
        }]
    }

    /// The room whose page room `room` of group `group` connects through: with `--group`,
    /// `load-G-R`; otherwise `--room` (or, without it, the URL's own path: `None`).
    pub fn room_name(&self, group: usize, room: usize) -> Option<String> {
        if self.groups.is_empty() {
            self.room.clone()
        } else {
            Some(format!("{}-{group}-{room}", self.room_prefix))
        }
    }
}

/// Rooms of one size and pace: `rooms` rooms of `clients` clients each, `senders` of whom
/// send `rate` messages per second in total, in each room.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    pub clients: usize,
    pub senders: usize,
    /// Messages per second per room, its senders together.
    pub rate: f64,
    pub rooms: usize,
}

fn room_prefix(raw: &str) -> Result<String, String> {
    let fits = (1..=40).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'));
    if fits {
        Ok(raw.to_owned())
    } else {
        Err("expected 1 to 40 of a-z, 0-9, '-' and '_'".to_owned())
    }
}

/// Why a `--group` value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("{0:?} is not CLIENTS:SENDERS:RATE[:ROOMS] (such as 9000:5:50 or 10:1:1:100)")]
    Shape(String),
    #[error("{part} must be a whole number{}, not {value:?}", if *.at_least_one { " of at least 1" } else { "" })]
    Count {
        part: &'static str,
        value: String,
        at_least_one: bool,
    },
    #[error("RATE must be a number of messages per second, 0 or more, not {0:?}")]
    Rate(String),
    #[error("SENDERS ({senders}) cannot exceed CLIENTS ({clients})")]
    TooManySenders { senders: usize, clients: usize },
}

impl FromStr for Group {
    type Err = GroupError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').map(str::trim).collect();
        let [clients, senders, rate, rooms @ ..] = parts.as_slice() else {
            return Err(GroupError::Shape(text.to_owned()));
        };
        let rooms = match rooms {
            [] => 1,
            [rooms] => count("ROOMS", rooms, true)?,
            _ => return Err(GroupError::Shape(text.to_owned())),
        };
        let group = Group {
            clients: count("CLIENTS", clients, true)?,
            senders: count("SENDERS", senders, false)?,
            rate: rate
                .parse()
                .ok()
                .filter(|rate: &f64| rate.is_finite() && *rate >= 0.0)
                .ok_or_else(|| GroupError::Rate((*rate).to_owned()))?,
            rooms,
        };
        if group.senders > group.clients {
            return Err(GroupError::TooManySenders {
                senders: group.senders,
                clients: group.clients,
            });
        }
        Ok(group)
    }
}

fn count(part: &'static str, value: &str, at_least_one: bool) -> Result<usize, GroupError> {
    value
        .parse()
        .ok()
        .filter(|n| *n > 0 || !at_least_one)
        .ok_or_else(|| GroupError::Count {
            part,
            value: value.to_owned(),
            at_least_one,
        })
}

/// As it is written on the command line, rooms included: `9000:5:50:1`.
impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Group {
            clients,
            senders,
            rate,
            rooms,
        } = self;
        write!(f, "{clients}:{senders}:{rate}:{rooms}")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn groups_parse_with_and_without_rooms() {
        assert_eq!(
            "9000:5:50".parse(),
            Ok(Group {
                clients: 9000,
                senders: 5,
                rate: 50.0,
                rooms: 1
            })
        );
        let small: Group = "10:1:0.5:100".parse().unwrap();
        assert_eq!((small.rooms, small.rate), (100, 0.5));
        assert_eq!(small.to_string(), "10:1:0.5:100");
        let listeners: Group = "10:0:0".parse().unwrap();
        assert_eq!(listeners.senders, 0);
    }

    #[test]
    fn a_bad_group_says_what_is_wrong() {
        let error = |text: &str| text.parse::<Group>().unwrap_err().to_string();
        for shape in ["", "9000", "9000:5", "1:1:1:1:1"] {
            assert!(
                error(shape).contains("is not CLIENTS:SENDERS:RATE[:ROOMS]"),
                "{shape}"
            );
        }
        assert_eq!(
            error("x:1:1"),
            "CLIENTS must be a whole number of at least 1, not \"x\""
        );
        assert!(error("0:0:1").starts_with("CLIENTS must be a whole number of at least 1"));
        assert_eq!(
            error("5:-1:1"),
            "SENDERS must be a whole number, not \"-1\""
        );
        assert!(error("5:1:fast").starts_with("RATE must be a number"));
        assert!(error("5:1:-2").starts_with("RATE must be a number"));
        assert!(error("5:1:inf").starts_with("RATE must be a number"));
        assert!(error("5:1:1:0").starts_with("ROOMS must be a whole number of at least 1"));
        assert_eq!(error("5:6:1"), "SENDERS (6) cannot exceed CLIENTS (5)");
    }

    #[test]
    fn groups_come_from_the_flags_and_replace_the_single_room_ones() {
        let config = LoadConfig::try_parse_from([
            "hubbub-load",
            "--group",
            "9000:5:50",
            "--group",
            "10:1:1:100",
        ])
        .unwrap();
        let groups = config.effective_groups();
        assert_eq!((groups.len(), groups[1].rooms), (2, 100));
        assert_eq!(config.room_name(1, 99).as_deref(), Some("load-1-99"));
        let prefixed = LoadConfig::try_parse_from([
            "hubbub-load",
            "--group",
            "10:1:1:100",
            "--room-prefix",
            "small",
        ])
        .unwrap();
        assert_eq!(prefixed.room_name(0, 7).as_deref(), Some("small-0-7"));
        for bad in ["", "Big", "a b", "../x"] {
            let error = LoadConfig::try_parse_from([
                "hubbub-load",
                "--group",
                "1:1:1",
                "--room-prefix",
                bad,
            ])
            .unwrap_err();
            assert!(error.to_string().contains("--room-prefix"), "{error}");
        }

        let single =
            LoadConfig::try_parse_from(["hubbub-load", "--clients", "7", "--room", "x"]).unwrap();
        assert_eq!(
            single.effective_groups(),
            [Group {
                clients: 7,
                senders: 10,
                rate: 100.0,
                rooms: 1
            }]
        );
        assert_eq!(single.room_name(0, 0).as_deref(), Some("x"));

        let both =
            LoadConfig::try_parse_from(["hubbub-load", "--group", "1:1:1", "--clients", "3"]);
        assert!(
            both.unwrap_err()
                .to_string()
                .contains("cannot be used with")
        );
        let bad = LoadConfig::try_parse_from(["hubbub-load", "--group", "10:1"]);
        let message = bad.unwrap_err().to_string();
        assert!(
            message.contains("--group") && message.contains("is not CLIENTS:SENDERS:RATE"),
            "{message}"
        );
    }
}
