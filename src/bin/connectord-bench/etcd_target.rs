//! Requests to etcd's KV service, shaped like the connectord workloads: a Put for each
//! create or update, a one-key Range for each get, and a prefix Range with limit 100 for
//! each page.

use std::{sync::Arc, time::Instant};

use prost::Message;
use tonic::transport::Channel;

use crate::{
    RunArgs,
    connectord_target::{PAGE_SIZE, bench_config, description_of},
    etcd::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest, kv_client::KvClient},
    runner::{Failure, Op, run_concurrently},
};

/// Length of the id part of every key, the length of a connectord id (a ULID).
const ID_CHARS: usize = 26;

/// The preloaded keys of a run, all under one prefix, in key order.
struct EtcdKeys {
    keys: Vec<Vec<u8>>,
    /// First key after every key with the prefix: the prefix with its last byte plus one.
    prefix_end: Vec<u8>,
}

pub struct EtcdClient {
    kv: KvClient<Channel>,
    keys: Arc<EtcdKeys>,
    prefix: Arc<[u8]>,
    value: Arc<[u8]>,
    serializable: bool,
    client_index: usize,
    sequence: u64,
    /// Indexes into `keys.keys` of the keys this client updates.
    owned: Vec<usize>,
    next_owned: usize,
    rng: fastrand::Rng,
}

/// Returns a value with the encoded size of a connector that connectord-bench creates:
/// the same description and config, a 26-character id and the fields the server fills in.
fn connector_sized_value(app_id: &str, value_size: usize) -> Vec<u8> {
    let timestamp = prost_types::Timestamp { seconds: 1_800_000_000, nanos: 123_456_789 };
    connectord::pb::Connector {
        id: "0".repeat(ID_CHARS),
        app_id: app_id.to_owned(),
        catalog_id: "bench".to_owned(),
        display_name: format!("bench {}", "0".repeat(24)),
        description: description_of(value_size),
        config: Some(bench_config()),
        created_at: Some(timestamp),
        updated_at: Some(timestamp),
        etag: "\"1\"".to_owned(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Preloads the keys, compacts etcd's history so reads see no old revisions, and returns
/// one client per unit of concurrency and the value size in bytes.
pub async fn prepare(
    args: &RunArgs,
    channels: &[Channel],
    run_id: &str,
    preload: usize,
    hard_stop: Instant,
) -> Result<(Vec<EtcdClient>, usize), String> {
    let app_id = args.app_id.clone().unwrap_or_else(|| format!("bench-{run_id}"));
    let prefix: Arc<[u8]> = format!("/{app_id}/").into_bytes().into();
    let mut prefix_end = prefix.to_vec();
    *prefix_end.last_mut().expect("the prefix is not empty") += 1;
    let value: Arc<[u8]> = connector_sized_value(&app_id, args.value_size).into();

    let keys: Vec<Vec<u8>> = (0..preload).map(|index| key_of(&prefix, &format!("{index:0ID_CHARS$}"))).collect();
    let revision = preload_keys(channels, &keys, &value, args.concurrency, hard_stop).await?;
    compact(channels, revision).await;

    let keys = Arc::new(EtcdKeys { keys, prefix_end });
    let clients = (0..args.concurrency)
        .map(|index| EtcdClient {
            kv: KvClient::new(channels[index % channels.len()].clone()),
            keys: Arc::clone(&keys),
            prefix: Arc::clone(&prefix),
            value: Arc::clone(&value),
            serializable: args.etcd_serializable,
            client_index: index,
            sequence: 0,
            owned: (index..keys.keys.len()).step_by(args.concurrency).collect(),
            next_owned: 0,
            rng: fastrand::Rng::new(),
        })
        .collect();
    Ok((clients, value.len()))
}

fn key_of(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + id.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Puts every key and returns the highest revision seen, or 0 when there were none.
async fn preload_keys(
    channels: &[Channel],
    keys: &[Vec<u8>],
    value: &Arc<[u8]>,
    concurrency: usize,
    hard_stop: Instant,
) -> Result<i64, String> {
    let channels = channels.to_vec();
    let keys = keys.to_vec();
    let value = Arc::clone(value);
    let revisions = run_concurrently(keys.len(), concurrency, hard_stop, move |index| {
        let mut kv = KvClient::new(channels[index % channels.len()].clone());
        let request = PutRequest { key: keys[index].clone(), value: value.to_vec(), ..Default::default() };
        async move {
            let response =
                kv.put(request).await.map_err(|status| format!("preload Put failed: {:?}: {}", status.code(), status.message()))?;
            Ok(response.into_inner().header.map_or(0, |header| header.revision))
        }
    })
    .await?;
    Ok(revisions.into_iter().max().unwrap_or(0))
}

/// Compacts etcd's history up to `revision`, or up to the current revision when it is 0.
/// A failure only prints a warning, because compaction fails when nothing was written
/// since the last one.
async fn compact(channels: &[Channel], revision: i64) {
    let mut kv = KvClient::new(channels[0].clone());
    let revision = if revision > 0 {
        revision
    } else {
        let request = RangeRequest { key: b"/".to_vec(), limit: 1, ..Default::default() };
        match kv.range(request).await {
            Ok(response) => response.into_inner().header.map_or(0, |header| header.revision),
            Err(status) => {
                eprintln!("connectord-bench: reading etcd's revision failed: {:?}: {}", status.code(), status.message());
                return;
            }
        }
    };
    let request = CompactionRequest { revision, physical: true };
    if let Err(status) = kv.compact(request).await {
        eprintln!("connectord-bench: etcd compaction at revision {revision} failed: {:?}: {}", status.code(), status.message());
    }
}

impl EtcdClient {
    pub async fn call(&mut self, op: Op) -> Result<(), Failure> {
        match op {
            Op::Create => {
                self.sequence += 1;
                let id = format!("n{:05}{:020}", self.client_index % 100_000, self.sequence);
                self.put(key_of(&self.prefix, &id)).await
            }
            Op::Get => self.get().await,
            Op::List => self.list().await,
            Op::Update => {
                if self.owned.is_empty() {
                    return Err(Failure::check("this client owns no keys to update; preload at least --concurrency keys"));
                }
                let index = self.owned[self.next_owned % self.owned.len()];
                self.next_owned += 1;
                self.put(self.keys.keys[index].clone()).await
            }
        }
    }

    async fn put(&mut self, key: Vec<u8>) -> Result<(), Failure> {
        let request = PutRequest { key, value: self.value.to_vec(), ..Default::default() };
        let response = self.kv.put(request).await.map_err(|status| Failure::status(&status))?;
        match response.into_inner().header {
            Some(header) if header.revision > 0 => Ok(()),
            _ => Err(Failure::check("Put returned no revision")),
        }
    }

    async fn get(&mut self) -> Result<(), Failure> {
        let index = self.rng.usize(..self.keys.keys.len());
        let request = RangeRequest { key: self.keys.keys[index].clone(), serializable: self.serializable, ..Default::default() };
        let response = self.kv.range(request).await.map_err(|status| Failure::status(&status))?;
        let kvs = response.into_inner().kvs;
        if kvs.len() != 1 || kvs[0].value.len() != self.value.len() {
            return Err(Failure::check(format!("Range of one key returned {} keys", kvs.len())));
        }
        Ok(())
    }

    async fn list(&mut self) -> Result<(), Failure> {
        let count = self.keys.keys.len();
        let start = self.rng.usize(..count).min(count.saturating_sub(PAGE_SIZE));
        let request = RangeRequest {
            key: self.keys.keys[start].clone(),
            range_end: self.keys.prefix_end.clone(),
            limit: PAGE_SIZE as i64,
            serializable: self.serializable,
            ..Default::default()
        };
        let response = self.kv.range(request).await.map_err(|status| Failure::status(&status))?;
        let kvs = response.into_inner().kvs;
        let expected = PAGE_SIZE.min(count - start);
        if kvs.len() < expected || kvs.len() > PAGE_SIZE || kvs[0].key != self.keys.keys[start] {
            return Err(Failure::check(format!("prefix Range returned {} keys; expected {expected}", kvs.len())));
        }
        Ok(())
    }
}
