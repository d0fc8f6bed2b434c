//! `strom log dump | verify`: read segment and index files offline, without a
//! broker (stop it first for a stable picture).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::json;
use strom_storage::batch::{BatchHeader, BatchIter, Compression};

use super::output::{self, Format, OutputArg};

/// `strom log ...`
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LogCommand {
    /// Print the batches of a segment (.log) file, or the entries of an .index / .timeindex
    Dump {
        /// A segment file, e.g. data/orders-0/00000000000000000000.log
        path: PathBuf,
        /// Decode and print every record too
        #[arg(long)]
        records: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Check every segment and index under a data dir; exit 1 on any corruption
    Verify {
        /// The broker's data dir (stop the broker first)
        data_dir: PathBuf,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// Runs `strom log ...`.
pub fn run(args: LogArgs) -> anyhow::Result<()> {
    match args.command {
        LogCommand::Dump {
            path,
            records,
            output,
        } => dump(&path, records, output.output),
        LogCommand::Verify { data_dir, output } => verify(&data_dir, output.output),
    }
}

fn codec(c: Compression) -> String {
    match c {
        Compression::None => "none".into(),
        Compression::Gzip => "gzip".into(),
        Compression::Snappy => "snappy".into(),
        Compression::Lz4 => "lz4".into(),
        Compression::Zstd => "zstd".into(),
        Compression::Unknown(n) => format!("unknown({n})"),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The segment's base offset, from its `<20 digits>.<ext>` name.
fn base_offset(path: &Path) -> Option<i64> {
    let stem = path.file_stem()?.to_str()?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

fn dump(path: &Path, records: bool, format: Format) -> anyhow::Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("index") | Some("timeindex") => return dump_index(path, format),
        _ => {}
    }
    let buf = read(path)?;
    let mut batches = Vec::new();
    let mut rows = Vec::new();
    // Scan without the CRC check so a bad CRC is shown rather than a stop.
    let mut iter = BatchIter::new(&buf, false);
    for b in iter.by_ref() {
        let h = b.header;
        let bytes = &buf[b.position..b.position + h.total_size()];
        let crc_ok = strom_storage::batch::compute_crc(bytes) == h.crc;
        let recs = if records {
            Some(decode_records(bytes))
        } else {
            None
        };
        batches.push(batch_json(&h, b.position, crc_ok, recs.as_ref()));
        rows.push((b.position, h, crc_ok, recs));
    }
    let stop = iter.stop().cloned();
    match format {
        Format::Json => {
            output::print_json(&json!({
                "file": path.display().to_string(),
                "size_bytes": buf.len(),
                "batches": batches,
                "stopped": stop.as_ref().map(|s| json!({"position": s.position, "reason": s.reason.to_string()})),
            }))?;
        }
        Format::Table => {
            let mut t = output::table(&[
                "position",
                "base offset",
                "last offset",
                "count",
                "size",
                "base timestamp",
                "max timestamp",
                "codec",
                "producer",
                "crc",
            ]);
            for (pos, h, ok, recs) in &rows {
                t.add_row(vec![
                    pos.to_string(),
                    h.base_offset.to_string(),
                    h.last_offset().to_string(),
                    h.records_count.to_string(),
                    h.total_size().to_string(),
                    super::format_ms(h.base_timestamp),
                    super::format_ms(h.max_timestamp),
                    codec(h.compression()),
                    if h.producer_id >= 0 {
                        format!("{}/{}/{}", h.producer_id, h.producer_epoch, h.base_sequence)
                    } else {
                        "-".into()
                    },
                    if *ok { "ok".into() } else { "BAD".into() },
                ]);
                if let Some(Ok(recs)) = recs {
                    for r in recs {
                        t.add_row(vec![
                            String::new(),
                            r["offset"].to_string(),
                            format!("key={}", r["key"].as_str().unwrap_or("null")),
                            format!("value={}", r["value"].as_str().unwrap_or("null")),
                        ]);
                    }
                } else if let Some(Err(e)) = recs {
                    t.add_row(vec![String::new(), format!("cannot decode records: {e}")]);
                }
            }
            output::align_right(&mut t, &[0, 1, 2, 3, 4]);
            output::print_table(&t);
            println!(
                "{} batch(es), {} byte(s){}",
                rows.len(),
                buf.len(),
                stop.map(|s| format!(
                    "; stopped at byte {}: {} (the rest is not readable batches)",
                    s.position, s.reason
                ))
                .unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn batch_json(
    h: &BatchHeader,
    position: usize,
    crc_ok: bool,
    recs: Option<&Result<Vec<serde_json::Value>, String>>,
) -> serde_json::Value {
    let mut v = json!({
        "position": position,
        "base_offset": h.base_offset,
        "last_offset": h.last_offset(),
        "records_count": h.records_count,
        "size_bytes": h.total_size(),
        "base_timestamp": h.base_timestamp,
        "max_timestamp": h.max_timestamp,
        "codec": codec(h.compression()),
        "transactional": h.is_transactional(),
        "control": h.is_control(),
        "producer_id": h.producer_id,
        "producer_epoch": h.producer_epoch,
        "base_sequence": h.base_sequence,
        "crc": format!("{:#010x}", h.crc),
        "crc_ok": crc_ok,
    });
    match recs {
        Some(Ok(r)) => v["records"] = json!(r),
        Some(Err(e)) => v["records_error"] = json!(e),
        None => {}
    }
    v
}

fn decode_records(batch: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    let mut bytes = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode_with_custom_compression(
        &mut bytes,
        Some(strom_client::decompress_records),
    )
    .map_err(|e| e.to_string())?;
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    Ok(set
        .records
        .iter()
        .map(|r| {
            let headers: BTreeMap<String, Option<String>> = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), text(v)))
                .collect();
            json!({
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": text(&r.key),
                "value": text(&r.value),
                "headers": headers,
            })
        })
        .collect())
}

fn dump_index(path: &Path, format: Format) -> anyhow::Result<()> {
    let buf = read(path)?;
    let base = base_offset(path).unwrap_or(0);
    let time = path.extension().and_then(|e| e.to_str()) == Some("timeindex");
    let entry = if time { 12 } else { 8 };
    let mut entries = Vec::new();
    for e in buf.chunks_exact(entry) {
        if time {
            let ts = i64::from_be_bytes(e[..8].try_into().unwrap_or_default());
            let rel = u32::from_be_bytes(e[8..12].try_into().unwrap_or_default());
            entries.push(json!({"timestamp": ts, "offset": base + i64::from(rel)}));
        } else {
            let rel = u32::from_be_bytes(e[..4].try_into().unwrap_or_default());
            let pos = u32::from_be_bytes(e[4..8].try_into().unwrap_or_default());
            entries.push(json!({"offset": base + i64::from(rel), "position": pos}));
        }
    }
    match format {
        Format::Json => output::print_json(&json!({
            "file": path.display().to_string(),
            "entries": entries,
            "trailing_bytes": buf.len() % entry,
        })),
        Format::Table => {
            let cols: &[&str] = if time {
                &["timestamp", "offset"]
            } else {
                &["offset", "position"]
            };
            let mut t = output::table(cols);
            for e in &entries {
                t.add_row(cols.iter().map(|c| e[*c].to_string()).collect::<Vec<_>>());
            }
            output::align_right(&mut t, &[0, 1]);
            output::print_table(&t);
            println!("{} entr(ies)", entries.len());
            Ok(())
        }
    }
}

/// One thing wrong, and where.
#[derive(Debug)]
struct Problem {
    file: PathBuf,
    /// Byte position in the file.
    position: u64,
    /// The Kafka offset at (or just after) the damage, when known.
    offset: Option<i64>,
    reason: String,
}

struct Summary {
    partitions: usize,
    segments: usize,
    batches: u64,
    bytes: u64,
}

fn verify(data_dir: &Path, format: Format) -> anyhow::Result<()> {
    let mut dirs: Vec<(PathBuf, Vec<i64>)> = Vec::new();
    let entries = std::fs::read_dir(data_dir).with_context(|| {
        format!(
            "cannot read data dir {} — pass the broker's --data-dir",
            data_dir.display()
        )
    })?;
    let mut total = 0u64;
    for e in entries {
        let path = e?.path();
        if !path.is_dir() {
            continue;
        }
        let mut bases = Vec::new();
        for f in std::fs::read_dir(&path)? {
            let f = f?.path();
            if f.extension().and_then(|e| e.to_str()) == Some("log") {
                if let Some(b) = base_offset(&f) {
                    total += f.metadata().map(|m| m.len()).unwrap_or(0);
                    bases.push(b);
                }
            }
        }
        if !bases.is_empty() {
            bases.sort_unstable();
            dirs.push((path, bases));
        }
    }
    dirs.sort();
    let bar = output::progress(Some(total), "verifying");
    let mut problems = Vec::new();
    let mut summary = Summary {
        partitions: dirs.len(),
        segments: 0,
        batches: 0,
        bytes: 0,
    };
    for (dir, bases) in &dirs {
        let mut expected_next: Option<i64> = None;
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let seg = dir.join(format!("{base:020}.log"));
            let n = verify_segment(&seg, base, last, &mut expected_next, &mut problems)?;
            summary.segments += 1;
            summary.batches += n.0;
            summary.bytes += n.1;
            bar.inc(n.1);
        }
    }
    bar.finish_and_clear();
    let ok = problems.is_empty();
    match format {
        Format::Json => {
            let v: Vec<_> = problems
                .iter()
                .map(|p| {
                    json!({"file": p.file.display().to_string(), "position": p.position,
                           "offset": p.offset, "reason": p.reason})
                })
                .collect();
            output::print_json(&json!({
                "ok": ok,
                "partitions": summary.partitions,
                "segments": summary.segments,
                "batches": summary.batches,
                "bytes": summary.bytes,
                "problems": v,
            }))?;
        }
        Format::Table => {
            for p in &problems {
                println!(
                    "CORRUPT {} at byte {}{}: {}",
                    p.file.display(),
                    p.position,
                    p.offset
                        .map(|o| format!(" (offset {o})"))
                        .unwrap_or_default(),
                    p.reason
                );
            }
            println!(
                "checked {} partition(s), {} segment(s), {} batch(es), {}: {}",
                summary.partitions,
                summary.segments,
                summary.batches,
                bytesize::ByteSize::b(summary.bytes),
                if ok {
                    "ok".to_string()
                } else {
                    format!("{} problem(s)", problems.len())
                }
            );
        }
    }
    if ok {
        Ok(())
    } else {
        anyhow::bail!(
            "{} problem(s) found under {} — the broker truncates a damaged active segment on \
             recovery, but damage in a sealed segment means lost records: restore that partition \
             from a replica or backup",
            problems.len(),
            data_dir.display()
        )
    }
}

/// Checks one segment and its indexes; returns (batches, bytes).
fn verify_segment(
    seg: &Path,
    base: i64,
    active: bool,
    expected_next: &mut Option<i64>,
    problems: &mut Vec<Problem>,
) -> anyhow::Result<(u64, u64)> {
    let buf = read(seg)?;
    let mut problem = |file: &Path, position: u64, offset: Option<i64>, reason: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            position,
            offset,
            reason,
        })
    };
    if let Some(next) = *expected_next {
        if base < next {
            problem(
                seg,
                0,
                Some(base),
                format!("segment starts at offset {base}, below the previous segment's end {next}"),
            );
        }
    }
    // position -> (base offset, max timestamp so far)
    let mut batches: BTreeMap<u64, i64> = BTreeMap::new();
    let mut max_ts = i64::MIN;
    let mut next = base;
    let mut iter = BatchIter::new(&buf, true);
    for b in iter.by_ref() {
        let h = b.header;
        if h.base_offset < next {
            problem(
                seg,
                b.position as u64,
                Some(h.base_offset),
                format!(
                    "batch at offset {} overlaps the previous one (expected >= {next})",
                    h.base_offset
                ),
            );
        }
        if h.last_offset() - base > i64::from(u32::MAX) {
            problem(
                seg,
                b.position as u64,
                Some(h.base_offset),
                "offset too far from the segment base for the index".into(),
            );
        }
        batches.insert(b.position as u64, h.base_offset);
        max_ts = max_ts.max(h.max_timestamp);
        next = h.next_offset();
    }
    let count = batches.len() as u64;
    if let Some(stop) = iter.stop() {
        // The damaged batch's own offset if its header still reads, else the next expected.
        let offset = BatchHeader::parse(&buf[stop.position..])
            .ok()
            .map(|h| h.base_offset)
            .filter(|&o| o >= next && o - next < 1 << 31)
            .unwrap_or(next);
        problem(
            seg,
            stop.position as u64,
            Some(offset),
            format!(
                "{} (last good offset {}{})",
                stop.reason,
                next - 1,
                if active {
                    "; in the active segment: a torn write the broker would truncate"
                } else {
                    "; in a sealed segment"
                }
            ),
        );
    }
    *expected_next = Some(next);

    // .index: strictly increasing; each entry names a batch boundary and its offset.
    let index = seg.with_extension("index");
    if let Ok(ibuf) = std::fs::read(&index) {
        if ibuf.len() % 8 != 0 {
            problem(
                &index,
                (ibuf.len() - ibuf.len() % 8) as u64,
                None,
                format!("size {} is not a multiple of 8", ibuf.len()),
            );
        }
        let mut prev: Option<(u32, u32)> = None;
        for (i, e) in ibuf.chunks_exact(8).enumerate() {
            let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            if i > 0 && rel == 0 && pos == 0 {
                // Preallocated, unused space (an active segment after a crash).
                if ibuf[i * 8..].iter().all(|&b| b == 0) {
                    break;
                }
            }
            let at = (i * 8) as u64;
            let offset = base + i64::from(rel);
            if prev.is_some_and(|(r, p)| rel <= r || pos <= p) {
                problem(
                    &index,
                    at,
                    Some(offset),
                    format!("entry {i} ({offset} @ {pos}) does not increase"),
                );
            } else {
                match batches.get(&u64::from(pos)) {
                    Some(&o) if o == offset => {}
                    Some(&o) => problem(&index, at, Some(offset), format!("entry {i} says offset {offset} is at byte {pos}, but the batch there starts at {o}")),
                    None => problem(&index, at, Some(offset), format!("entry {i} points at byte {pos}, which is not the start of a readable batch")),
                }
            }
            prev = Some((rel, pos));
        }
    }

    // .timeindex: timestamps and offsets increase; offsets inside the segment.
    let tindex = seg.with_extension("timeindex");
    if let Ok(tbuf) = std::fs::read(&tindex) {
        if tbuf.len() % 12 != 0 {
            problem(
                &tindex,
                (tbuf.len() - tbuf.len() % 12) as u64,
                None,
                format!("size {} is not a multiple of 12", tbuf.len()),
            );
        }
        let mut prev: Option<(i64, u32)> = None;
        for (i, e) in tbuf.chunks_exact(12).enumerate() {
            if tbuf[i * 12..].iter().all(|&b| b == 0) && i > 0 {
                break;
            }
            let ts = i64::from_be_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let rel = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let at = (i * 12) as u64;
            let offset = base + i64::from(rel);
            if prev.is_some_and(|(t, r)| ts < t || rel < r) {
                problem(
                    &tindex,
                    at,
                    Some(offset),
                    format!("entry {i} ({ts} -> {offset}) goes backwards"),
                );
            } else if offset >= next.max(base + 1) {
                problem(
                    &tindex,
                    at,
                    Some(offset),
                    format!("entry {i} names offset {offset}, past the segment's end {next}"),
                );
            } else if ts > max_ts && count > 0 {
                problem(
                    &tindex,
                    at,
                    Some(offset),
                    format!("entry {i} timestamp {ts} is above the segment's largest {max_ts}"),
                );
            }
            prev = Some((ts, rel));
        }
    }
    Ok((count, buf.len() as u64))
}
