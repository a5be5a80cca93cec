//! The words of the chat, parsed at the edge.
//!
//! Raw strings from the network become these types once, in the session or the HTTP
//! handler; the hub and the renderer only ever see values that are already valid
//! ("parse, don't validate").
//!
//! - [`inbound`]: what the htmx WebSocket extension sends, and why a frame was refused.
//! - [`names`]: room names and display names (guest names included).
//! - [`ids`]: who someone is across visits, and the hex ids are written in.
//! - [`reaction`]: the emoji a reader may put on a message, and who did.
//! - [`message`]: a message's text, the message before and after the store numbers it, the
//!   changes its author may make, and the committed batch.
//! - [`search`]: the words a reader searches for, and what a search finds.
//! - [`account`]: claimed names, passwords and session tokens.
//! - [`mentions`]: who an `@name` in a message names.

mod account;
mod ids;
mod inbound;
pub mod mentions;
mod message;
mod names;
mod reaction;
mod search;

pub use self::account::{
    Account, Ban, NameKey, Password, PasswordError, SessionTag, SessionToken, SignOut,
    StoredAccount, TokenDigest,
};
pub use self::ids::{UserId, hex, is_lower_hex};
pub use self::inbound::{Inbound, InboundError};
pub use self::mentions::Notify;
pub use self::message::{
    Change, ChangeKind, ChangeRefused, ChatMessage, ClientId, Committed, MessageText, NewMessage,
    Quote, Write,
};
pub(crate) use self::message::{StoredRow, unix_micros};
pub use self::names::{DisplayName, DisplayNameError, GuestName, RoomName, RoomNameError};
pub use self::reaction::{Emoji, Reaction, Reactor};
pub use self::search::{Found, SearchError, SearchTerms};
