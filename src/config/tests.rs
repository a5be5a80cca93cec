//! Parsing and validating the whole configuration, as an operator writes it.

use super::*;

#[test]
fn defaults_match_the_documentation() {
    let config = Config::defaults();
    assert_eq!(config.addr, "127.0.0.1:3000".parse().unwrap());
    assert_eq!(config.database.expose(), "sqlite://hubbub.db");
    assert_eq!(config.commit_window, Duration::from_millis(5));
    assert_eq!(config.max_message_chars, 2000);
    assert_eq!(config.max_frame_bytes, 16 * 1024);
    assert_eq!(config.history_limit, 50);
    assert_eq!(config.ping_interval, Duration::from_secs(30));
    assert_eq!(config.pong_timeout, Duration::from_secs(60));
    assert_eq!(config.shutdown_grace, Duration::from_secs(5));
    assert!(config.allowed_origins.is_empty());
    assert_eq!((config.message_rate, config.message_burst), (5, 10));
    assert_eq!((config.ip_message_rate, config.ip_message_burst), (10, 20));
    assert_eq!(config.renames_per_minute, 10);
    assert_eq!(
        (config.max_connections, config.max_connections_per_ip),
        (15_000, 50)
    );
    assert!(!config.secure_cookies && !config.trust_proxy);
    assert_eq!(config.header_timeout, Duration::from_secs(10));
    assert_eq!(config.log_format, LogFormat::Text);
    assert!(config.redis.is_none());
    assert_eq!(config.redis_channel, "hubbub");
    config.validate().unwrap();
}

#[test]
fn allowed_origin_repeats() {
    let config = Config::try_parse_from([
        "hubbub",
        "--allowed-origin",
        "http://a.example",
        "--allowed-origin",
        "https://b.example:8443",
    ])
    .unwrap();
    assert_eq!(
        config.allowed_origins,
        ["http://a.example", "https://b.example:8443"]
    );
    config.validate().unwrap();
}

#[test]
fn secrets_are_checked_and_never_printed() {
    let config = Config::try_parse_from(["hubbub", "--cookie-secret", &"s".repeat(40)]).unwrap();
    assert!(!format!("{config:?}").contains("ssss"));
    let short = Config::try_parse_from(["hubbub", "--cookie-secret", "short"]).unwrap_err();
    assert!(
        short.to_string().contains("at least 32 characters"),
        "{short}"
    );
}

#[test]
fn nonsense_is_refused_with_a_clear_error() {
    let bad = Config::try_parse_from(["hubbub", "--ping-interval", "soon"]).unwrap_err();
    assert!(bad.to_string().contains("--ping-interval"), "{bad}");

    let bad = Config::try_parse_from(["hubbub", "--addr", "localhost"]).unwrap_err();
    assert!(bad.to_string().contains("--addr"), "{bad}");

    let bad = Config::try_parse_from(["hubbub", "--max-message-chars", "0"]).unwrap_err();
    assert!(bad.to_string().contains("--max-message-chars"), "{bad}");

    let bad = Config::try_parse_from(["hubbub", "--log-format", "xml"]).unwrap_err();
    assert!(bad.to_string().contains("--log-format"), "{bad}");
    assert!(
        bad.to_string().contains("[possible values: text, json]"),
        "{bad}"
    );

    let config =
        Config::try_parse_from(["hubbub", "--ping-interval", "60s", "--pong-timeout", "30s"])
            .unwrap();
    assert!(matches!(
        config.validate(),
        Err(ConfigError::PongTimeoutTooShort { .. })
    ));

    let config = Config::try_parse_from(["hubbub", "--header-timeout", "0s"]).unwrap();
    assert_eq!(config.validate(), Err(ConfigError::ZeroHeaderTimeout));
    for (expiry, valid) in [("999ms", false), ("1s", true), ("1h", true), ("61m", false)] {
        let config = Config::try_parse_from(["hubbub", "--presence-expiry", expiry]).unwrap();
        let result = config.validate();
        assert_eq!(result.is_ok(), valid, "{expiry}: {result:?}");
        if let Err(err) = result {
            assert!(err.to_string().contains("--presence-expiry"), "{err}");
        }
    }
    let bad = Config::try_parse_from(["hubbub", "--presence-expiry", "soon"]).unwrap_err();
    assert!(bad.to_string().contains("--presence-expiry"), "{bad}");
    let bad = Config::try_parse_from(["hubbub", "--ip-message-rate", "0"]).unwrap_err();
    assert!(bad.to_string().contains("--ip-message-rate"), "{bad}");

    let config = Config::try_parse_from(["hubbub", "--allowed-origin", "not an origin"]).unwrap();
    assert_eq!(
        config.validate(),
        Err(ConfigError::BadOrigin("not an origin".to_owned()))
    );
}

#[test]
fn redis_urls_are_checked_hidden_and_need_postgres() {
    let config = Config::try_parse_from([
        "hubbub",
        "--database",
        "postgres://u:dbpw@db/chat",
        "--redis",
        "redis://:s3cret@cache:6380/2",
        "--redis-channel",
        "team-a:chat",
    ])
    .unwrap();
    config.validate().unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("redis://:***@cache:6380/2"), "{shown}");

    let bad = Config::try_parse_from(["hubbub", "--redis", "http://cache"]).unwrap_err();
    assert!(bad.to_string().contains("--redis"), "{bad}");
    let bad = Config::try_parse_from(["hubbub", "--redis-channel", "a b"]).unwrap_err();
    assert!(bad.to_string().contains("--redis-channel"), "{bad}");

    let sqlite = Config::try_parse_from(["hubbub", "--redis", "redis://cache"]).unwrap();
    assert_eq!(sqlite.validate(), Err(ConfigError::RedisNeedsPostgres));
}
