//! The token each load-test message carries: `#lt<run>:<sender>:<seq>:<w|m>:<micros>#`.
//!
//! Plain ASCII without HTML-special characters, so it survives any escaping a server
//! applies and can be found in whatever HTML comes back.

/// One message's identity and send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Distinguishes this run from earlier ones (whose messages come back as history).
    pub run: u32,
    pub sender: u32,
    pub seq: u64,
    /// Sent during warm-up: not counted.
    pub warmup: bool,
    /// Microseconds after the run started.
    pub sent_micros: u64,
}

impl Token {
    pub fn encode(&self) -> String {
        let phase = if self.warmup { 'w' } else { 'm' };
        format!(
            "#lt{:08x}:{}:{}:{phase}:{}#",
            self.run, self.sender, self.seq, self.sent_micros
        )
    }

    /// Every well-formed token of `run` in `text`, in order.
    pub fn find_all(text: &str, run: u32) -> impl Iterator<Item = Token> + '_ {
        Self::find_all_after(text, run, Self::prefix(run))
    }

    /// What every token of `run` starts with; a reader computes it once.
    pub fn prefix(run: u32) -> String {
        format!("#lt{run:08x}:")
    }

    /// [`Token::find_all`] with the run's prefix computed once by the caller.
    pub fn find_all_after<'a>(
        text: &'a str,
        run: u32,
        prefix: impl AsRef<str> + 'a,
    ) -> impl Iterator<Item = Token> + 'a {
        let mut rest = text;
        std::iter::from_fn(move || {
            loop {
                let prefix = prefix.as_ref();
                let at = rest.find(prefix)?;
                let after = &rest[at + prefix.len()..];
                let end = after.find('#').unwrap_or(after.len());
                let body = &after[..end];
                rest = &after[end..];
                if let Some(token) = Self::parse_body(run, body) {
                    return Some(token);
                }
            }
        })
    }

    fn parse_body(run: u32, body: &str) -> Option<Token> {
        let mut fields = body.split(':');
        let sender = fields.next()?.parse().ok()?;
        let seq = fields.next()?.parse().ok()?;
        let warmup = match fields.next()? {
            "w" => true,
            "m" => false,
            _ => return None,
        };
        let sent_micros = fields.next()?.parse().ok()?;
        fields.next().is_none().then_some(Token {
            run,
            sender,
            seq,
            warmup,
            sent_micros,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_found_in_html() {
        let a = Token {
            run: 0xdead_beef,
            sender: 3,
            seq: 42,
            warmup: false,
            sent_micros: 123_456,
        };
        let b = Token {
            seq: 43,
            warmup: true,
            ..a
        };
        let other_run = Token { run: 1, ..a };
        let html = format!(
            "<div><p class=\"text\">load {}</p></div>\n<p>load {}</p><p>{}</p><p>#lt{:08x}:junk#</p>",
            a.encode(),
            b.encode(),
            other_run.encode(),
            a.run
        );
        let found: Vec<Token> = Token::find_all(&html, a.run).collect();
        assert_eq!(found, [a, b]);
    }
}
