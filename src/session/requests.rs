//! What a session does with each frame its peer sends: parse it into a request, check
//! it against the limits, submit writes for commit and tell the sender what went wrong.

use futures_util::FutureExt;
use hubbub_wire::{Frame, Incoming};
use tokio::time::Instant;

use super::limits::Verdict;
use super::{Attempt, End, MAX_IN_FLIGHT, Session, Settings};
use crate::commit::CommitError;
use crate::domain::mentions::mention_key;
use crate::domain::{
    Change, ChangeKind, ClientId, DisplayName, Emoji, Inbound, InboundError, MessageText,
    NewMessage, Write,
};
use crate::metrics::Rejection;
use crate::render::{self, Html};

/// What one text frame asks for.
enum Request {
    Nothing,
    Post(MessageText, Option<ClientId>, Option<u64>),
    Change(u64, ChangeKind),
    /// The reader has seen the room up to this message.
    Read(u64),
    /// Reacting needs the name the user has now, which the session looks up.
    React(u64, Emoji),
    Typing,
}

impl Session {
    /// Decodes and handles the whole messages read so far, stopping while `MAX_IN_FLIGHT`
    /// messages wait for their commit (the rest stay buffered). Only a whole message (a
    /// pong included) counts as hearing from the peer, so trickling bytes of a frame that
    /// never ends does not keep a connection alive.
    pub(super) fn handle_input(&mut self) -> Result<(), End> {
        while self.in_flight.len() < MAX_IN_FLIGHT {
            let next = self.conn.next_message().map_err(End::Protocol)?;
            let Some(message) = next else {
                return Ok(());
            };
            self.conn.outlet.heard();
            let text = match message {
                Incoming::Text(text) => text,
                Incoming::Binary => return Err(End::Binary),
                Incoming::Close(code) => return Err(End::PeerClosed(code)),
                Incoming::Ping(payload) => {
                    self.conn.send(&Frame::pong(&payload))?;
                    continue;
                }
                Incoming::Pong => continue,
            };
            match parse(&text, &self.settings) {
                Ok(Request::Typing) => self.typing()?,
                Ok(Request::Read(id)) => self.read(id)?,
                Ok(Request::Nothing) => self.hub.metrics().received(),
                Ok(Request::Post(text, client_id, reply_to)) => {
                    self.hub.metrics().received();
                    self.post(text, client_id, reply_to)?;
                }
                Ok(Request::Change(id, what)) => {
                    self.hub.metrics().received();
                    self.change(id, what)?;
                }
                Ok(Request::React(id, emoji)) => {
                    self.hub.metrics().received();
                    let name = self.current_name();
                    self.change(id, ChangeKind::React(emoji, name))?;
                }
                Err(err) => {
                    self.hub.metrics().received();
                    self.hub.metrics().rejected(inbound_rejection(&err));
                    tracing::debug!(error = %err, "refused an inbound frame");
                    self.notice(&render::notice(&format!("Not sent: {err}")))?;
                }
            }
        }
        Ok(())
    }

    /// A typing event: announced unless over the typing rate (then simply not announced).
    fn typing(&mut self) -> Result<(), End> {
        if self.read_only || self.hub.is_banned(&self.user) {
            return Ok(());
        }
        if self.limits.allow(true, &self.settings)? == Verdict::Allowed {
            self.hub.typing(&self.room, self.id, Instant::now());
        } else {
            self.hub.metrics().typing_dropped();
        }
        Ok(())
    }

    /// The reader has seen this room up to message `id`: the mark is stored with the
    /// commit writer's next flush, and the user's other pages hear of it at once. Marks
    /// share typing's allowance (a page sends one a second at most); over it they are
    /// ignored. A mark past the newest message delivered here is taken as that one.
    fn read(&mut self, id: u64) -> Result<(), End> {
        if self.limits.allow(true, &self.settings)? != Verdict::Allowed {
            return Ok(());
        }
        let mark = id.min(self.hub.delivered_upto());
        if mark == 0 || self.anonymous {
            return Ok(());
        }
        if !self.committer.mark_read(&self.user, &self.room, mark) {
            tracing::debug!("too many read marks waiting; this one is dropped");
        }
        let key = mention_key(self.current_name().as_str());
        self.hub.read((&self.user, &key), &self.room, self.id, mark);
        Ok(())
    }

    /// A post: submitted for commit if the limits allow, "not sent" with the text put back
    /// otherwise.
    fn post(
        &mut self,
        text: MessageText,
        client_id: Option<ClientId>,
        reply_to: Option<u64>,
    ) -> Result<(), End> {
        let author = self.current_name();
        let message = NewMessage::now(self.room.clone(), author, text.clone())
            .by(self.user.clone())
            .as_guest(self.guest)
            .with_client_id(client_id)
            .replying_to(reply_to);
        self.submit(Write::Post(message), Attempt::Post(text))
    }

    /// The name the user has now: it may have changed since the connection opened.
    fn current_name(&self) -> DisplayName {
        self.hub
            .name_of(&self.room, self.id)
            .unwrap_or_else(|| self.name.clone())
    }

    /// An edit or a delete of one of this user's messages: the same road, and the same
    /// limits, as a post. Whether the message is theirs is the store's to check, inside
    /// the change's transaction.
    fn change(&mut self, id: u64, what: ChangeKind) -> Result<(), End> {
        let attempt = match what {
            ChangeKind::Edit(_) => Attempt::Edit,
            ChangeKind::Delete => Attempt::Delete,
            ChangeKind::React(..) => Attempt::React,
        };
        let change = Change::now(self.room.clone(), id, self.user.clone(), what);
        self.submit(Write::Change(change), attempt)
    }

    /// Submits a write for commit if the limits allow; tells the sender why not otherwise.
    fn submit(&mut self, write: Write, attempt: Attempt) -> Result<(), End> {
        if self.read_only {
            self.hub.metrics().rejected(Rejection::NotAllowed);
            return self.failed(&attempt, "guests can only read here; sign in to post.");
        }
        if self.hub.is_banned(&self.user) {
            self.hub.metrics().rejected(Rejection::NotAllowed);
            return self.failed(&attempt, "you have been banned from posting here.");
        }
        let (rejection, reason) = match self.limits.allow(false, &self.settings)? {
            // Queued at once: from here on the write is stored (or its sender told why not)
            // even if this session ends before the answer comes.
            Verdict::Allowed => match self.committer.submit(write) {
                Ok(answer) => {
                    self.in_flight.push(
                        async move {
                            let outcome = answer.await.unwrap_or(Err(CommitError::Stopped));
                            (attempt, outcome)
                        }
                        .boxed(),
                    );
                    return Ok(());
                }
                Err(err) => (err.rejection(), err.user_message()),
            },
            Verdict::Connection => (
                Rejection::RateLimited,
                "you are sending too fast; wait a moment.".to_owned(),
            ),
            Verdict::Address => (
                Rejection::AddressRateLimited,
                "too many messages from your address; wait a moment.".to_owned(),
            ),
        };
        self.hub.metrics().rejected(rejection);
        self.failed(&attempt, &reason)
    }

    /// Tells the sender that what they sent did not go through, and why: a message's text
    /// is put back in the input.
    pub(super) fn failed(&self, attempt: &Attempt, reason: &str) -> Result<(), End> {
        let notice = match attempt {
            Attempt::Post(text) => self.not_sent(reason, text),
            Attempt::Edit => render::notice(&format!("Not saved: {reason}")),
            Attempt::Delete => render::notice(&format!("Not deleted: {reason}")),
            Attempt::React => render::notice(&format!("Not reacted: {reason}")),
        };
        self.notice(&notice)
    }

    /// "Not sent: …" with the text put back in the input.
    fn not_sent(&self, reason: &str, text: &MessageText) -> Html {
        render::not_sent(
            reason,
            text.as_str(),
            &self.room,
            self.settings.max_message_chars,
        )
    }

    /// A fragment for this connection alone.
    fn notice(&self, html: &Html) -> Result<(), End> {
        self.conn.send(&Frame::text(html.as_str()))
    }
}

/// Parses one text frame into what it asks for, or why it cannot be sent.
fn parse(frame: &str, settings: &Settings) -> Result<Request, InboundError> {
    let max = settings.max_message_chars as usize;
    match Inbound::parse(frame)? {
        Inbound::Typing => Ok(Request::Typing),
        Inbound::Message {
            text,
            client_id,
            reply_to,
        } => MessageText::parse(&text, max).map(|text| {
            text.map_or(Request::Nothing, |text| {
                Request::Post(text, client_id, reply_to)
            })
        }),
        Inbound::Edit { id, text } => match MessageText::parse(&text, max)? {
            Some(text) => Ok(Request::Change(id, ChangeKind::Edit(text))),
            None => Err(InboundError::EmptyEdit),
        },
        Inbound::Delete { id } => Ok(Request::Change(id, ChangeKind::Delete)),
        Inbound::React { id, emoji } => Ok(Request::React(id, emoji)),
        Inbound::Read { id } => Ok(Request::Read(id)),
    }
}

/// Why an unreadable frame was not sent, for `hubbub_messages_rejected_total`.
fn inbound_rejection(err: &InboundError) -> Rejection {
    match err {
        InboundError::TooLong { .. } => Rejection::TooLong,
        InboundError::Malformed(_)
        | InboundError::ControlCharacters
        | InboundError::EmptyEdit
        | InboundError::UnknownReaction => Rejection::Invalid,
    }
}
