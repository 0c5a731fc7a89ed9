//! A compact binary image of an engine: every held record (open, and closed
//! ones kept for duplicate detection) with its timer, fired alerts and
//! event-id hashes, the counters behind the report and the metrics, and the
//! clock. [`Engine::restore`] rebuilds an engine that behaves exactly as the
//! one imaged: same alerts, same report, for whatever events follow.
//!
//! Size is the point (a province's open records, every few minutes, in Kafka):
//! records are written in slot order with each id coded against the previous
//! one (shared prefix), units and times as varints relative to the record's
//! receipt, whole seconds in one bit less, absent instants not at all, an
//! armed timer as which of the record's instants it is — about 35–50 bytes a
//! record, of which 5 per remembered event id (40-bit hashes). Version 1
//! images (8-byte hashes) are still restored.
//!
//! Ids (units, sectors, procedures) are written as codes and mapped onto the
//! restoring configuration's directory, as a reload does, so a snapshot taken
//! under one configuration restores under the next. The image ends with a
//! checksum: a torn or altered image is refused, never half-applied.

use super::store::{flag, Life, Record};
use super::{Counts, Engine, Settings, Usage};
use crate::time::{Instant, SECOND};

/// Version 2: timers named by the instant they equal, 40-bit event-id hashes.
const MAGIC: &[u8; 4] = b"OVS\x02";
/// Version 1 (8-byte hashes, timers as deltas) is still read.
const MAGIC_V1: &[u8; 4] = b"OVS\x01";
/// Bytes per event-id hash in version 2 ([`super::EVENT_HASH_MASK`]).
const HASH_BYTES: usize = 5;

/// Why an image cannot be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// It does not start like an image of this format.
    #[error("not an engine snapshot (unknown header)")]
    Header,
    /// It ends before its content does.
    #[error("the snapshot is truncated")]
    Truncated,
    /// The checksum does not match: torn or altered.
    #[error("the snapshot's checksum does not match (torn or altered)")]
    Checksum,
    /// A value out of range.
    #[error("the snapshot is corrupt: {0}")]
    Corrupt(&'static str),
}

// Presence bits of a record (one byte): what is not the common value.
const HAS_HANG: u8 = 1;
const HAS_DUE_SOON: u8 = 1 << 1;
const ARMED: u8 = 1 << 2;
const ORIG_DUE: u8 = 1 << 3;
const DUE_HOLDER: u8 = 1 << 4;
const RECV_UNIT: u8 = 1 << 5;
const BASE_SECS: u8 = 1 << 6;
const PROCEDURE: u8 = 1 << 7;

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// A time difference: whole seconds (the common case) cost one bit, not the
/// 20 of their microseconds.
fn put_delta(out: &mut Vec<u8>, d: i64) {
    put(out, delta_code(d));
}

fn delta_code(d: i64) -> u64 {
    if d % SECOND == 0 {
        zigzag(d / SECOND) << 1 | 1
    } else {
        zigzag(d) << 1
    }
}

fn delta_of(v: u64) -> Result<i64, SnapshotError> {
    let z = unzigzag(v >> 1);
    Ok(if v & 1 == 1 {
        z.checked_mul(SECOND)
            .ok_or(SnapshotError::Corrupt("time out of range"))?
    } else {
        z
    })
}

// An armed timer is almost always one of the record's own instants: written
// as which one (one byte), or else as 3 + its delta from the receipt.
const TIMER_AT_HANG: u64 = 0;
const TIMER_AT_DUE_SOON: u64 = 1;
const TIMER_AT_DUE: u64 = 2;
const TIMER_DELTA: u64 = 3;

fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_counts(out: &mut Vec<u8>, c: &Counts) {
    for v in [
        c.received,
        c.early,
        c.on_time,
        c.late,
        c.in_progress_within,
        c.in_progress_overdue,
        c.paused,
        c.rejected,
        c.withdrawn,
    ] {
        put(out, v);
    }
}

fn put_usage(out: &mut Vec<u8>, u: &Usage) {
    for v in [
        u.late_held,
        u.extensions,
        u.extensions_after_due,
        u.late_supplement_requests,
        u.repeated_pauses,
    ] {
        put(out, v);
    }
}

fn put_array(out: &mut Vec<u8>, a: &[u64]) {
    put(out, a.len() as u64);
    for &v in a {
        put(out, v);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn get(&mut self) -> Result<u64, SnapshotError> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos).ok_or(SnapshotError::Truncated)?;
            self.pos += 1;
            if shift > 63 {
                return Err(SnapshotError::Corrupt("varint too long"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn get_u32(&mut self) -> Result<u32, SnapshotError> {
        u32::try_from(self.get()?).map_err(|_| SnapshotError::Corrupt("id out of range"))
    }

    #[inline]
    fn delta(&mut self) -> Result<i64, SnapshotError> {
        delta_of(self.get()?)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.pos.checked_add(n).ok_or(SnapshotError::Truncated)?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or(SnapshotError::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    fn str(&mut self) -> Result<&'a str, SnapshotError> {
        let n = self.get()? as usize;
        std::str::from_utf8(self.bytes(n)?)
            .map_err(|_| SnapshotError::Corrupt("a code is not UTF-8"))
    }

    fn counts(&mut self) -> Result<Counts, SnapshotError> {
        Ok(Counts {
            received: self.get()?,
            early: self.get()?,
            on_time: self.get()?,
            late: self.get()?,
            in_progress_within: self.get()?,
            in_progress_overdue: self.get()?,
            paused: self.get()?,
            rejected: self.get()?,
            withdrawn: self.get()?,
        })
    }

    fn usage(&mut self) -> Result<Usage, SnapshotError> {
        Ok(Usage {
            late_held: self.get()?,
            extensions: self.get()?,
            extensions_after_due: self.get()?,
            late_supplement_requests: self.get()?,
            repeated_pauses: self.get()?,
        })
    }

    /// An array written by [`put_array`] into `into` (extra values of a newer
    /// writer are dropped, missing ones stay zero).
    fn array(&mut self, into: &mut [u64]) -> Result<(), SnapshotError> {
        let n = self.get()? as usize;
        for i in 0..n {
            let v = self.get()?;
            if let Some(x) = into.get_mut(i) {
                *x = v;
            }
        }
        Ok(())
    }

    fn len(&mut self) -> Result<usize, SnapshotError> {
        let n = self.get()? as usize;
        // every element takes at least a byte: a larger count is corrupt, and
        // must not reserve memory
        if n > self.buf.len() - self.pos {
            return Err(SnapshotError::Truncated);
        }
        Ok(n)
    }
}

fn checksum(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

impl Engine {
    /// Appends the engine's image to `out` (see the module doc).
    pub fn snapshot(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        put(out, zigzag(self.clock));
        put(out, self.wheel.elapsed());
        let s = &self.stats;
        put_array(out, &s.events);
        put_array(out, &s.rejected);
        put_array(out, &s.ignored);
        put_array(out, &s.alerts);
        put(out, s.fires);
        let d = &self.dir;
        put(out, d.unit_names.len() as u64);
        for i in 0..d.unit_names.len() as u32 {
            put_str(out, d.unit_names.name(i));
        }
        put(out, d.sectors.len() as u64);
        for i in 0..d.sectors.len() as u32 {
            put_str(out, d.sectors.name(i));
        }
        put(out, d.procedures.len() as u64);
        for p in &d.procedures {
            put_str(out, &p.code);
        }
        // up to the last non-zero entry: the vectors grow lazily, their length
        // is not state
        let used = |n: Option<usize>| n.map_or(0, |i| i + 1);
        let by_unit = &self.by_unit[..used(self.by_unit.iter().rposition(|c| !c.is_empty()))];
        put(out, by_unit.len() as u64);
        for c in by_unit {
            put_counts(out, c);
        }
        let usage = &self.usage[..used(self.usage.iter().rposition(|c| !c.is_empty()))];
        put(out, usage.len() as u64);
        for u in usage {
            put_usage(out, u);
        }
        let by_sector = &self.by_sector[..used(self.by_sector.iter().rposition(|c| !c.is_empty()))];
        put(out, by_sector.len() as u64);
        for c in by_sector {
            put_counts(out, c);
        }
        // maps in key order: the same state gives the same image
        for m in [&self.received_by, &self.judged_by] {
            put(out, m.len() as u64);
            let mut v: Vec<_> = m.iter().collect();
            v.sort_unstable_by_key(|e| e.0);
            for (&(u, s, c), &n) in v {
                put(out, u.into());
                put(out, s.into());
                put(out, c.into());
                put(out, n);
            }
        }
        put(out, self.monthly.len() as u64);
        let mut v: Vec<_> = self.monthly.iter().collect();
        v.sort_unstable_by_key(|e| e.0);
        for (&(m, u, s), c) in v {
            put(out, zigzag(m.into()));
            put(out, u.into());
            put(out, s.into());
            put_counts(out, c);
        }
        put(out, self.store.len() as u64);
        // In id order: a province's ids share long prefixes (office, date)
        // with their neighbours there, not with their slot neighbours (about
        // 10 bytes a record on the demo province). Nothing else depends on
        // slot order (timers fire in (time, record id, kind) order).
        let mut slots: Vec<u32> = self
            .store
            .slots()
            .filter(|&s| self.store.get(s).life() != Life::Free)
            .collect();
        slots.sort_unstable_by(|&a, &b| self.store.id_bytes(a).cmp(self.store.id_bytes(b)));
        let mut prev_id: &[u8] = b"";
        let mut prev_recv = 0i64;
        for slot in slots {
            let r = self.store.get(slot);
            let id = self.store.id_bytes(slot);
            let shared = id.iter().zip(prev_id).take_while(|(a, b)| a == b).count();
            put(out, shared as u64);
            put(out, (id.len() - shared) as u64);
            out.extend_from_slice(&id[shared..]);
            prev_id = id;
            let armed = r.node.loc != super::wheel::NOWHERE;
            let mut bits = 0u8;
            let mut set = |b: u8, on: bool| {
                if on {
                    bits |= b
                }
            };
            set(HAS_HANG, r.hang_at != i64::MAX);
            set(HAS_DUE_SOON, r.due_soon_at != i64::MAX);
            set(ARMED, armed);
            set(ORIG_DUE, r.orig_due != r.due);
            set(DUE_HOLDER, r.due_holder != r.holder);
            set(RECV_UNIT, r.recv_unit != r.holder);
            set(BASE_SECS, r.base_secs != 0);
            set(PROCEDURE, r.procedure != u32::MAX);
            out.push(bits);
            put(out, r.flags().into());
            put(out, r.sector().into());
            put(out, r.holder.into());
            if bits & RECV_UNIT != 0 {
                put(out, r.recv_unit.into());
            }
            if bits & DUE_HOLDER != 0 {
                put(out, r.due_holder.into());
            }
            if bits & PROCEDURE != 0 {
                put(out, r.procedure.into());
            }
            if bits & BASE_SECS != 0 {
                put(out, r.base_secs.into());
            }
            put_delta(out, r.received_at.wrapping_sub(prev_recv));
            prev_recv = r.received_at;
            put_delta(out, r.due.wrapping_sub(r.received_at));
            if bits & ORIG_DUE != 0 {
                put_delta(out, r.orig_due.wrapping_sub(r.due));
            }
            if bits & HAS_HANG != 0 {
                put_delta(out, r.hang_at.wrapping_sub(r.received_at));
            }
            if bits & HAS_DUE_SOON != 0 {
                put_delta(out, r.due_soon_at.wrapping_sub(r.received_at));
            }
            if armed {
                let t = r.node.at;
                put(
                    out,
                    if t == r.hang_at {
                        TIMER_AT_HANG
                    } else if t == r.due_soon_at {
                        TIMER_AT_DUE_SOON
                    } else if t == r.due {
                        TIMER_AT_DUE
                    } else {
                        TIMER_DELTA + delta_code(t.wrapping_sub(r.received_at))
                    },
                );
            }
            let n = r.event_count();
            put(out, n as u64);
            let hashes = r.ev.iter().chain(r.ev_more.iter().flat_map(|v| v.iter()));
            for &h in hashes.filter(|&&h| h != 0) {
                out.extend_from_slice(&h.to_le_bytes()[..HASH_BYTES]);
            }
        }
        let sum = checksum(&out[start..]);
        out.extend_from_slice(&sum.to_le_bytes());
    }

    /// An engine over `cfg` holding what `image` holds (see the module doc).
    pub fn restore(cfg: &Settings, image: &[u8]) -> Result<Engine, SnapshotError> {
        if image.len() < MAGIC.len() + 8 {
            return Err(SnapshotError::Truncated);
        }
        let v1 = match &image[..MAGIC.len()] {
            m if m == MAGIC => false,
            m if m == MAGIC_V1 => true,
            _ => return Err(SnapshotError::Header),
        };
        let hash_bytes = if v1 { 8 } else { HASH_BYTES };
        let (body, sum) = image.split_at(image.len() - 8);
        if checksum(body).to_le_bytes() != sum {
            return Err(SnapshotError::Checksum);
        }
        let mut r = Reader {
            buf: body,
            pos: MAGIC.len(),
        };
        let mut e = Engine::new(cfg);
        e.clock = unzigzag(r.get()?);
        let elapsed = r.get()?;
        r.array(&mut e.stats.events)?;
        r.array(&mut e.stats.rejected)?;
        r.array(&mut e.stats.ignored)?;
        r.array(&mut e.stats.alerts)?;
        e.stats.fires = r.get()?;
        // codes → this configuration's ids
        let n = r.len()?;
        let mut units = Vec::with_capacity(n);
        for _ in 0..n {
            let code = r.str()?;
            units.push(e.unit_of(code));
        }
        let n = r.len()?;
        let mut sectors = Vec::with_capacity(n);
        for _ in 0..n {
            let code = r.str()?;
            sectors.push(e.sector_of(code));
        }
        let n = r.len()?;
        let mut procs = Vec::with_capacity(n);
        for _ in 0..n {
            let code = r.str()?;
            procs.push(e.dir.procedure_ids.get(code).copied().unwrap_or(u32::MAX));
        }
        let unit = |i: u64| -> Result<u32, SnapshotError> {
            units
                .get(i as usize)
                .copied()
                .ok_or(SnapshotError::Corrupt("unknown unit id"))
        };
        let sector = |i: u64| -> Result<u32, SnapshotError> {
            sectors
                .get(i as usize)
                .copied()
                .ok_or(SnapshotError::Corrupt("unknown sector id"))
        };
        for i in 0..r.len()? {
            let c = r.counts()?;
            e.by_unit[unit(i as u64)? as usize].add(&c);
        }
        for i in 0..r.len()? {
            let u = r.usage()?;
            e.usage[unit(i as u64)? as usize].add(&u);
        }
        for i in 0..r.len()? {
            let c = r.counts()?;
            e.by_sector[sector(i as u64)? as usize].add(&c);
        }
        for m in [&mut e.received_by, &mut e.judged_by] {
            for _ in 0..r.len()? {
                let (u, s) = (unit(r.get()?)?, sector(r.get()?)?);
                let c = u8::try_from(r.get()?).map_err(|_| SnapshotError::Corrupt("class"))?;
                *m.entry((u, s, c)).or_default() += r.get()?;
            }
        }
        for _ in 0..r.len()? {
            let m = i32::try_from(unzigzag(r.get()?))
                .map_err(|_| SnapshotError::Corrupt("month out of range"))?;
            let (u, s) = (unit(r.get()?)?, sector(r.get()?)?);
            let c = r.counts()?;
            e.monthly.entry((m, u, s)).or_default().add(&c);
        }
        let n = r.len()?;
        e.store.reserve(n);
        e.wheel.set_elapsed(elapsed);
        let mut id: Vec<u8> = Vec::with_capacity(64);
        let mut prev_recv = 0i64;
        let mut open = 0;
        for _ in 0..n {
            let shared = r.get()? as usize;
            let more = r.get()? as usize;
            if shared > id.len() || shared + more > 255 {
                return Err(SnapshotError::Corrupt("record id"));
            }
            id.truncate(shared);
            id.extend_from_slice(r.bytes(more)?);
            let bits = *r.bytes(1)?.first().unwrap_or(&0);
            let flags =
                u16::try_from(r.get()?).map_err(|_| SnapshotError::Corrupt("record flags"))?;
            let sec = sector(r.get()?)?;
            let holder = unit(r.get()?)?;
            let recv_unit = if bits & RECV_UNIT != 0 {
                unit(r.get()?)?
            } else {
                holder
            };
            let due_holder = if bits & DUE_HOLDER != 0 {
                unit(r.get()?)?
            } else {
                holder
            };
            let procedure = if bits & PROCEDURE != 0 {
                let p = r.get()? as usize;
                *procs.get(p).ok_or(SnapshotError::Corrupt("procedure id"))?
            } else {
                u32::MAX
            };
            let base_secs = if bits & BASE_SECS != 0 {
                r.get_u32()?
            } else {
                0
            };
            let received_at = prev_recv.wrapping_add(r.delta()?);
            prev_recv = received_at;
            let due = received_at.wrapping_add(r.delta()?);
            let orig_due = if bits & ORIG_DUE != 0 {
                due.wrapping_add(r.delta()?)
            } else {
                due
            };
            let mut at = |on: u8| -> Result<Instant, SnapshotError> {
                Ok(if bits & on != 0 {
                    received_at.wrapping_add(r.delta()?)
                } else {
                    i64::MAX
                })
            };
            let hang_at = at(HAS_HANG)?;
            let due_soon_at = at(HAS_DUE_SOON)?;
            let timer = if v1 {
                at(ARMED)?
            } else if bits & ARMED != 0 {
                match r.get()? {
                    TIMER_AT_HANG => hang_at,
                    TIMER_AT_DUE_SOON => due_soon_at,
                    TIMER_AT_DUE => due,
                    v => received_at.wrapping_add(delta_of(v - TIMER_DELTA)?),
                }
            } else {
                i64::MAX
            };
            let events = r.get()? as usize;
            let hashes = r.bytes(
                events
                    .checked_mul(hash_bytes)
                    .ok_or(SnapshotError::Truncated)?,
            )?;
            let mut rec = Record::default();
            rec.due = due;
            rec.orig_due = orig_due;
            rec.received_at = received_at;
            rec.hang_at = hang_at;
            rec.due_soon_at = due_soon_at;
            rec.holder = holder;
            rec.recv_unit = recv_unit;
            rec.procedure = procedure;
            rec.base_secs = base_secs;
            rec.due_holder = due_holder;
            rec.node.aux16 = flags;
            rec.set_sector(sec);
            for h in hashes.chunks_exact(hash_bytes) {
                let mut b = [0u8; 8];
                b[..hash_bytes].copy_from_slice(h);
                // a version 1 hash is cut to the width the engine now keeps
                rec.add_event((u64::from_le_bytes(b) & super::EVENT_HASH_MASK).max(1));
            }
            match rec.life() {
                Life::Free => return Err(SnapshotError::Corrupt("a free slot")),
                Life::Open => open += 1,
                Life::Closed => {}
            }
            if bits & PROCEDURE != 0 && procedure == u32::MAX && flags & flag::FROM_DUE_AT == 0 {
                // its procedure left the catalogue: keep its due time as a
                // reload would (a supplement restart counts from it)
                let cal = e.cal(recv_unit);
                rec.base_secs = (cal.working_between(received_at, orig_due) / SECOND)
                    .clamp(0, u32::MAX as i64) as u32;
                rec.set(flag::FROM_DUE_AT, true);
            }
            // no lookup for duplicates: the writer writes each held id once and
            // the checksum vouches for the rest (a lookup would double the cost)
            let id = std::str::from_utf8(&id).map_err(|_| SnapshotError::Corrupt("record id"))?;
            let slot = e.store.insert(id, rec);
            if bits & ARMED != 0 {
                e.wheel.arm(&mut e.store, slot, timer);
            }
        }
        if r.pos != body.len() {
            return Err(SnapshotError::Corrupt("trailing bytes"));
        }
        e.open = open;
        Ok(e)
    }
}
