//! The rooms of a run, from its groups: how many clients and senders each has, at what
//! rate, and where on every node its clients connect.

use crate::page::Node;
use crate::{LoadConfig, LoadError};

/// One room of the run.
#[derive(Debug)]
pub(crate) struct Room {
    /// Index into the run's groups.
    pub(crate) group: usize,
    pub(crate) clients: usize,
    /// Zero when the run is `--idle`.
    pub(crate) senders: usize,
    /// Messages per second, the room's senders together.
    pub(crate) rate: f64,
    /// The room's socket on each node, `--url` first, then each `--also-url`. Client `c`
    /// of the room connects to node `c mod n`, so senders, too, are spread over the nodes.
    pub(crate) nodes: Vec<Node>,
}

/// Every room of every group, in order (group 0's rooms first), with its sockets found.
pub(crate) async fn rooms(config: &LoadConfig) -> Result<Vec<Room>, LoadError> {
    let urls: Vec<&String> = std::iter::once(&config.url)
        .chain(&config.also_urls)
        .collect();
    if !config.groups.is_empty()
        && let Some(url) = urls.iter().find(|url| url.starts_with("ws"))
    {
        return Err(LoadError::GroupsNeedPage((*url).clone()));
    }
    let mut rooms = Vec::new();
    for (g, group) in config.effective_groups().into_iter().enumerate() {
        if group.senders > group.clients {
            return Err(LoadError::TooManySenders {
                senders: group.senders,
                clients: group.clients,
            });
        }
        for r in 0..group.rooms {
            let name = config.room_name(g, r);
            let mut nodes = Vec::with_capacity(urls.len());
            for url in &urls {
                nodes.push(Node::find(url, name.as_deref(), config.no_spread).await?);
            }
            rooms.push(Room {
                group: g,
                clients: group.clients,
                senders: if config.idle { 0 } else { group.senders },
                rate: if config.idle { 0.0 } else { group.rate },
                nodes,
            });
        }
    }
    Ok(rooms)
}
