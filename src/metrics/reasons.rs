//! The fixed label sets: every reason a session ends, an upgrade is refused or a message
//! is not sent. Each owner maps its own outcome to one of these (the session its `End`,
//! the commit writer its errors), so this module knows nothing of the modules above it.

/// Why a WebSocket session ended, as the `reason` label of `hubbub_disconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The client sent a close frame (a closed tab, a reload, a navigation).
    ClientClosed,
    /// The connection ended without a close frame, or failed at the transport level.
    ConnectionLost,
    /// No pong (or any frame) within `--pong-timeout`.
    PongTimeout,
    /// The socket took nothing for `--write-timeout`.
    WriteTimeout,
    /// Evicted by the hub: its send queue was full.
    SlowClient,
    /// Kept posting over its rate limit (closed with 1008).
    Flooding,
    /// Broke the WebSocket protocol, sent a binary or an oversized frame.
    ProtocolError,
    /// The room could not be loaded (1013).
    StoreUnavailable,
    /// The server is shutting down (1012).
    Shutdown,
    /// A moderator banned the user (1008).
    Banned,
    /// The browser's session was signed out, here or on another device (1008).
    SignedOut,
}

impl Disconnect {
    pub const ALL: [Disconnect; 11] = [
        Disconnect::ClientClosed,
        Disconnect::ConnectionLost,
        Disconnect::PongTimeout,
        Disconnect::WriteTimeout,
        Disconnect::SlowClient,
        Disconnect::Flooding,
        Disconnect::ProtocolError,
        Disconnect::StoreUnavailable,
        Disconnect::Shutdown,
        Disconnect::Banned,
        Disconnect::SignedOut,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Disconnect::ClientClosed => "client_closed",
            Disconnect::ConnectionLost => "connection_lost",
            Disconnect::PongTimeout => "pong_timeout",
            Disconnect::WriteTimeout => "write_timeout",
            Disconnect::SlowClient => "slow_client",
            Disconnect::Flooding => "flooding",
            Disconnect::ProtocolError => "protocol_error",
            Disconnect::StoreUnavailable => "store_unavailable",
            Disconnect::Shutdown => "shutdown",
            Disconnect::Banned => "banned",
            Disconnect::SignedOut => "signed_out",
        }
    }
}

/// Which connection limit refused a WebSocket upgrade, as the `reason` label of
/// `hubbub_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `--max-connections`.
    Total,
    /// The client's address holds `--max-connections-per-ip`.
    PerAddress,
}

/// Why a posted message was not sent, as the `reason` label of
/// `hubbub_messages_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Over the connection's message rate.
    RateLimited,
    /// Over the message rate shared by the client's address.
    AddressRateLimited,
    /// Longer than `--max-message-chars`.
    TooLong,
    /// Not readable as a message (malformed JSON, control characters).
    Invalid,
    /// The commit queue was full.
    Busy,
    /// The server was shutting down.
    ShuttingDown,
    /// The store failed (unreachable, busy, timed out).
    StoreUnavailable,
    /// The store refused the data itself.
    StoreRefused,
    /// A change to a message the rules do not allow (someone else's, deleted, unknown).
    NotAllowed,
}

impl Rejection {
    pub const ALL: [Rejection; 9] = [
        Rejection::RateLimited,
        Rejection::AddressRateLimited,
        Rejection::TooLong,
        Rejection::Invalid,
        Rejection::Busy,
        Rejection::ShuttingDown,
        Rejection::StoreUnavailable,
        Rejection::StoreRefused,
        Rejection::NotAllowed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::RateLimited => "rate_limited",
            Rejection::AddressRateLimited => "address_rate_limited",
            Rejection::TooLong => "too_long",
            Rejection::Invalid => "invalid",
            Rejection::Busy => "busy",
            Rejection::ShuttingDown => "shutting_down",
            Rejection::StoreUnavailable => "store_unavailable",
            Rejection::StoreRefused => "store_refused",
            Rejection::NotAllowed => "not_allowed",
        }
    }
}
