//! The catalog: every title and where it sits in the hierarchy.
//!
//! One namespace of ids holds channels, shows, episodes, movies, live events
//! and their highlight clips. Each title names its `parent`: an episode its
//! show, a show, movie or live event its channel, a clip its live event. The
//! file form is JSON lines, one title per line, so catalogs of hundreds of
//! thousands of titles stream in and diff well.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::error::Error;
use crate::core::event::ContentId;
use crate::core::rng::SplitMix64;
use crate::core::time::{Millis, HOUR_MS};

/// What a title is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A channel (a brand that shows, movies and live events belong to).
    Channel,
    /// A series; its episodes are what people watch.
    Show,
    /// One episode of a show.
    Episode,
    /// A movie.
    Movie,
    /// A live event (a match, a concert).
    Live,
    /// A highlight clip of a live event.
    Clip,
}

impl Kind {
    /// The categories that are watched directly (and ranked).
    pub const WATCHABLE: [Kind; 4] = [Kind::Episode, Kind::Movie, Kind::Live, Kind::Clip];
    /// The name used in files and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::Show => "show",
            Kind::Episode => "episode",
            Kind::Movie => "movie",
            Kind::Live => "live",
            Kind::Clip => "clip",
        }
    }
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 6] = [
        Kind::Channel,
        Kind::Show,
        Kind::Episode,
        Kind::Movie,
        Kind::Live,
        Kind::Clip,
    ];
    /// Parses a category name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Title {
    /// The content id events refer to.
    pub id: ContentId,
    /// What it is.
    pub kind: Kind,
    /// Display name.
    pub name: String,
    /// The next level up the hierarchy, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ContentId>,
    /// Live events: when it starts (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Millis>,
    /// Live events: when it ends; clips lose popularity after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Millis>,
}

/// All titles, indexed by id.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Titles in file order.
    pub titles: Vec<Title>,
    index: HashMap<ContentId, usize>,
}

/// Checks one title against the hierarchy rules: its parent (looked up by
/// `kind_of`) exists and has the right kind; live events have an end.
pub fn check_title(t: &Title, kind_of: impl Fn(ContentId) -> Option<Kind>) -> Result<(), String> {
    if t.id > crate::core::event::MAX_CONTENT_ID {
        return Err(format!(
            "title id {} is above {}",
            t.id,
            crate::core::event::MAX_CONTENT_ID
        ));
    }
    let want = match t.kind {
        Kind::Channel => None,
        Kind::Show | Kind::Movie | Kind::Live => Some(Kind::Channel),
        Kind::Episode => Some(Kind::Show),
        Kind::Clip => Some(Kind::Live),
    };
    match (want, t.parent) {
        (None, None) => {}
        (None, Some(p)) => {
            return Err(format!("channel {} must not have a parent (has {p})", t.id))
        }
        (Some(k), None) => {
            return Err(format!(
                "{} {} needs a parent {}",
                t.kind.as_str(),
                t.id,
                k.as_str()
            ))
        }
        (Some(k), Some(p)) => match kind_of(p) {
            Some(pk) if pk == k => {}
            Some(pk) => {
                return Err(format!(
                    "parent {p} of {} {} is a {}, expected a {}",
                    t.kind.as_str(),
                    t.id,
                    pk.as_str(),
                    k.as_str()
                ))
            }
            None => return Err(format!("parent {p} of title {} does not exist", t.id)),
        },
    }
    if t.kind == Kind::Live && t.ends_at.is_none() {
        return Err(format!("live event {} needs ends_at", t.id));
    }
    Ok(())
}

impl Catalog {
    /// The node of `category` that `id`'s views count towards, if any.
    pub fn bucket(&self, id: ContentId, category: Kind) -> Option<ContentId> {
        let t = self.get(id)?;
        match category {
            Kind::Show => match t.kind {
                Kind::Episode => t.parent,
                _ => None,
            },
            Kind::Channel => match t.kind {
                Kind::Episode => t.parent.and_then(|s| self.get(s)).and_then(|s| s.parent),
                Kind::Movie | Kind::Live => t.parent,
                Kind::Clip => t.parent.and_then(|l| self.get(l)).and_then(|l| l.parent),
                _ => None,
            },
            k if k == t.kind => Some(id),
            _ => None,
        }
    }

    /// Builds a catalog, checking ids are unique and parents exist with the right kind.
    pub fn new(titles: Vec<Title>) -> Result<Catalog, Error> {
        let mut index = HashMap::with_capacity(titles.len());
        for (i, t) in titles.iter().enumerate() {
            if index.insert(t.id, i).is_some() {
                return Err(Error::Input(format!(
                    "catalog: duplicate title id {}",
                    t.id
                )));
            }
        }
        let cat = Catalog { titles, index };
        for t in &cat.titles {
            check_title(t, |p| cat.get(p).map(|pt| pt.kind))
                .map_err(|e| Error::Input(format!("catalog: {e}")))?;
        }
        Ok(cat)
    }

    /// Looks a title up.
    pub fn get(&self, id: ContentId) -> Option<&Title> {
        self.index.get(&id).map(|&i| &self.titles[i])
    }

    /// Number of titles.
    pub fn len(&self) -> usize {
        self.titles.len()
    }

    /// True if there are no titles.
    pub fn is_empty(&self) -> bool {
        self.titles.is_empty()
    }

    /// Reads a JSON-lines catalog.
    pub fn load(path: &Path) -> Result<Catalog, Error> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("opening catalog {}", path.display()), e))?;
        let mut titles = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line =
                line.map_err(|e| Error::io(format!("reading catalog {}", path.display()), e))?;
            if line.trim().is_empty() {
                continue;
            }
            let t: Title = serde_json::from_str(&line).map_err(|e| {
                Error::Input(format!("catalog {} line {}: {e}", path.display(), n + 1))
            })?;
            titles.push(t);
        }
        Catalog::new(titles)
    }

    /// Writes the catalog as JSON lines.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for t in &self.titles {
            serde_json::to_writer(&mut *out, t)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Synthesizes a realistic catalog of about `n` titles.
    ///
    /// Roughly: 1 channel per 2 000 titles (at least 3), a show per 40
    /// titles, 60 % episodes, 20 % movies, 1 % live events spread over the
    /// first two days after `start_ms` (each 2–6 h long), and the rest
    /// highlight clips of those live events.
    pub fn synthesize(n: usize, seed: u64, start_ms: Millis) -> Result<Catalog, Error> {
        let mut rng = SplitMix64::new(seed ^ 0xca7a_1095);
        let n = n.max(20);
        let channels = (n / 2000).max(3);
        let shows = (n / 40).max(2);
        let lives = (n / 100).max(1);
        let movies = n / 5;
        let clips = (n / 7).max(lives);
        let episodes = n
            .saturating_sub(channels + shows + lives + movies + clips)
            .max(1);
        let mut titles = Vec::with_capacity(n);
        let mut next_id: ContentId = 1;
        let mut push = |titles: &mut Vec<Title>,
                        kind: Kind,
                        name: String,
                        parent: Option<ContentId>,
                        span: Option<(Millis, Millis)>| {
            let id = next_id;
            next_id += 1;
            titles.push(Title {
                id,
                kind,
                name,
                parent,
                starts_at: span.map(|s| s.0),
                ends_at: span.map(|s| s.1),
            });
            id
        };
        let channel_ids: Vec<ContentId> = (0..channels)
            .map(|c| {
                push(
                    &mut titles,
                    Kind::Channel,
                    format!("Channel {}", c + 1),
                    None,
                    None,
                )
            })
            .collect();
        let show_ids: Vec<ContentId> = (0..shows)
            .map(|s| {
                let ch = channel_ids[rng.below(channels as u64) as usize];
                push(
                    &mut titles,
                    Kind::Show,
                    format!("Show {}", s + 1),
                    Some(ch),
                    None,
                )
            })
            .collect();
        for e in 0..episodes {
            let show = show_ids[rng.below(shows as u64) as usize];
            push(
                &mut titles,
                Kind::Episode,
                format!("Episode {}", e + 1),
                Some(show),
                None,
            );
        }
        for m in 0..movies {
            let ch = channel_ids[rng.below(channels as u64) as usize];
            push(
                &mut titles,
                Kind::Movie,
                format!("Movie {}", m + 1),
                Some(ch),
                None,
            );
        }
        let live_ids: Vec<ContentId> = (0..lives)
            .map(|l| {
                let ch = channel_ids[rng.below(channels as u64) as usize];
                let begin = start_ms + (rng.below(48) as Millis) * HOUR_MS;
                let len = (2 + rng.below(5) as Millis) * HOUR_MS;
                push(
                    &mut titles,
                    Kind::Live,
                    format!("Live {}", l + 1),
                    Some(ch),
                    Some((begin, begin + len)),
                )
            })
            .collect();
        for c in 0..clips {
            let live = live_ids[rng.below(lives as u64) as usize];
            push(
                &mut titles,
                Kind::Clip,
                format!("Clip {}", c + 1),
                Some(live),
                None,
            );
        }
        // Validated like a loaded catalog: a bug above shows as an error, not bad data.
        Catalog::new(titles).map_err(|e| Error::Internal(format!("synthesized catalog: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesized_catalog_is_valid_and_deterministic() {
        let a = Catalog::synthesize(10_000, 7, 1_767_225_600_000).expect("valid");
        let b = Catalog::synthesize(10_000, 7, 1_767_225_600_000).expect("valid");
        assert_eq!(a.titles, b.titles);
        assert!(a.len() >= 9_000 && a.len() <= 10_000, "{}", a.len());
        for kind in Kind::ALL {
            assert!(a.titles.iter().any(|t| t.kind == kind), "no {kind:?}");
        }
        let mut buf = Vec::new();
        a.write(&mut buf).expect("in memory");
        let dir = std::env::temp_dir().join(format!("cat-{}", std::process::id()));
        std::fs::write(&dir, &buf).expect("temp file");
        let c = Catalog::load(&dir).expect("reloads");
        let _ = std::fs::remove_file(&dir);
        assert_eq!(c.titles, a.titles);
    }

    #[test]
    fn shipped_catalog_loads() {
        let c =
            Catalog::load(Path::new("jobs/catalog.jsonl")).expect("jobs/catalog.jsonl is valid");
        assert!(c.len() > 4000);
        assert!(c.titles.iter().any(|t| t.kind == Kind::Clip
            && c.get(t.parent.unwrap_or(0))
                .is_some_and(|p| p.kind == Kind::Live)));
    }

    #[test]
    fn rejects_broken_hierarchies() {
        let t = |id, kind, parent| Title {
            id,
            kind,
            name: format!("t{id}"),
            parent,
            starts_at: None,
            ends_at: None,
        };
        assert!(Catalog::new(vec![
            t(1, Kind::Channel, None),
            t(2, Kind::Show, Some(1)),
            t(3, Kind::Episode, Some(2))
        ])
        .is_ok());
        assert!(
            Catalog::new(vec![t(1, Kind::Channel, None), t(1, Kind::Show, Some(1))]).is_err(),
            "duplicate id"
        );
        assert!(
            Catalog::new(vec![
                t(1, Kind::Channel, None),
                t(3, Kind::Episode, Some(1))
            ])
            .is_err(),
            "episode under channel"
        );
        assert!(
            Catalog::new(vec![t(3, Kind::Episode, Some(9))]).is_err(),
            "dangling parent"
        );
        assert!(
            Catalog::new(vec![t(1, Kind::Channel, None), t(2, Kind::Live, Some(1))]).is_err(),
            "live without end"
        );
    }
}
