//! Every way a session can end, the close code each one sends (in one place), and the
//! label it is counted under.

use hubbub_wire::{Frame, ProtocolError};

use crate::metrics::Disconnect;

/// Close codes from RFC 6455 §7.4.1 that hubbub sends.
pub mod close_code {
    /// The server is restarting; htmx reconnects on it.
    pub const SERVICE_RESTART: u16 = 1012;
    /// The client broke a rule (here: it fell too far behind).
    pub const POLICY: u16 = 1008;
    /// The client sent a binary frame; hubbub speaks text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// The client sent a frame larger than `--max-frame-bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// The client stopped answering pings; it will never see this, but a proxy might.
    pub const GOING_AWAY: u16 = 1001;
    /// The server cannot serve the room right now; htmx reconnects on it.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The client broke the WebSocket protocol (unmasked frame, bad opcode, …).
    pub const PROTOCOL: u16 = 1002;
    /// The client sent text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The server is shutting down.
    Shutdown,
    /// The hub evicted the session because its outbox was full.
    Evicted,
    /// A moderator banned the user.
    Banned,
    /// The browser's session was signed out (here or on another device, or by a
    /// password change elsewhere).
    SignedOut,
    /// The peer sent a close frame (with this code, if any).
    PeerClosed(Option<u16>),
    /// The connection ended without a close frame.
    Disconnected,
    /// The peer sent a binary frame.
    Binary,
    /// The peer kept sending over its rate limit.
    Flooding,
    /// The peer broke the protocol, or sent a message over the size limit.
    Protocol(ProtocolError),
    /// No pong (or any frame) within the pong timeout.
    Unresponsive,
    /// The socket took nothing for the whole write timeout.
    WriteTimeout,
    /// Reading or writing failed at the transport level.
    Transport(String),
    /// The room could not be loaded (the store is unavailable).
    Unavailable,
}

impl End {
    /// The close frame to send, if the connection can still carry one.
    pub(super) fn close_frame(&self) -> Option<Frame> {
        let (code, reason) = match self {
            End::Shutdown => (
                close_code::SERVICE_RESTART,
                "server restarting; reconnect shortly",
            ),
            End::Evicted => (close_code::POLICY, "too slow: fell too far behind the room"),
            End::Banned => (close_code::POLICY, "banned by a moderator"),
            End::SignedOut => (close_code::POLICY, "signed out"),
            End::Flooding => (close_code::POLICY, "too many messages: slow down"),
            End::Binary => (
                close_code::UNSUPPORTED_DATA,
                "binary frames are not supported",
            ),
            End::Protocol(ProtocolError::TooBig(_)) => {
                (close_code::TOO_BIG, "frame larger than the server's limit")
            }
            End::Protocol(err) => (err.close_code(), "protocol error"),
            End::Unresponsive => (close_code::GOING_AWAY, "no pong received"),
            End::Unavailable => (
                close_code::TRY_AGAIN_LATER,
                "the message store is unavailable",
            ),
            // Answer the peer's close with its own code (RFC 6455 §5.5.1).
            End::PeerClosed(Some(code)) => (*code, ""),
            End::PeerClosed(None) => return Some(Frame::close_empty()),
            End::Disconnected | End::WriteTimeout | End::Transport(_) => return None,
        };
        Some(Frame::close(code, reason))
    }

    /// Why it ended, as the `reason` label of `hubbub_disconnects_total` (the `match` is
    /// exhaustive on purpose: a new `End` does not compile until it has a label).
    pub fn disconnect(&self) -> Disconnect {
        match self {
            End::PeerClosed(_) => Disconnect::ClientClosed,
            End::Disconnected | End::Transport(_) => Disconnect::ConnectionLost,
            End::Unresponsive => Disconnect::PongTimeout,
            End::WriteTimeout => Disconnect::WriteTimeout,
            End::Evicted => Disconnect::SlowClient,
            End::Banned => Disconnect::Banned,
            End::SignedOut => Disconnect::SignedOut,
            End::Flooding => Disconnect::Flooding,
            End::Binary | End::Protocol(_) => Disconnect::ProtocolError,
            End::Unavailable => Disconnect::StoreUnavailable,
            End::Shutdown => Disconnect::Shutdown,
        }
    }

    /// Whether we started the closing handshake (and so wait for the peer's answer).
    pub(super) fn we_close(&self) -> bool {
        !matches!(
            self,
            End::PeerClosed(_) | End::Disconnected | End::WriteTimeout | End::Transport(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_that_can_carry_a_close_frame_has_the_documented_code() {
        let code = |end: End| {
            end.close_frame()
                .map(|frame| u16::from_be_bytes([frame.payload()[0], frame.payload()[1]]))
        };
        assert_eq!(code(End::Shutdown), Some(1012));
        assert_eq!(code(End::Evicted), Some(1008));
        assert_eq!(code(End::Banned), Some(1008));
        assert_eq!(code(End::SignedOut), Some(1008));
        assert_eq!(code(End::Binary), Some(1003));
        assert_eq!(code(End::Flooding), Some(1008));
        assert_eq!(
            code(End::Protocol(ProtocolError::TooBig(1 << 20))),
            Some(1009)
        );
        assert_eq!(code(End::Protocol(ProtocolError::InvalidUtf8)), Some(1007));
        assert_eq!(code(End::Protocol(ProtocolError::Unmasked)), Some(1002));
        assert_eq!(code(End::Unresponsive), Some(1001));
        assert_eq!(code(End::Unavailable), Some(1013));
        assert_eq!(code(End::PeerClosed(Some(1000))), Some(1000));
        assert_eq!(End::PeerClosed(None).close_frame().unwrap().payload(), b"");
        assert_eq!(End::Disconnected.close_frame(), None);
    }

    #[test]
    fn every_session_end_has_a_disconnect_reason_from_the_fixed_set() {
        let ends = [
            End::Shutdown,
            End::Evicted,
            End::Banned,
            End::SignedOut,
            End::PeerClosed(Some(1000)),
            End::PeerClosed(None),
            End::Disconnected,
            End::Binary,
            End::Flooding,
            End::Protocol(ProtocolError::TooBig(1 << 20)),
            End::Protocol(ProtocolError::Unmasked),
            End::Unresponsive,
            End::WriteTimeout,
            End::Transport("reset".to_owned()),
            End::Unavailable,
        ];
        let mut seen = Vec::new();
        for end in &ends {
            let reason = end.disconnect();
            assert!(Disconnect::ALL.contains(&reason), "{end:?}");
            assert_eq!(
                Disconnect::ALL[reason as usize],
                reason,
                "index of {reason:?}"
            );
            seen.push(reason);
        }
        // Every label is reachable, and the labels are distinct.
        for reason in Disconnect::ALL {
            assert!(seen.contains(&reason), "{reason:?} is never used");
        }
        let mut labels: Vec<&str> = Disconnect::ALL.iter().map(|d| d.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Disconnect::ALL.len());
        assert_eq!(End::Evicted.disconnect().label(), "slow_client");
        assert_eq!(End::Banned.disconnect().label(), "banned");
        assert_eq!(End::SignedOut.disconnect().label(), "signed_out");
        assert_eq!(End::PeerClosed(None).disconnect().label(), "client_closed");
    }
}
