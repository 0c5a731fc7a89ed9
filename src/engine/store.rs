//! Compact record storage: a chunked slab of fixed-size records plus an index from
//! record id to slot.
//!
//! Memory per open record is the product's main cost at province scale, so:
//! * records live in 64 Ki-record chunks (no 2× over-allocation when a `Vec`
//!   doubles, no move of 10 M records on growth);
//! * the index is a `hashbrown::HashTable<u32>` of slots (5 bytes a bucket), the
//!   key being read from the record itself;
//! * record ids of up to [`ID_INLINE`] bytes are stored inline; longer ones (the
//!   spec allows 64 characters) go to a side map.
//!
//! Freed slots are recycled, but only after [`Store::recycle`] is called: alert
//! transitions name records by slot, and a slot must not change owner before the
//! caller has read them.

use crate::engine::wheel::{Node, Nodes};
use crate::time::Instant;
use hashbrown::HashTable;
use std::collections::HashMap;

/// Longest record id stored inline, in bytes.
pub const ID_INLINE: usize = 25;
const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;
const LONG: u8 = u8::MAX;

/// Lifecycle of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Unused.
    Free = 0,
    /// An open record.
    Open = 1,
    /// A closed record kept for `closed_retention` (duplicate detection).
    Closed = 2,
}

/// Flag bits of [`Record::flags`].
pub mod flag {
    /// Lifecycle (2 bits, see [`super::Life`]).
    pub const LIFE: u16 = 0b11;
    /// The clock is stopped.
    pub const PAUSED: u16 = 1 << 2;
    /// Pause reason (2 bits, index of `PauseReason`).
    pub const REASON_SHIFT: u16 = 3;
    /// Mask of the pause reason.
    pub const REASON: u16 = 0b11 << REASON_SHIFT;
    /// Firing alert bits start here (one bit per `AlertKind`, 4 bits).
    pub const FIRING_SHIFT: u16 = 5;
    /// Mask of the firing bits.
    pub const FIRING: u16 = 0b1111 << FIRING_SHIFT;
    /// The due time came from `due_at` (restart uses the stored working time).
    pub const FROM_DUE_AT: u16 = 1 << 9;
    /// Channel (2 bits, index of `Channel`).
    pub const CHANNEL_SHIFT: u16 = 10;
    /// Mask of the channel.
    pub const CHANNEL: u16 = 0b11 << CHANNEL_SHIFT;
    /// A `paused` event has paused the record before.
    pub const PAUSED_BEFORE: u16 = 1 << 12;
    /// Counted in `repeated_pauses` (once per record).
    pub const REPEAT_COUNTED: u16 = 1 << 13;
}

/// One record's state. 136 bytes.
#[derive(Debug, Clone)]
pub struct Record {
    /// The timer node; `aux16` holds the [`flag`] bits, `aux32` the sector id.
    pub node: Node,
    /// Current due time.
    pub due: Instant,
    /// Due time before any `extended`, after pause adjustments (for judging).
    pub orig_due: Instant,
    /// Receipt time.
    pub received_at: Instant,
    /// Pending `hanging` instant (`i64::MAX` = none).
    pub hang_at: Instant,
    /// Pending `due_soon` instant (`i64::MAX` = none); while paused: the pause start.
    pub due_soon_at: Instant,
    /// First two event-id hashes (0 = empty).
    pub ev: [u64; 2],
    /// Further event-id hashes. Boxed on purpose: 8 bytes in every record
    /// instead of a 24-byte `Vec`, for the rare record with more than two events
    /// kept (bytes per open record is a benchmark target, BENCHMARKS.md).
    #[allow(clippy::box_collection)]
    pub ev_more: Option<Box<Vec<u64>>>,
    /// Unit holding the record.
    pub holder: u32,
    /// Unit that received it (report attribution).
    pub recv_unit: u32,
    /// Procedure id (`u32::MAX` = not in the catalogue).
    pub procedure: u32,
    /// For `due_at` records: working seconds between receipt and the first `due_at`.
    pub base_secs: u32,
    /// The unit holding the record when its original due time passed (the
    /// holder now while it has not): who let a late record go late.
    pub due_holder: u32,
    id: [u8; ID_INLINE + 1],
}

impl Default for Record {
    fn default() -> Self {
        Record {
            node: Node::default(),
            due: 0,
            orig_due: 0,
            received_at: 0,
            hang_at: i64::MAX,
            due_soon_at: i64::MAX,
            ev: [0; 2],
            ev_more: None,
            holder: 0,
            recv_unit: 0,
            procedure: u32::MAX,
            base_secs: 0,
            due_holder: 0,
            id: [0; ID_INLINE + 1],
        }
    }
}

impl Record {
    /// The flag bits.
    #[inline]
    pub fn flags(&self) -> u16 {
        self.node.aux16
    }
    /// Sets flag bits.
    #[inline]
    pub fn set(&mut self, bits: u16, on: bool) {
        if on {
            self.node.aux16 |= bits
        } else {
            self.node.aux16 &= !bits
        }
    }
    /// Replaces the bits under `mask` with `value << shift`.
    #[inline]
    pub fn set_field(&mut self, mask: u16, shift: u16, value: u16) {
        self.node.aux16 = (self.node.aux16 & !mask) | ((value << shift) & mask);
    }
    /// The bits under `mask`, shifted down.
    #[inline]
    pub fn field(&self, mask: u16, shift: u16) -> u16 {
        (self.node.aux16 & mask) >> shift
    }
    /// Lifecycle.
    #[inline]
    pub fn life(&self) -> Life {
        match self.node.aux16 & flag::LIFE {
            1 => Life::Open,
            2 => Life::Closed,
            _ => Life::Free,
        }
    }
    /// Sets the lifecycle.
    #[inline]
    pub fn set_life(&mut self, l: Life) {
        self.set_field(flag::LIFE, 0, l as u16);
    }
    /// Whether open and not paused.
    #[inline]
    pub fn running(&self) -> bool {
        self.life() == Life::Open && self.flags() & flag::PAUSED == 0
    }
    /// Sector id.
    #[inline]
    pub fn sector(&self) -> u32 {
        self.node.aux32
    }
    /// Sets the sector id.
    #[inline]
    pub fn set_sector(&mut self, s: u32) {
        self.node.aux32 = s;
    }
    /// Whether event-id hash `h` was seen.
    pub fn has_event(&self, h: u64) -> bool {
        self.ev[0] == h || self.ev[1] == h || self.ev_more.as_ref().is_some_and(|v| v.contains(&h))
    }
    /// Remembers event-id hash `h` (non-zero).
    pub fn add_event(&mut self, h: u64) {
        if self.ev[0] == 0 {
            self.ev[0] = h;
        } else if self.ev[1] == 0 {
            self.ev[1] = h;
        } else {
            self.ev_more.get_or_insert_with(Default::default).push(h);
        }
    }
    /// Number of event ids remembered.
    pub fn event_count(&self) -> usize {
        (self.ev[0] != 0) as usize
            + (self.ev[1] != 0) as usize
            + self.ev_more.as_ref().map_or(0, |v| v.len())
    }
}

/// Hashes a record id for the index.
#[inline]
pub fn hash_id(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), 0x6f76_6572_6475_6564)
}

/// The slab and the index.
#[derive(Default)]
pub struct Store {
    chunks: Vec<Vec<Record>>,
    free: Vec<u32>,
    pending_free: Vec<u32>,
    long_ids: HashMap<u32, Box<str>>,
    index: HashTable<u32>,
    live: usize,
}

impl Nodes for Store {
    #[inline]
    fn node(&mut self, i: u32) -> &mut Node {
        &mut self.get_mut(i).node
    }
}

impl Store {
    /// The record in slot `s`.
    #[inline]
    pub fn get(&self, s: u32) -> &Record {
        &self.chunks[(s >> CHUNK_BITS) as usize][s as usize & (CHUNK - 1)]
    }

    /// The record in slot `s`, mutably.
    #[inline]
    pub fn get_mut(&mut self, s: u32) -> &mut Record {
        &mut self.chunks[(s >> CHUNK_BITS) as usize][s as usize & (CHUNK - 1)]
    }

    /// The id of the record in slot `s`.
    #[inline]
    pub fn id(&self, s: u32) -> &str {
        let r = self.get(s);
        if r.id[0] == LONG {
            return self.long_ids.get(&s).map(|b| &**b).unwrap_or("");
        }
        std::str::from_utf8(&r.id[1..1 + r.id[0] as usize]).unwrap_or("")
    }

    /// The id of the record in slot `s`, as bytes (no UTF-8 check: for ordering).
    #[inline]
    pub fn id_bytes(&self, s: u32) -> &[u8] {
        let r = self.get(s);
        if r.id[0] == LONG {
            return self.long_ids.get(&s).map(|b| b.as_bytes()).unwrap_or(b"");
        }
        &r.id[1..1 + r.id[0] as usize]
    }

    /// Slot of the record with this id (open or closed).
    #[inline]
    pub fn find(&self, id: &str) -> Option<u32> {
        let h = hash_id(id);
        self.index.find(h, |&s| self.id(s) == id).copied()
    }

    /// Allocates a slot for a new record with this id, indexed.
    pub fn insert(&mut self, id: &str, rec: Record) -> u32 {
        let s = match self.free.pop() {
            Some(s) => {
                *self.get_mut(s) = rec;
                s
            }
            None => {
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let n = self.chunks.len() - 1;
                let chunk = &mut self.chunks[n];
                chunk.push(rec);
                ((n << CHUNK_BITS) | (chunk.len() - 1)) as u32
            }
        };
        let r = self.get_mut(s);
        if id.len() <= ID_INLINE {
            r.id[0] = id.len() as u8;
            r.id[1..1 + id.len()].copy_from_slice(id.as_bytes());
        } else {
            r.id[0] = LONG;
            self.long_ids.insert(s, id.into());
        }
        let h = hash_id(id);
        let Store {
            index,
            chunks,
            long_ids,
            ..
        } = self;
        index.insert_unique(h, s, |&x| {
            let r = &chunks[(x >> CHUNK_BITS) as usize][x as usize & (CHUNK - 1)];
            if r.id[0] == LONG {
                hash_id(long_ids.get(&x).map(|b| &**b).unwrap_or(""))
            } else {
                hash_id(std::str::from_utf8(&r.id[1..1 + r.id[0] as usize]).unwrap_or(""))
            }
        });
        self.live += 1;
        s
    }

    /// Removes slot `s` from the index and frees it (reusable after [`Self::recycle`]).
    pub fn remove(&mut self, s: u32) {
        let h = hash_id(self.id(s));
        if let Ok(e) = self.index.find_entry(h, |&x| x == s) {
            e.remove();
        }
        self.long_ids.remove(&s);
        let r = self.get_mut(s);
        r.ev_more = None;
        r.set_life(Life::Free);
        self.pending_free.push(s);
        self.live -= 1;
    }

    /// Makes room for `n` more records in the index (a restore knows how many).
    pub fn reserve(&mut self, n: usize) {
        let Store {
            index,
            chunks,
            long_ids,
            ..
        } = self;
        index.reserve(n, |&x| {
            let r = &chunks[(x >> CHUNK_BITS) as usize][x as usize & (CHUNK - 1)];
            if r.id[0] == LONG {
                hash_id(long_ids.get(&x).map(|b| &**b).unwrap_or(""))
            } else {
                hash_id(std::str::from_utf8(&r.id[1..1 + r.id[0] as usize]).unwrap_or(""))
            }
        });
    }

    /// Makes slots freed so far reusable.
    pub fn recycle(&mut self) {
        self.free.append(&mut self.pending_free);
    }

    /// Number of records held (open or closed).
    pub fn len(&self) -> usize {
        self.live
    }

    /// Every slot ever allocated (callers check [`Record::life`]).
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .flat_map(|(n, c)| (0..c.len()).map(move |i| ((n << CHUNK_BITS) | i) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_compact() {
        assert!(
            std::mem::size_of::<Record>() <= 136,
            "{}",
            std::mem::size_of::<Record>()
        );
    }

    #[test]
    fn insert_find_remove_long_ids() {
        let mut st = Store::default();
        let long = "x".repeat(64);
        let a = st.insert("000.00.20.H47-241215-0001", Record::default());
        let b = st.insert(&long, Record::default());
        assert_eq!(st.find("000.00.20.H47-241215-0001"), Some(a));
        assert_eq!(st.find(&long), Some(b));
        assert_eq!(st.id(b), long);
        st.remove(b);
        assert_eq!(st.find(&long), None);
        st.recycle();
        let c = st.insert("short", Record::default());
        assert_eq!(c, b);
        assert_eq!(st.id(c), "short");
        for i in 0..200_000 {
            st.insert(&format!("R{i}"), Record::default());
        }
        assert_eq!(
            st.find("R199999").map(|s| st.id(s).to_string()),
            Some("R199999".into())
        );
    }
}
