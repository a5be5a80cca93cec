//! The moderators' page: who is banned, by whom and since when, with a button to lift
//! each ban, and a form to ban a name.

use askama::Template;

use super::page::AssetUrls;
use super::{RenderError, datetime};
use crate::domain::Ban;

struct BanLine {
    user: String,
    name: String,
    by: String,
    datetime: String,
    date: String,
}

#[derive(Template)]
#[template(path = "moderation.html")]
struct ModerationTemplate<'a> {
    assets: &'a AssetUrls,
    bans: Vec<BanLine>,
    error: Option<&'a str>,
    done: Option<&'a str>,
}

pub fn moderation_page(
    assets: &AssetUrls,
    bans: &[Ban],
    error: Option<&str>,
    done: Option<&str>,
) -> Result<String, RenderError> {
    let bans = bans
        .iter()
        .map(|ban| BanLine {
            user: ban.user.to_string(),
            name: ban.name.clone(),
            by: ban.by.clone(),
            datetime: datetime(ban.at),
            date: ban.at.date().to_string(),
        })
        .collect();
    Ok(ModerationTemplate {
        assets,
        bans,
        error,
        done,
    }
    .render()?)
}
