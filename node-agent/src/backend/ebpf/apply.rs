//! The eBPF backend's state and its apply: a revision is written into the
//! generation packets do not read, then made live by one word, then the
//! numbers no generation uses any more are released.
//!
//! ```text
//!  apply ─ table ─ Contents::of(ids) ─ delta(held[idle]) ─ write(idle) ─ switch(idle)
//!        ─ attach (first time) ─ guard (iptables) ─ release unused slots and classes
//! ```
//!
//! `held` is what this agent knows each generation holds; `None` where it
//! does not (a previous agent's maps, or a write that failed half-way):
//! such a generation is cleared before it is written. A failure anywhere
//! before the switch leaves the live generation as it was.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{
    EbpfError, bpffs,
    events::{PacketLog, Slots},
    keys::{SLOT_NOT_OURS_EGRESS, SLOT_NOT_OURS_INGRESS, Side, settings_value},
    programs::{Count, Programs, remove_pins},
    revision::{Contents, Ids, NOT_OURS, SLOTS, delta},
    verdicts::table,
};
use crate::{
    backend::{
        contract::{Applied, Direction, Enforcement, Filter, RuleCounter},
        iptables::{Iptables, render::render_guard},
    },
    desired::{Desired, verdict},
    wireguard::handshake,
};

/// The map layout the programs of this build read. A pinned directory of
/// another layout belongs to another build of the agent: its maps are
/// never reused, and its links are removed once ours are attached.
const LAYOUT: &str = "v1";

pub struct Ebpf {
    pub(super) interface: String,
    bpffs: PathBuf,
    pub(super) programs: Option<Programs>,
    /// The leak guard, which the programs on the mesh interface cannot see.
    pub(super) guard: Iptables,
    ids: Ids,
    held: [Option<Contents>; 2],
    /// The generation this agent made live.
    live: Option<u8>,
    /// The last revision number written (carried on from the pins).
    revision: u32,
    pub(super) attached: bool,
    /// What released counter slots had counted, per rule.
    released: BTreeMap<(Direction, String), Count>,
    /// The slots as the event reader names them.
    slots_view: Slots,
}

impl Ebpf {
    /// Nothing touches the kernel until [`Ebpf::start`]; teardown needs
    /// only this.
    pub fn new(interface: &str, bpffs: &Path, guard: Iptables) -> Ebpf {
        Ebpf {
            interface: interface.to_owned(),
            bpffs: bpffs.to_owned(),
            programs: None,
            guard,
            ids: Ids::default(),
            held: [None, None],
            live: None,
            revision: 0,
            attached: false,
            released: BTreeMap::new(),
            slots_view: Slots::default(),
        }
    }

    /// The reader of the programs' events (Log rules, audit verdicts), to
    /// run beside the agent; `None` before [`Ebpf::start`] or once taken.
    pub fn packet_log(&mut self) -> Option<PacketLog> {
        let ring = self.programs.as_mut()?.take_events().ok()?;
        Some(PacketLog {
            ring,
            slots: self.slots_view.clone(),
        })
    }

    /// Where this interface's pins of every layout live.
    fn interface_dir(&self) -> PathBuf {
        self.bpffs.join("meshguard").join(&self.interface)
    }

    fn pins(&self) -> PathBuf {
        self.interface_dir().join(LAYOUT)
    }

    /// Mounts the bpffs when missing and loads the programs, with the maps
    /// a previous agent pinned when there are any: what fails here (no
    /// BPF, no BTF, no privileges) fails before anything is enforced, so
    /// `--backend auto` can still choose iptables. The programs are
    /// attached by the first apply, once their maps hold its revision; a
    /// previous agent's programs enforce until then.
    pub fn start(&mut self) -> Result<(), EbpfError> {
        bpffs::ensure(&self.bpffs).map_err(EbpfError::Mount)?;
        let pins = self.pins();
        std::fs::create_dir_all(&pins).map_err(|source| EbpfError::Pins {
            path: pins.clone(),
            source,
        })?;
        let mut programs = Programs::load(&pins)?;
        let (live, revisions) = programs.generations()?;
        self.revision = revisions[0].max(revisions[1]);
        // A previous agent's live generation stays untouched until ours
        // replaces it; what either generation holds is unknown to us.
        self.live = (revisions[usize::from(live)] != 0).then_some(live);
        // Counters a previous agent's slots counted mean nothing to this
        // one (fresh maps start at zero).
        if self.revision != 0 {
            programs.zero(0..SLOTS)?;
        }
        self.programs = Some(programs);
        Ok(())
    }

    pub(super) fn apply_desired(
        &mut self,
        desired: &Desired,
        filter: &Filter<'_>,
    ) -> Result<Applied, EbpfError> {
        let programs = self.programs.as_mut().ok_or(EbpfError::NotStarted)?;
        let wanted = Contents::of(desired, &table(desired), &mut self.ids)?;
        let target = self.live.map_or(0, |g| 1 - g);
        let slot = usize::from(target);
        let held = match self.held[slot].take() {
            Some(held) => held,
            None => {
                programs.clear(target)?;
                Contents::default()
            }
        };
        let delta = delta(&held, &wanted);
        programs.write(target, &delta)?;
        self.revision = self.revision.wrapping_add(1).max(1);
        let audit = filter.enforcement == Enforcement::Audit;
        programs.switch(
            target,
            settings_value(self.revision, audit, handshake::MARK, handshake::PORT),
        )?;
        let rules = desired.ingress.len() + desired.egress.len();
        self.held[slot] = Some(wanted);
        self.live = Some(target);
        if !self.attached {
            programs.attach(&self.interface)?;
            self.attached = true;
            self.remove_other_layouts()?;
        }
        let rendered = render_guard(desired, &self.guard.options(filter));
        let mut changes = self.guard.apply_rendered(&rendered)?;
        self.release()?;
        if let Ok(mut view) = self.slots_view.write() {
            *view = self
                .ids
                .slots
                .iter()
                .map(|(id, slot)| (id, slot.clone()))
                .collect();
        }
        changes.entries_written = delta.len();
        Ok(Applied { rules, changes })
    }

    /// Releases the numbers neither generation uses, folding what released
    /// counter slots counted into their rules' totals first.
    fn release(&mut self) -> Result<(), EbpfError> {
        let [Some(a), Some(b)] = &self.held else {
            // A generation holds what this agent does not know: any number
            // may be in use there.
            return Ok(());
        };
        let both = |x: Vec<u32>, y: Vec<u32>| -> Vec<u32> {
            let mut all = x;
            all.extend(y);
            all.sort_unstable();
            all.dedup();
            all
        };
        let slots = both(a.slots(), b.slots());
        let remote = both(a.class_ids(Side::Remote), b.class_ids(Side::Remote));
        let local = both(a.class_ids(Side::Local), b.class_ids(Side::Local));
        self.ids
            .remote
            .release(|id| remote.binary_search(&id).is_ok());
        self.ids
            .local
            .release(|id| local.binary_search(&id).is_ok());
        let released = self
            .ids
            .slots
            .release(|id| slots.binary_search(&id).is_ok());
        if released.is_empty() {
            return Ok(());
        }
        let programs = self.programs.as_mut().ok_or(EbpfError::NotStarted)?;
        let counts = programs.counts(released.iter().map(|(id, _)| *id))?;
        for (id, slot) in &released {
            let count = counts.get(id).copied().unwrap_or_default();
            for rule in &slot.rules {
                add(
                    &mut self.released,
                    (direction(slot.direction), rule.clone()),
                    count,
                );
            }
        }
        programs.zero(released.iter().map(|(id, _)| *id))?;
        Ok(())
    }

    /// Per-rule counts: each slot's count added to every rule it counts
    /// for, with what released slots had counted, and the guard's.
    pub(super) fn rule_counters(&mut self) -> Result<Vec<RuleCounter>, EbpfError> {
        let mut totals = self.released.clone();
        if let Some(programs) = self.programs.as_mut() {
            let ids: Vec<u32> = self
                .ids
                .slots
                .iter()
                .map(|(id, _)| id)
                .chain([SLOT_NOT_OURS_INGRESS, SLOT_NOT_OURS_EGRESS])
                .collect();
            let counts = programs.counts(ids)?;
            for (id, slot) in self.ids.slots.iter() {
                let count = counts.get(&id).copied().unwrap_or_default();
                for rule in &slot.rules {
                    add(
                        &mut totals,
                        (direction(slot.direction), rule.clone()),
                        count,
                    );
                }
            }
            for (slot, way) in [
                (SLOT_NOT_OURS_INGRESS, Direction::Ingress),
                (SLOT_NOT_OURS_EGRESS, Direction::Egress),
            ] {
                let count = counts.get(&slot).copied().unwrap_or_default();
                add(&mut totals, (way, NOT_OURS.to_owned()), count);
            }
        }
        let mut out: Vec<RuleCounter> = totals
            .into_iter()
            .map(|((direction, id), count)| RuleCounter {
                direction,
                id,
                packets: count.packets,
                bytes: count.bytes,
            })
            .collect();
        out.extend(self.guard.counters()?);
        Ok(out)
    }

    /// Whether the programs this agent attached are no longer attached
    /// (detached by hand, or the device was created again).
    pub(super) fn detached(&mut self) -> Result<bool, EbpfError> {
        match self.programs.as_mut() {
            Some(programs) if self.attached => Ok(!programs.attached(&self.interface)?),
            _ => Ok(false),
        }
    }

    /// Attaches the programs (again: a new link where the pinned one no
    /// longer holds the interface), reading the maps as they are.
    pub fn attach(&mut self) -> Result<(), EbpfError> {
        let programs = self.programs.as_mut().ok_or(EbpfError::NotStarted)?;
        Ok(programs.attach(&self.interface)?)
    }

    /// Flows the programs let through, as the flow table holds them.
    pub fn flows(&mut self) -> Result<usize, EbpfError> {
        let programs = self.programs.as_mut().ok_or(EbpfError::NotStarted)?;
        Ok(programs.flows()?)
    }

    /// Links and maps of other layouts of this interface: detached and
    /// unpinned (ours are attached by now).
    fn remove_other_layouts(&self) -> Result<(), EbpfError> {
        let Ok(entries) = std::fs::read_dir(self.interface_dir()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if entry.file_name() != LAYOUT {
                remove_pins(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Detaches and unpins every layout's programs and maps of this
    /// interface, and drops ours.
    pub(super) fn remove_all(&mut self) -> Result<(), EbpfError> {
        self.programs = None;
        self.attached = false;
        self.held = [None, None];
        self.live = None;
        let dir = self.interface_dir();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                remove_pins(&entry.path())?;
            }
            // Emptied: only what we made goes.
            let _ = std::fs::remove_dir(&dir);
            let _ = std::fs::remove_dir(self.bpffs.join("meshguard"));
        }
        Ok(())
    }
}

fn add(totals: &mut BTreeMap<(Direction, String), Count>, key: (Direction, String), n: Count) {
    let total = totals.entry(key).or_default();
    total.packets += n.packets;
    total.bytes += n.bytes;
}

fn direction(d: verdict::Direction) -> Direction {
    match d {
        verdict::Direction::Ingress => Direction::Ingress,
        verdict::Direction::Egress => Direction::Egress,
    }
}
