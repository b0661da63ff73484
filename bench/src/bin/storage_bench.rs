//! Drives a dr-storage repository from the command line; `scripts/bench storage`
//! runs it side by side with restic.
//!
//! ```text
//! storage_bench generate --size <bytes> [--seed N] <path>
//! storage_bench mutate [--fraction 0.05] [--region-size <bytes>] [--seed N] <path>
//! storage_bench backup --repo <dir> [--compression-level N] [--pack-size <bytes>]  < data
//! storage_bench restore --repo <dir>  > data
//! ```
//!
//! `generate` writes a reproducible data set: blocks of 4 MiB, alternately
//! text-like (log lines, CSV rows and sentences from a seeded generator; zstd
//! shrinks it a few times, not a hundredfold) and random. `mutate` overwrites
//! a fraction of the file in place, in regions spread evenly over it, keeping
//! each block's kind. `backup` stores standard input as one stream, the way a
//! database dump arrives, creating the repository if the directory is empty
//! (the compression and pack options apply only then); `restore` writes the
//! latest snapshot's stream to standard output. The password comes from
//! `DRKIT_PASSWORD`; key derivation runs at the recommended cost, every time.
//! Timings go to standard error.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use dr_core::{
    ComponentId, RecoveryPoint, SnapshotCommit, SnapshotSink, SnapshotSource, SnapshotSourceExt,
    StreamName,
};
use dr_storage::{InitOptions, Secret};
use drkit_bench::{AnyResult, RepoArgs, runtime, secs};
use jiff::Timestamp;
use tokio::io::{AsyncWriteExt, BufReader};

/// Text and random data alternate in blocks of this size.
const BLOCK: u64 = 4 << 20;
/// The component and stream every backup writes.
const COMPONENT: &str = "bench/storage";
const STREAM: &str = "data.bin";

/// Drives a dr-storage repository for `scripts/bench storage`.
#[derive(Parser)]
#[command(
    name = "storage_bench",
    after_help = "backup and restore read the repository password from DRKIT_PASSWORD"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a reproducible data set: 4 MiB blocks, alternately text-like and random
    Generate {
        /// Bytes to write
        #[arg(long, value_name = "BYTES")]
        size: u64,
        /// Seed of the data
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The file to write
        path: PathBuf,
    },
    /// Overwrites a fraction of a data set in place, in regions spread evenly over it
    Mutate {
        /// The fraction to overwrite, 0 to 1
        #[arg(long, default_value_t = 0.05)]
        fraction: f64,
        /// Bytes in each region overwritten
        #[arg(long, value_name = "BYTES", default_value_t = 256 << 10)]
        region_size: u64,
        /// Seed of the new data
        #[arg(long, default_value_t = 2)]
        seed: u64,
        /// The file to change
        path: PathBuf,
    },
    /// Stores standard input as one stream, creating the repository if its directory is empty
    Backup {
        #[command(flatten)]
        repo: RepoArgs,
        /// zstd level (1 to 19) of a repository this creates
        #[arg(long, value_name = "N")]
        compression_level: Option<i32>,
        /// Pack size of a repository this creates
        #[arg(long, value_name = "BYTES")]
        pack_size: Option<u32>,
    },
    /// Writes the latest snapshot's stream to standard output
    Restore {
        #[command(flatten)]
        repo: RepoArgs,
    },
}

fn main() -> ExitCode {
    drkit_bench::main(|cli: Cli| match cli.command {
        Command::Generate { size, seed, path } => generate(&path, size, seed),
        Command::Mutate {
            fraction,
            region_size,
            seed,
            path,
        } => mutate(&path, fraction, region_size, seed),
        Command::Backup {
            repo,
            compression_level,
            pack_size,
        } => {
            let options = move |secret| {
                let mut options = InitOptions::encrypted(secret);
                if let Some(level) = compression_level {
                    options = options.compression_level(level);
                }
                if let Some(bytes) = pack_size {
                    options = options.pack_size(bytes);
                }
                options
            };
            runtime()?.block_on(backup(&repo, options))
        }
        Command::Restore { repo } => runtime()?.block_on(restore(&repo)),
    })
}

// ---------------------------------------------------------------------------
// Backup and restore

async fn backup(args: &RepoArgs, options: impl FnOnce(Secret) -> InitOptions) -> AnyResult<()> {
    let started = Instant::now();
    let repo = args.open_or_create(options).await?;

    let began = Instant::now();
    let mut writer = repo.begin(&COMPONENT.parse()?, Timestamp::now()).await?;
    // Standard input as one stream: a duplicate of its descriptor, read off the runtime.
    let mut stdin =
        tokio::fs::File::from_std(File::from(std::io::stdin().as_fd().try_clone_to_owned()?));
    let entry = writer.add_stream(&STREAM.parse()?, &mut stdin).await?;
    let stored = Instant::now();
    let manifest = writer
        .commit(SnapshotCommit::new(RecoveryPoint::new(Timestamp::now())))
        .await?;
    eprintln!(
        "read {} bytes in {:.2} s, committed snapshot {} in {:.2} s; {:.2} s in all",
        entry.size,
        stored.duration_since(began).as_secs_f64(),
        manifest.id,
        secs(stored),
        secs(started),
    );
    Ok(())
}

async fn restore(args: &RepoArgs) -> AnyResult<()> {
    let started = Instant::now();
    let repo = args.open().await?;

    let began = Instant::now();
    let component: ComponentId = COMPONENT.parse()?;
    let latest = repo.snapshots(&component).await?.pop().ok_or(format!(
        "no snapshot of {component} in {}",
        args.dir.display()
    ))?;
    let name: StreamName = STREAM.parse()?;
    let mut stream = BufReader::with_capacity(1 << 20, repo.open_stream(&latest.id, &name).await?);
    let mut stdout =
        tokio::fs::File::from_std(File::from(std::io::stdout().as_fd().try_clone_to_owned()?));
    // The stream checks its length and SHA-256 against the manifest as it ends.
    let written = tokio::io::copy_buf(&mut stream, &mut stdout).await?;
    stdout.flush().await?;
    eprintln!(
        "wrote {written} bytes of snapshot {} in {:.2} s; {:.2} s in all",
        latest.id,
        secs(began),
        secs(started),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The data set

fn generate(path: &Path, size: u64, seed: u64) -> AnyResult<()> {
    let mut file = File::create(path)?;
    let mut text = TextGen::new(seed);
    let mut random = Rng::new(seed ^ 0x5eed);
    let mut block = vec![0u8; BLOCK as usize];
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(BLOCK) as usize;
        fill(&mut block[..len], offset, &mut text, &mut random);
        file.write_all(&block[..len])?;
        offset += len as u64;
    }
    file.sync_all()?;
    Ok(())
}

/// Overwrites about `fraction` of the file in regions of `region` bytes, one
/// at a random place in each of equal slots, so the changes spread over it.
fn mutate(path: &Path, fraction: f64, region: u64, seed: u64) -> AnyResult<()> {
    if !(0.0..=1.0).contains(&fraction) || region == 0 {
        return Err("--fraction must be 0 to 1 and --region-size above 0".into());
    }
    let file = OpenOptions::new().write(true).open(path)?;
    let size = file.metadata()?.len();
    let regions = ((size as f64 * fraction) / region as f64).round() as u64;
    if regions == 0 {
        return Ok(());
    }
    let region = region.min(size / regions);
    let slot = size / regions;
    let mut text = TextGen::new(seed);
    let mut random = Rng::new(seed ^ 0x5eed);
    let mut buf = vec![0u8; region as usize];
    for i in 0..regions {
        let start = i * slot + random.below(slot - region + 1);
        // Split at block boundaries so each piece keeps its block's kind.
        let mut at = start;
        while at < start + region {
            let end = (start + region).min((at / BLOCK + 1) * BLOCK);
            let piece = &mut buf[..(end - at) as usize];
            fill(piece, at, &mut text, &mut random);
            file.write_all_at(piece, at)?;
            at = end;
        }
    }
    file.sync_all()?;
    eprintln!("overwrote {regions} regions of {region} bytes");
    Ok(())
}

/// Fills `out`, which lies within one block starting at file offset `offset`.
fn fill(out: &mut [u8], offset: u64, text: &mut TextGen, random: &mut Rng) {
    if (offset / BLOCK).is_multiple_of(2) {
        text.fill(out);
    } else {
        random.fill(out);
    }
}

/// A small seeded generator (wyrand): reproducible data without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An element of `items`, the first ones more often, as with words in text.
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let n = items.len() as u64;
        items[(self.below(n) * self.below(n) / n) as usize]
    }

    fn fill(&mut self, out: &mut [u8]) {
        for piece in out.chunks_mut(8) {
            piece.copy_from_slice(&self.next_u64().to_le_bytes()[..piece.len()]);
        }
    }
}

/// Text-like data: web server log lines, CSV rows of orders, and sentences.
/// Timestamps advance, ids and amounts vary, so it compresses the way real
/// logs and dumps do rather than like a repeated string.
struct TextGen {
    rng: Rng,
    clock_ms: i64,
    lists: Lists,
    pending: Vec<u8>,
    taken: usize,
}

/// The vocabulary of the text, each list most frequent first.
struct Lists {
    words: Vec<&'static str>,
    first: Vec<&'static str>,
    last: Vec<&'static str>,
    cities: Vec<&'static str>,
    domains: Vec<&'static str>,
    resources: Vec<&'static str>,
    methods: Vec<&'static str>,
    statuses: Vec<&'static str>,
    states: Vec<&'static str>,
}

impl Lists {
    fn new() -> Self {
        let list = |text: &'static str| text.split_whitespace().collect();
        Self {
            words: list(
                "the of and to in a is that for it as was with be by on not he this are or his \
                 from at which but have an had they you were their one all we can her has there \
                 been if more when will would who so no backup restore database replica primary \
                 storage volume snapshot cluster network latency request customer invoice payment \
                 shipment warehouse quarter revenue forecast budget meeting schedule project \
                 release version feature change review policy incident outage recovery failover \
                 region service deploy rollback monitor alert threshold capacity memory processor \
                 throughput window retention archive compliance audit report analysis market \
                 product supplier contract agreement season weather morning evening river \
                 mountain garden library museum journey harbour village kitchen orchestra \
                 festival painting novel",
            ),
            first: list(
                "Anna Ben Clara David Emma Felix Greta Hugo Ida Jonas Karin Leo Mia Noah Olga \
                 Paul Quinn Rosa Sven Tara Uma Viktor Wanda Xaver Yara Zoe Amir Bea Chen Dana \
                 Emil Fatima",
            ),
            last: list(
                "Smith Müller Garcia Kowalski Nguyen Rossi Dubois Jansen Silva Novak Berg Khan \
                 Tanaka Olsen Weber Lopez Fischer Meyer Wagner Becker Schulz Hoffmann Koch \
                 Richter Klein Wolf Schröder Neumann",
            ),
            cities: list(
                "Berlin Hamburg Munich Cologne Vienna Zurich Paris Lyon Madrid Lisbon Rome Milan \
                 Amsterdam Brussels Copenhagen Oslo Stockholm Helsinki Warsaw Prague Budapest \
                 Dublin London Edinburgh",
            ),
            domains: list(
                "example.com mail.example.org corp.example.net example.de shop.example.io",
            ),
            resources: list(
                "orders customers invoices products carts sessions payments shipments reviews \
                 accounts reports search",
            ),
            methods: list("GET GET GET POST PUT DELETE PATCH"),
            statuses: list("200 200 200 201 204 304 400 404 500"),
            states: list("paid shipped delivered pending cancelled"),
        }
    }
}

impl TextGen {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        // Somewhere in 2026.
        let clock_ms = 1_767_225_600_000 + rng.below(300 * 86_400_000) as i64;
        Self {
            rng,
            clock_ms,
            lists: Lists::new(),
            pending: Vec::new(),
            taken: 0,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            if self.taken == self.pending.len() {
                self.pending.clear();
                self.taken = 0;
                while self.pending.len() < 64 << 10 {
                    self.line();
                }
            }
            let n = (out.len() - filled).min(self.pending.len() - self.taken);
            out[filled..filled + n].copy_from_slice(&self.pending[self.taken..self.taken + n]);
            filled += n;
            self.taken += n;
        }
    }

    fn line(&mut self) {
        self.clock_ms += self.rng.below(50) as i64;
        let now = Timestamp::from_millisecond(self.clock_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let (r, l, out) = (&mut self.rng, &self.lists, &mut self.pending);
        // Writing to a Vec cannot fail.
        let _ = match r.below(10) {
            0..=4 => writeln!(
                out,
                "{now} INFO http {} /api/v1/{}/{} status={} bytes={} duration_ms={}.{} \
                 user={}.{} request_id={:08x}",
                r.pick(&l.methods),
                r.pick(&l.resources),
                r.below(1_000_000),
                r.pick(&l.statuses),
                r.below(50_000),
                r.below(400),
                r.below(10),
                r.pick(&l.first).to_lowercase(),
                r.pick(&l.last).to_lowercase(),
                r.next_u64() as u32,
            ),
            5..=7 => {
                let (first, last) = (r.pick(&l.first), r.pick(&l.last));
                writeln!(
                    out,
                    "{},{first},{last},{}.{}@{},{},{},{}.{:02},{}",
                    r.below(10_000_000),
                    first.to_lowercase(),
                    last.to_lowercase(),
                    r.pick(&l.domains),
                    r.pick(&l.cities),
                    now.strftime("%Y-%m-%d"),
                    r.below(2_000),
                    r.below(100),
                    r.pick(&l.states),
                )
            }
            _ => {
                let words = 6 + r.below(14);
                for i in 0..words {
                    let sep = if i == 0 { "" } else { " " };
                    let _ = write!(out, "{sep}{}", r.pick(&l.words));
                }
                writeln!(out, ".")
            }
        };
    }
}
