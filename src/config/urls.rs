//! The addresses an operator writes: the database and Redis URLs (which may hold
//! passwords, so `Debug` and `Display` hide them) and the origins allowed to open
//! WebSockets.
//!
//! They live here, below the modules that use them (`store`, `broker`, `http`), so that
//! the configuration can parse and check them without knowing those modules. A Redis URL
//! is checked with the redis crate's own parser (no connection is made), so one that
//! passes here is one the broker can connect with.

use std::fmt;

use redis::IntoConnectionInfo;

/// A database URL. It may hold a password, so `Debug` and `Display` hide it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether this is a PostgreSQL URL (a database several nodes can share).
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `scheme://user:secret@host` → `scheme://user:***@host`, and `password=` in the
        // query string is hidden too.
        let (url, query) = match self.0.split_once('?') {
            Some((url, query)) => (url, Some(query)),
            None => (self.0.as_str(), None),
        };
        match url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((user_info, host)) => {
                    let user = user_info
                        .split_once(':')
                        .map_or(user_info, |(user, _)| user);
                    let hidden = if user_info.contains(':') { ":***" } else { "" };
                    write!(f, "{scheme}://{user}{hidden}@{host}")?;
                }
                None => f.write_str(url)?,
            },
            None => f.write_str(url)?,
        }
        if let Some(query) = query {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            write!(f, "?{}", pairs.join("&"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A Redis URL; `Debug` and `Display` hide its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]";
        if !s.starts_with("redis://") {
            return Err(usage.to_owned());
        }
        // The crate's error can repeat the URL: say what is wrong without it.
        s.into_connection_info()
            .map_err(|_| format!("not a valid Redis URL; {usage}"))?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `redis://user:secret@host` → `redis://user:***@host`.
        let rest = self.0.strip_prefix("redis://").unwrap_or(&self.0);
        match rest.rsplit_once('@') {
            Some((user_info, host)) => {
                let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
                let hidden = if user_info.contains(':') { ":***" } else { "" };
                write!(f, "redis://{user}{hidden}@{host}")
            }
            None => write!(f, "redis://{rest}"),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Lower-cases an origin and drops a default port: `HTTP://Example.com:80` becomes
/// `http://example.com`. `None` if it is not `scheme://host[:port]`.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let authority = authority
        .strip_suffix('/')
        .unwrap_or(authority)
        .to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    // Split off the port, minding IPv6 literals such as `[::1]:3000`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let port = if after.is_empty() {
                None
            } else {
                Some(after.strip_prefix(':')?)
            };
            (format!("[{inside}]"), port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.clone(), None),
        },
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let authority = match port {
        None => host,
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(port) if port == default_port => host,
        Some(port) => format!("{host}:{port}"),
    };
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_hide_their_passwords() {
        let url = DatabaseUrl::new("postgres://hub:s3cret@db.example:5432/chat");
        assert_eq!(url.to_string(), "postgres://hub:***@db.example:5432/chat");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            DatabaseUrl::new("postgres://hub@db/chat").to_string(),
            "postgres://hub@db/chat"
        );
        assert_eq!(
            DatabaseUrl::new("sqlite://hubbub.db").to_string(),
            "sqlite://hubbub.db"
        );
    }

    #[test]
    fn redis_urls_are_checked_and_passwords_hidden() {
        let url: RedisUrl = "redis://user:pw@host:6380/1".parse().unwrap();
        assert_eq!(url.to_string(), "redis://user:***@host:6380/1");
        assert!(!format!("{url:?}").contains("pw"));
        let url: RedisUrl = "redis://127.0.0.1".parse().unwrap();
        assert_eq!(url.to_string(), "redis://127.0.0.1");
        for bad in ["", "127.0.0.1:6379", "http://host", "redis://host:port"] {
            assert!(bad.parse::<RedisUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn normalizes_case_and_default_ports() {
        assert_eq!(
            normalize_origin("HTTP://Example.COM:80").as_deref(),
            Some("http://example.com")
        );
        assert_eq!(
            normalize_origin("https://a.example:443/").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:3000").as_deref(),
            Some("http://127.0.0.1:3000")
        );
        assert_eq!(
            normalize_origin("http://[::1]:3000").as_deref(),
            Some("http://[::1]:3000")
        );
        for junk in [
            "",
            "null",
            "example.com",
            "ftp://x",
            "http://",
            "http://a/b",
            "http://a:x",
            "http://u@a",
        ] {
            assert_eq!(normalize_origin(junk), None, "{junk:?}");
        }
    }
}
