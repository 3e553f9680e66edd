//! The connectors a run reads and updates: preloaded by the run or read from a keys file.

use std::{io::BufRead, path::Path};

/// The ids of one app, sorted as the server lists them.
#[derive(Debug, Clone)]
pub struct AppKeys {
    pub app_id: String,
    pub ids: Vec<String>,
    /// Etag of each id when known (preloaded keys). It is empty for keys read from a file,
    /// so their first update is unconditional.
    pub etags: Vec<String>,
}

/// Every known connector, grouped by app.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub apps: Vec<AppKeys>,
    /// Number of keys in `apps[..i]`, for mapping a flat index to an app.
    starts: Vec<usize>,
    total: usize,
}

impl KeySet {
    pub fn new(mut apps: Vec<AppKeys>) -> Self {
        let mut starts = Vec::with_capacity(apps.len());
        let mut total = 0;
        for app in &mut apps {
            sort_together(&mut app.ids, &mut app.etags);
            starts.push(total);
            total += app.ids.len();
        }
        Self { apps, starts, total }
    }

    /// Reads lines of `app_id id`; the ids of an app may come in any order.
    pub fn read_file(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|error| format!("cannot open keys file {}: {error}", path.display()))?;
        let mut apps: Vec<AppKeys> = Vec::new();
        let mut index_of_app = std::collections::HashMap::new();
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|error| format!("cannot read keys file {}: {error}", path.display()))?;
            let Some((app_id, id)) = line.split_once(' ') else {
                return Err(format!("line {} of {} is not `app_id id`: {line:?}", number + 1, path.display()));
            };
            let index = *index_of_app.entry(app_id.to_owned()).or_insert_with(|| {
                apps.push(AppKeys { app_id: app_id.to_owned(), ids: Vec::new(), etags: Vec::new() });
                apps.len() - 1
            });
            apps[index].ids.push(id.to_owned());
        }
        if apps.is_empty() {
            return Err(format!("keys file {} is empty", path.display()));
        }
        Ok(Self::new(apps))
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Returns the app index and id index of the `flat`-th key.
    pub fn locate(&self, flat: usize) -> (usize, usize) {
        let app = self.starts.partition_point(|start| *start <= flat) - 1;
        (app, flat - self.starts[app])
    }

    /// Returns a key drawn uniformly from all keys.
    pub fn random(&self, rng: &mut fastrand::Rng) -> (usize, usize) {
        self.locate(rng.usize(..self.total))
    }

    /// Returns the app and start index of a page of `size` that begins at a key drawn
    /// uniformly from all keys, moved back so the page is full where the app has enough.
    pub fn random_page(&self, rng: &mut fastrand::Rng, size: usize) -> (usize, usize) {
        let (app, index) = self.random(rng);
        let last_full_start = self.apps[app].ids.len().saturating_sub(size);
        (app, index.min(last_full_start))
    }

    /// Returns the keys that client `client` of `clients` owns: every `clients`-th key.
    pub fn owned_by(&self, client: usize, clients: usize) -> Vec<(usize, usize)> {
        (client..self.total).step_by(clients.max(1)).map(|flat| self.locate(flat)).collect()
    }
}

/// Sorts `ids`, moving each etag with its id when the etags are known.
fn sort_together(ids: &mut Vec<String>, etags: &mut Vec<String>) {
    if etags.len() == ids.len() {
        let mut pairs: Vec<(String, String)> = ids.drain(..).zip(etags.drain(..)).collect();
        pairs.sort_unstable();
        for (id, etag) in pairs {
            ids.push(id);
            etags.push(etag);
        }
    } else {
        etags.clear();
        ids.sort_unstable();
    }
}
