//! A hierarchical timing wheel over record slots: one timer per open record.
//!
//! Why a wheel: every event of a record resets its hanging timer, so "cancel and
//! re-arm" is the hottest timer operation. Here both are O(1): a timer is a node of
//! an intrusive doubly linked list (the links live inside the record, so a timer
//! costs no allocation and 18 bytes), and a list hangs off one of 4,096 slots of one
//! of [`LEVELS`] levels, level `k` slots being `4096^k` seconds wide (the scheme of
//! tokio's and Linux's wheels, with a wider fan-out: a timer weeks away cascades
//! twice, not four times, and each cascade is a walk through records that are not
//! in cache). Time advances by cascading a higher-level slot into
//! lower levels when its turn comes; a level-0 slot holds the timers of one second.
//!
//! The engine needs exact order (fire time, then record id, then kind), finer than
//! a second: [`Wheel::take_due_tick`] hands out a whole second's timers and the
//! engine sorts that batch.
//!
//! Ticks are whole seconds since the Unix epoch; 4 levels of 4,096 slots cover 2^48 seconds, far
//! beyond the calendar tables, so the top level never wraps.

use crate::time::{Instant, SECOND};

/// Number of levels.
pub const LEVELS: usize = 4;
const BITS: usize = 12;
const SLOTS: usize = 1 << BITS;
const WORDS: usize = SLOTS / 64;
/// The "no node" link.
pub const NIL: u32 = u32::MAX;
/// Location of a node that is in no list.
pub const NOWHERE: u16 = u16::MAX;

/// The intrusive part of a timer, stored inside each record.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// Fire instant.
    pub at: Instant,
    /// Next node in the slot's list.
    pub next: u32,
    /// Previous node in the slot's list.
    pub prev: u32,
    /// `level * 4096 + slot`, or [`NOWHERE`].
    pub loc: u16,
    /// Free bits for the owner (fills what would be padding).
    pub aux16: u16,
    /// Free bits for the owner (fills what would be padding).
    pub aux32: u32,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            at: 0,
            next: NIL,
            prev: NIL,
            loc: NOWHERE,
            aux16: 0,
            aux32: 0,
        }
    }
}

/// Where the wheel finds the node of slot `i`.
pub trait Nodes {
    /// The node of slot `i`.
    fn node(&mut self, i: u32) -> &mut Node;
}

/// The wheel's own state: list heads and occupancy bitmaps.
#[derive(Debug)]
pub struct Wheel {
    heads: Vec<u32>,
    occupied: Vec<[u64; WORDS]>,
    /// Per level, one bit per non-zero word of `occupied`.
    summary: [u64; LEVELS],
    /// Every tick before this one has been handed out.
    elapsed: u64,
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            heads: vec![NIL; LEVELS * SLOTS],
            occupied: vec![[0; WORDS]; LEVELS],
            summary: [0; LEVELS],
            elapsed: 0,
            len: 0,
        }
    }
}

#[inline]
fn tick_of(at: Instant) -> u64 {
    at.div_euclid(SECOND).clamp(0, (1i64 << 42) - 1) as u64
}

#[inline]
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / BITS).min(LEVELS - 1)
}

impl Wheel {
    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first tick not yet handed out (what a snapshot keeps).
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Starts an empty wheel at `tick` (a restore, before re-arming): timers are
    /// placed relative to it as they were in the imaged wheel.
    pub fn set_elapsed(&mut self, tick: u64) {
        debug_assert_eq!(self.len, 0);
        self.elapsed = tick;
    }

    /// Arms (or re-arms) the timer of slot `i` at `at`.
    ///
    /// Moving an armed timer *later* — the common case: every event pushes the
    /// hanging timer back — only rewrites its instant and leaves the node where
    /// it is; when that earlier slot comes due, the node is found to be early
    /// and re-placed. This saves unlinking, which would touch the two neighbour
    /// records, on the hottest path (cache misses dominate at 10 M records).
    pub fn arm<N: Nodes>(&mut self, nodes: &mut N, i: u32, at: Instant) {
        let n = nodes.node(i);
        if n.loc != NOWHERE && at >= n.at {
            n.at = at;
            return;
        }
        self.cancel(nodes, i);
        nodes.node(i).at = at;
        self.link(nodes, i);
    }

    fn link<N: Nodes>(&mut self, nodes: &mut N, i: u32) {
        let at = nodes.node(i).at;
        // A timer in the past goes to the current tick: it is handed out next.
        let when = tick_of(at).max(self.elapsed);
        let level = level_for(self.elapsed, when);
        let slot = ((when >> (level * BITS)) & (SLOTS as u64 - 1)) as usize;
        let loc = level * SLOTS + slot;
        let head = self.heads[loc];
        {
            let n = nodes.node(i);
            n.loc = loc as u16;
            n.prev = NIL;
            n.next = head;
        }
        if head != NIL {
            nodes.node(head).prev = i;
        }
        self.heads[loc] = i;
        self.set_occupied(level, slot);
        self.len += 1;
    }

    /// Disarms the timer of slot `i` if it is armed.
    pub fn cancel<N: Nodes>(&mut self, nodes: &mut N, i: u32) {
        let (loc, prev, next) = {
            let n = nodes.node(i);
            if n.loc == NOWHERE {
                return;
            }
            let r = (n.loc as usize, n.prev, n.next);
            n.loc = NOWHERE;
            n.prev = NIL;
            n.next = NIL;
            r
        };
        if prev != NIL {
            nodes.node(prev).next = next;
        } else {
            self.heads[loc] = next;
            if next == NIL {
                self.clear_occupied(loc / SLOTS, loc % SLOTS);
            }
        }
        if next != NIL {
            nodes.node(next).prev = prev;
        }
        self.len -= 1;
    }

    /// Whether slot `i`'s timer is armed.
    pub fn is_armed<N: Nodes>(nodes: &mut N, i: u32) -> bool {
        nodes.node(i).loc != NOWHERE
    }

    fn set_occupied(&mut self, level: usize, slot: usize) {
        self.occupied[level][slot / 64] |= 1 << (slot % 64);
        self.summary[level] |= 1 << (slot / 64);
    }

    fn clear_occupied(&mut self, level: usize, slot: usize) {
        let w = &mut self.occupied[level][slot / 64];
        *w &= !(1 << (slot % 64));
        if *w == 0 {
            self.summary[level] &= !(1 << (slot / 64));
        }
    }

    /// First occupied slot of `level` at or after `from`, else the first before it
    /// (`true`: wrapped into the next turn of the level).
    fn first_occupied(&self, level: usize, from: usize) -> Option<(usize, bool)> {
        let occ = &self.occupied[level];
        let wi = from / 64;
        let w = occ[wi] & (!0u64 << (from % 64));
        if w != 0 {
            return Some((wi * 64 + w.trailing_zeros() as usize, false));
        }
        let later = if wi + 1 < WORDS {
            self.summary[level] & (!0u64 << (wi + 1))
        } else {
            0
        };
        if later != 0 {
            let wj = later.trailing_zeros() as usize;
            return Some((wj * 64 + occ[wj].trailing_zeros() as usize, false));
        }
        let any = self.summary[level];
        if any == 0 {
            return None;
        }
        let wj = any.trailing_zeros() as usize;
        Some((wj * 64 + occ[wj].trailing_zeros() as usize, true))
    }

    /// The earliest non-empty slot: (level, slot, its first tick); on a tie the
    /// higher level, so that its timers are cascaded before that tick is handed
    /// out.
    ///
    /// Why every level is looked at, not only the lowest non-empty one: a drain
    /// that finishes a block's last second moves `elapsed` into the next block
    /// without cascading that block's level-1 slot (nothing asked for it yet);
    /// a timer then (re)placed at level 0 lies in that block too, and must not
    /// hide the level-1 slot whose first tick comes before it.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for level in 0..LEVELS {
            if self.summary[level] == 0 {
                continue;
            }
            let Some(found) = self.level_expiration(level) else {
                continue;
            };
            if best.is_none_or(|(_, _, d)| found.2 <= d) {
                best = Some(found);
            }
        }
        best
    }

    /// The earliest non-empty slot of `level`: (level, slot, its first tick).
    fn level_expiration(&self, level: usize) -> Option<(usize, usize, u64)> {
        let shift = level * BITS;
        let now_slot = ((self.elapsed >> shift) & (SLOTS as u64 - 1)) as usize;
        let (slot, wrapped) = self.first_occupied(level, now_slot)?;
        let level_range = 1u64 << (shift + BITS);
        let slot_range = 1u64 << shift;
        let level_start = self.elapsed & !(level_range - 1);
        // Placement keeps every timer at or after `elapsed`; only the slot of
        // the block `elapsed` has just entered can start before it (see
        // `next_expiration`), and it is due at once. The top level never wraps:
        // it spans far beyond the tables.
        let mut deadline = level_start + slot as u64 * slot_range;
        if wrapped {
            deadline += level_range;
        }
        Some((level, slot, deadline.max(self.elapsed)))
    }

    /// Hands out, into `out`, every timer of the earliest second that is at or
    /// before `now`'s second, unlinking them; returns that second, or `None` if no
    /// timer is due. Timers of that second that are later than `now` itself stay
    /// armed. Nodes handed out are unlinked (their `at` is kept).
    pub fn take_due_tick<N: Nodes>(
        &mut self,
        nodes: &mut N,
        now: Instant,
        out: &mut Vec<(Instant, u32)>,
    ) -> Option<u64> {
        let now_tick = tick_of(now);
        if self.len == 0 && now_tick > self.elapsed {
            // Nothing is placed relative to `elapsed`: jump, so that new timers
            // start near level 0 instead of cascading down from the top.
            self.elapsed = now_tick;
        }
        loop {
            let (level, slot, deadline) = self.next_expiration()?;
            if deadline > now_tick {
                return None;
            }
            let loc = level * SLOTS + slot;
            if level > 0 {
                // Cascade: move the slot's timers to lower levels.
                self.elapsed = self.elapsed.max(deadline);
                let mut i = self.heads[loc];
                self.heads[loc] = NIL;
                self.clear_occupied(level, slot);
                while i != NIL {
                    let next = nodes.node(i).next;
                    self.len -= 1;
                    self.link(nodes, i);
                    i = next;
                }
                continue;
            }
            self.elapsed = deadline;
            let mut i = self.heads[loc];
            self.heads[loc] = NIL;
            self.clear_occupied(0, slot);
            let mut kept = Vec::new();
            while i != NIL {
                let n = nodes.node(i);
                let next = n.next;
                n.loc = NOWHERE;
                n.next = NIL;
                n.prev = NIL;
                self.len -= 1;
                // Hand out what is due in this second (or was placed here from the
                // past); a timer postponed since it was placed goes back in.
                if n.at <= now && tick_of(n.at) <= deadline {
                    out.push((n.at, i));
                } else {
                    kept.push(i);
                }
                i = next;
            }
            if deadline < now_tick {
                // This second is over: later arms for it go to the next one.
                self.elapsed = deadline + 1;
            }
            // Timers re-armed later (see `arm`) and timers later than `now` in
            // `now`'s own second go back into the wheel.
            for k in kept {
                self.link(nodes, k);
            }
            if out.is_empty() {
                if deadline < now_tick {
                    continue;
                }
                return None;
            }
            return Some(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct V(Vec<Node>);
    impl Nodes for V {
        fn node(&mut self, i: u32) -> &mut Node {
            &mut self.0[i as usize]
        }
    }

    /// Drains everything up to `now`, returning (at, slot) in handed-out order.
    fn drain(w: &mut Wheel, v: &mut V, now: Instant) -> Vec<(Instant, u32)> {
        let mut all = Vec::new();
        loop {
            let mut batch = Vec::new();
            if w.take_due_tick(v, now, &mut batch).is_none() {
                break;
            }
            batch.sort();
            all.extend(batch);
        }
        all
    }

    /// Runs `ops` against a model: (slot, amount, op) with op 0/1 = arm at
    /// `now` plus a scaled amount minus 1,000 s (so some arms are in the past),
    /// 2 = cancel, 3 = advance `now` and drain. Every drain must hand out exactly
    /// the armed timers at or before `now`, in second order, once.
    fn check_against_model(ops: &[(u32, i64, u8)]) -> Result<(), TestCaseError> {
        let base = 1_700_000_000_000_000i64;
        let mut v = V(vec![Node::default(); 50]);
        let mut w = Wheel::default();
        let mut model: std::collections::BTreeMap<u32, Instant> = Default::default();
        let mut now = base;
        for &(i, d, op) in ops {
            match op {
                0 | 1 => {
                    let at = now + d / (1 + op as i64 * 1000) - 1_000_000_000;
                    w.arm(&mut v, i, at);
                    model.insert(i, at);
                }
                2 => {
                    w.cancel(&mut v, i);
                    model.remove(&i);
                }
                _ => {
                    now += d / 1000;
                    let got = drain(&mut w, &mut v, now);
                    let mut want: Vec<(Instant, u32)> = model
                        .iter()
                        .filter(|(_, &a)| a <= now)
                        .map(|(&k, &a)| (a, k))
                        .collect();
                    want.sort();
                    model.retain(|_, a| *a > now);
                    let mut got_sorted = got.clone();
                    got_sorted.sort();
                    prop_assert_eq!(&got_sorted, &want);
                    // Batches come in non-decreasing second order.
                    for pair in got.windows(2) {
                        prop_assert!(
                            pair[0].0.div_euclid(SECOND) <= pair[1].0.div_euclid(SECOND)
                                || pair[0].0.div_euclid(SECOND) < now.div_euclid(SECOND)
                        );
                    }
                    prop_assert_eq!(w.len(), model.len());
                }
            }
        }
        Ok(())
    }

    /// A drain that ends a block's last second moves `elapsed` into the next
    /// block; a timer then placed at level 0 in that block must not hide the
    /// level-1 slot of the same block (armed earlier, still to be cascaded).
    #[test]
    fn a_level_one_slot_is_cascaded_before_level_zero_timers_of_its_block() {
        let ops = [
            (0, 340528184000, 3),
            (0, 1554995688000, 3),
            (0, 3248679594000, 3),
            (0, 950688795000, 3),
            (0, 2680899889000, 3),
            (0, 917702574000, 3),
            (0, 2451716765000, 3),
            (0, 2595204414000, 3),
            (0, 672430763000, 3),
            (0, 5811153334, 0),
            (0, 1135111361000, 3),
            (0, 580622014973, 1),
            (15, 579621014973, 1),
            (15, 3415454014973, 1),
            (0, 0, 3),
        ];
        check_against_model(&ops).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Against a model: arms, cancels and partial advances hand out exactly the
        /// armed timers at or before each `now`, in time order, once.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u32..50, 0i64..5_000_000_000_000i64, 0u8..4), 1..300)) {
            check_against_model(&ops)?;
        }
    }
}
