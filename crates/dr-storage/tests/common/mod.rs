//! What the repository's test files share: repository set-up, data
//! generators, backups and reads through dr-core's traits, and waiting for
//! a condition. Each test file uses part of it.
#![allow(dead_code)]

use std::sync::Arc;

use dr_core::{
    ComponentId, Manifest, RecoveryPoint, SnapshotCommit, SnapshotId, StreamCheck, StreamName,
};
use dr_storage::prelude::*;
use dr_storage::{ChunkerParams, InitOptions, KdfParams, Repository, S3Backend, S3Options, Secret};
use jiff::Timestamp;
use tokio::io::AsyncReadExt;

/// The password of [`small`] repositories.
pub(crate) const PASSWORD: &str = "pw";

/// An encrypted repository with small chunks (4/16/64 KiB) and 256 KiB
/// packs, so that a few hundred kilobytes make many of both, and a key
/// derivation fast enough for tests.
pub(crate) fn small() -> InitOptions {
    InitOptions::encrypted(Secret::password(PASSWORD))
        .kdf(KdfParams::INSECURE_FAST)
        .chunker(ChunkerParams {
            min: 4 * 1024,
            avg: 16 * 1024,
            max: 64 * 1024,
        })
        .pack_size(256 * 1024)
}

pub(crate) fn component(name: &str) -> ComponentId {
    name.parse().unwrap()
}

pub(crate) fn stream(name: &str) -> StreamName {
    name.parse().unwrap()
}

/// Deterministic bytes, distinct per seed: a xorshift stream.
fn xorshift(seed: u64) -> impl FnMut() -> u8 {
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }
}

/// Deterministic, partly compressible data: 4 KiB of text, then 4 KiB of
/// noise, and so on.
pub(crate) fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut next = xorshift(seed);
    (0..len)
        .map(|i| {
            let noise = next();
            if (i / 4096) % 2 == 0 {
                b"log line "[i % 9]
            } else {
                noise
            }
        })
        .collect()
}

/// Deterministic, incompressible data.
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut next = xorshift(seed);
    (0..len).map(|_| next()).collect()
}

/// Commits a snapshot of `component` started at `at`, of these streams, with these labels.
pub(crate) async fn backup_at(
    repo: &Repository,
    component: &ComponentId,
    at: Timestamp,
    streams: &[(&str, &[u8])],
    labels: &[(&str, &str)],
) -> Manifest {
    let mut writer = repo.begin(component, at).await.unwrap();
    for (name, bytes) in streams {
        writer
            .add_stream(&stream(name), &mut &bytes[..])
            .await
            .unwrap();
    }
    let mut commit = SnapshotCommit::new(RecoveryPoint::new(at));
    for (key, value) in labels {
        commit = commit.label(*key, *value);
    }
    writer.commit(commit).await.unwrap()
}

/// One stream of a snapshot, read whole with the full check.
pub(crate) async fn read(
    repo: &Repository,
    id: &SnapshotId,
    name: &str,
) -> std::io::Result<Vec<u8>> {
    read_checked(repo, id, name, StreamCheck::Digest).await
}

/// One stream of a snapshot, read whole with `check`.
pub(crate) async fn read_checked(
    repo: &Repository,
    id: &SnapshotId,
    name: &str,
    check: StreamCheck,
) -> std::io::Result<Vec<u8>> {
    let mut reader = repo
        .open_stream_with(id, &stream(name), check)
        .await
        .unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await?;
    Ok(out)
}

/// The bytes of the objects under `prefix`.
pub(crate) async fn stored_bytes(backend: &dyn WriteBackend, prefix: &str) -> u64 {
    backend
        .list(prefix)
        .await
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum()
}

/// The bucket of a test S3 server, under `prefix` (empty for none).
pub(crate) async fn s3_backend(server: &dr_testkit::S3, prefix: &str) -> Arc<dyn WriteBackend> {
    let options = S3Options::new(server.bucket(), server.region())
        .endpoint(server.endpoint())
        .static_credentials(server.access_key_id(), server.secret_access_key())
        .prefix(prefix);
    Arc::new(S3Backend::new(options).await.unwrap())
}
