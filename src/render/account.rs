//! The account pages: claiming a name (`/signup`), signing in (`/login`), and the signed-in
//! user's own page (`/account`: password, signing out).

use askama::Template;

use super::RenderError;
use super::page::AssetUrls;

/// Which account page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    SignUp,
    SignIn,
    Account,
}

/// Everything an account page shows.
pub struct AccountPage<'a> {
    pub assets: &'a AssetUrls,
    pub kind: AccountKind,
    /// The name in the form (sign-up, sign-in) or signed in as (account).
    pub name: &'a str,
    pub moderator: bool,
    /// Where "back" leads, and where a sign-in continues to: a path on this site.
    pub back: &'a str,
    /// What went wrong with what was sent, said to the user.
    pub error: Option<&'a str>,
    /// What was done (a password changed).
    pub done: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountTemplate<'a> {
    assets: &'a AssetUrls,
    kind: &'static str,
    title: &'static str,
    name: &'a str,
    moderator: bool,
    back: &'a str,
    /// `back` percent-encoded for a query string.
    back_param: String,
    error: Option<&'a str>,
    done: Option<&'a str>,
}

/// A path percent-encoded for a query string: every byte but unreserved characters and `/`.
pub fn query_param(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub fn account_page(page: &AccountPage<'_>) -> Result<String, RenderError> {
    let (kind, title) = match page.kind {
        AccountKind::SignUp => ("signup", "Claim your name"),
        AccountKind::SignIn => ("login", "Sign in"),
        AccountKind::Account => ("account", "Your account"),
    };
    Ok(AccountTemplate {
        assets: page.assets,
        kind,
        title,
        name: page.name,
        moderator: page.moderator,
        back: page.back,
        back_param: query_param(page.back),
        error: page.error,
        done: page.done,
    }
    .render()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_for_a_query_string() {
        assert_eq!(query_param("/rooms/a-b_c"), "/rooms/a-b_c");
        assert_eq!(
            query_param("/rooms/x?around=5&y"),
            "/rooms/x%3Faround%3D5%26y"
        );
        assert_eq!(query_param("/\"<é"), "/%22%3C%C3%A9");
    }
}
