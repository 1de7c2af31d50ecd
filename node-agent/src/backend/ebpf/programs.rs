//! The compiled programs and their maps in the kernel: loaded with aya,
//! the maps pinned under a bpffs directory (reused from there when a
//! previous agent left them), attached at TC ingress and egress of one
//! interface through TCX links pinned beside them, so that the programs
//! keep enforcing while no agent runs and a new agent swaps its programs
//! in atomically (`bpf_link_update`). On kernels before 6.6 aya attaches
//! through netlink clsact instead; those links cannot be pinned, and live
//! as long as the agent.
//!
//! ```text
//!  <pins>/state settings classes_v4 classes_v6 locals_v4 locals_v6
//!         verdicts flows counters      the maps (pinned by name)
//!  <pins>/link-ingress link-egress     the TCX links
//! ```

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues, RingBuf,
        lpm_trie::Key,
    },
    programs::{
        ProgramError, SchedClassifier, TcAttachType,
        links::{FdLink, LinkError, PinnedLink},
        tc::SchedClassifierLink,
    },
};
use ipnet::IpNet;

use super::{
    keys::{ClassKey, Side, verdict_key},
    revision::Delta,
};

/// The object `build.rs` compiled from `bpf/meshguard.c`.
const OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshguard.bpf.o"));

/// The programs, by name in the object, and where each attaches.
const PROGRAMS: [(&str, TcAttachType); 2] = [
    ("ingress", TcAttachType::Ingress),
    ("egress", TcAttachType::Egress),
];

/// The maps the programs decide with (pinned under these names).
pub const MAPS: [&str; 9] = [
    "state",
    "settings",
    "classes_v4",
    "classes_v6",
    "locals_v4",
    "locals_v6",
    "verdicts",
    "flows",
    "counters",
];

#[derive(Debug, thiserror::Error)]
pub enum ProgramsError {
    /// The object did not load: no BPF support, no privileges, no BTF.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("link {path}: {source}")]
    Link { path: PathBuf, source: LinkError },
    #[error("{path}: {source}")]
    Pin { path: PathBuf, source: io::Error },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("counting the possible CPUs: {0}")]
    Cpus(io::Error),
}

pub struct Programs {
    ebpf: Ebpf,
    pins: PathBuf,
}

/// Packets and bytes one counter slot counted, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Programs {
    /// Loads the object and both programs into the kernel (the verifier
    /// runs here), with the maps pinned in `pins` (an existing directory
    /// on a bpffs): reused when pinned there already, else created and
    /// pinned. Nothing is attached yet.
    pub fn load(pins: &Path) -> Result<Programs, ProgramsError> {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins)
            .load(OBJECT)?;
        for (name, _) in PROGRAMS {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| ProgramsError::Program { name, source })?;
        }
        Ok(Programs {
            ebpf,
            pins: pins.to_owned(),
        })
    }

    /// Attaches `ingress` and `egress` to `interface` (in this process's
    /// network namespace). A link pinned here already (a previous agent's,
    /// or ours before the interface was recreated) gets our program in
    /// place of its own, atomically, when it still holds an interface;
    /// otherwise a new link is made and pinned.
    pub fn attach(&mut self, interface: &str) -> Result<(), ProgramsError> {
        for (name, at) in PROGRAMS {
            let path = link_pin(&self.pins, name);
            let program = classifier(&mut self.ebpf, name)?;
            let program_error = |source| ProgramsError::Program { name, source };
            let replaced = match PinnedLink::from_pin(&path) {
                Ok(pinned) => {
                    let link =
                        SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|source| {
                            ProgramsError::Link {
                                path: path.clone(),
                                source,
                            }
                        })?;
                    program.attach_to_link(link).is_ok()
                }
                Err(_) => false,
            };
            if replaced && attached_on(interface, at, program)? {
                continue;
            }
            // No pinned link, or one that no longer holds the interface
            // (the device was deleted and created again): a new one.
            remove(&path)?;
            if !tcx() {
                // Netlink attachment needs the clsact qdisc; one already
                // there is what we want, so its error is not ours to report
                // (attaching then says what is wrong, if anything).
                let _ = aya::programs::tc::qdisc_add_clsact(interface);
            }
            let id = program.attach(interface, at).map_err(program_error)?;
            let link = program.take_link(id).map_err(program_error)?;
            match FdLink::try_from(link) {
                Ok(fd) => {
                    fd.pin(&path).map_err(|e| ProgramsError::Pin {
                        path: path.clone(),
                        source: io::Error::other(e.to_string()),
                    })?;
                }
                // A netlink link (kernel < 6.6): nothing to pin; it stays
                // attached until the agent exits or tears down.
                Err(LinkError::InvalidLink) => {}
                Err(source) => return Err(ProgramsError::Link { path, source }),
            }
        }
        Ok(())
    }

    /// Whether both programs of this object are attached to `interface`.
    pub fn attached(&mut self, interface: &str) -> Result<bool, ProgramsError> {
        for (name, at) in PROGRAMS {
            let program = classifier(&mut self.ebpf, name)?;
            if !attached_on(interface, at, program)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The live generation and both generations' revision numbers (0:
    /// never written), as the pinned maps hold them.
    pub fn generations(&mut self) -> Result<(u8, [u32; 2]), ProgramsError> {
        let name = "state";
        let state: Array<&mut MapData, u32> = self.map(name)?;
        let live = state
            .get(&0, 0)
            .map_err(|source| ProgramsError::Map { name, source })?;
        let name = "settings";
        let settings: Array<&mut MapData, [u32; 4]> = self.map(name)?;
        let mut revisions = [0; 2];
        for (generation, revision) in (0u32..).zip(&mut revisions) {
            *revision = settings
                .get(&generation, 0)
                .map_err(|source| ProgramsError::Map { name, source })?[0];
        }
        Ok(((live & 1) as u8, revisions))
    }

    /// Makes `generation` the one packets read: its settings first, then
    /// the one word that switches.
    pub fn switch(&mut self, generation: u8, settings: [u32; 4]) -> Result<(), ProgramsError> {
        let name = "settings";
        let mut map: Array<&mut MapData, [u32; 4]> = self.map(name)?;
        map.set(u32::from(generation), settings, 0)
            .map_err(|source| ProgramsError::Map { name, source })?;
        let name = "state";
        let mut state: Array<&mut MapData, u32> = self.map(name)?;
        state
            .set(0, u32::from(generation), 0)
            .map_err(|source| ProgramsError::Map { name, source })
    }

    /// Writes `delta` into `generation` (not the live one).
    pub fn write(&mut self, generation: u8, delta: &Delta) -> Result<(), ProgramsError> {
        for (side, net) in &delta.classes_removed {
            self.class(generation, *side, *net, None)?;
        }
        for &((side, net), id) in &delta.classes_set {
            self.class(generation, side, net, Some(id))?;
        }
        let name = "verdicts";
        let mut map: LpmTrie<&mut MapData, [u8; 13], u32> = self.map(name)?;
        for entry in &delta.verdicts_removed {
            remove_entry(&mut map, &verdict_key(generation, entry))
                .map_err(|source| ProgramsError::Map { name, source })?;
        }
        for (entry, value) in &delta.verdicts_set {
            map.insert(&verdict_key(generation, entry), value, 0)
                .map_err(|source| ProgramsError::Map { name, source })?;
        }
        Ok(())
    }

    /// Removes every entry of `generation` whatever wrote it (a previous
    /// agent's, or one a failed write left half done); returns how many.
    pub fn clear(&mut self, generation: u8) -> Result<usize, ProgramsError> {
        Ok(self.clear_trie::<5>("classes_v4", generation)?
            + self.clear_trie::<17>("classes_v6", generation)?
            + self.clear_trie::<5>("locals_v4", generation)?
            + self.clear_trie::<17>("locals_v6", generation)?
            + self.clear_trie::<13>("verdicts", generation)?)
    }

    fn clear_trie<const N: usize>(
        &mut self,
        name: &'static str,
        generation: u8,
    ) -> Result<usize, ProgramsError>
    where
        [u8; N]: aya::Pod,
    {
        let mut map: LpmTrie<&mut MapData, [u8; N], u32> = self.map(name)?;
        let keys: Vec<Key<[u8; N]>> = map
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ProgramsError::Map { name, source })?;
        let mut removed = 0;
        for key in keys.iter().filter(|k| k.data()[0] == generation) {
            remove_entry(&mut map, key).map_err(|source| ProgramsError::Map { name, source })?;
            removed += 1;
        }
        Ok(removed)
    }

    /// What counter slots counted.
    pub fn counts(
        &mut self,
        slots: impl IntoIterator<Item = u32>,
    ) -> Result<BTreeMap<u32, Count>, ProgramsError> {
        let name = "counters";
        let map: PerCpuArray<&mut MapData, [u64; 2]> = self.map(name)?;
        let mut out = BTreeMap::new();
        for slot in slots {
            let values = map
                .get(&slot, 0)
                .map_err(|source| ProgramsError::Map { name, source })?;
            let count = values.iter().fold(Count::default(), |c, v| Count {
                packets: c.packets + v[0],
                bytes: c.bytes + v[1],
            });
            out.insert(slot, count);
        }
        Ok(out)
    }

    /// Zeroes counter slots (before they are given a new meaning).
    pub fn zero(&mut self, slots: impl IntoIterator<Item = u32>) -> Result<(), ProgramsError> {
        let name = "counters";
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| ProgramsError::Cpus(e))?;
        let mut map: PerCpuArray<&mut MapData, [u64; 2]> = self.map(name)?;
        for slot in slots {
            let zeros =
                PerCpuValues::try_from(vec![[0u64; 2]; cpus]).map_err(ProgramsError::Cpus)?;
            map.set(slot, zeros, 0)
                .map_err(|source| ProgramsError::Map { name, source })?;
        }
        Ok(())
    }

    /// The programs' event ring, taken (once) for its reader.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProgramsError> {
        let name = "events";
        let map = self
            .ebpf
            .take_map(name)
            .ok_or(ProgramsError::Missing(name))?;
        RingBuf::try_from(map).map_err(|source| ProgramsError::Map { name, source })
    }

    /// Flows the programs let through, as the flow table holds them.
    pub fn flows(&mut self) -> Result<usize, ProgramsError> {
        let name = "flows";
        let map: HashMap<&mut MapData, [u8; 40], [u8; 8]> = self.map(name)?;
        Ok(map.keys().filter(Result::is_ok).count())
    }

    fn class(
        &mut self,
        generation: u8,
        side: Side,
        net: IpNet,
        id: Option<u32>,
    ) -> Result<(), ProgramsError> {
        match (ClassKey::of(generation, net), side) {
            (ClassKey::V4(key), Side::Remote) => self.set_class("classes_v4", &key, id),
            (ClassKey::V4(key), Side::Local) => self.set_class("locals_v4", &key, id),
            (ClassKey::V6(key), Side::Remote) => self.set_class("classes_v6", &key, id),
            (ClassKey::V6(key), Side::Local) => self.set_class("locals_v6", &key, id),
        }
    }

    fn set_class<K: aya::Pod>(
        &mut self,
        name: &'static str,
        key: &Key<K>,
        id: Option<u32>,
    ) -> Result<(), ProgramsError> {
        let mut map: LpmTrie<&mut MapData, K, u32> = self.map(name)?;
        match id {
            Some(id) => map.insert(key, id, 0),
            None => remove_entry(&mut map, key),
        }
        .map_err(|source| ProgramsError::Map { name, source })
    }

    fn map<'a, M>(&'a mut self, name: &'static str) -> Result<M, ProgramsError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(ProgramsError::Missing(name))?;
        M::try_from(map).map_err(|source| ProgramsError::Map { name, source })
    }
}

/// Removes an LPM entry; one already gone is not an error (a clear after a
/// half-done write may find it so).
fn remove_entry<K: aya::Pod>(
    map: &mut LpmTrie<&mut MapData, K, u32>,
    key: &Key<K>,
) -> Result<(), MapError> {
    match map.remove(key) {
        Err(MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

/// Whether `program` is among those attached to `interface` at `at`.
fn attached_on(
    interface: &str,
    at: TcAttachType,
    program: &SchedClassifier,
) -> Result<bool, ProgramsError> {
    let name = "attached programs";
    let ours = program
        .info()
        .map_err(|source| ProgramsError::Program { name, source })?
        .id();
    match SchedClassifier::query_tcx(interface, at) {
        Ok((_, attached)) => Ok(attached.iter().any(|p| p.id() == ours)),
        // No such interface (any more): not attached.
        Err(_) => Ok(false),
    }
}

/// Whether aya attaches through TCX links here (kernel 6.6 or later), as
/// its `attach` decides.
fn tcx() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
}

fn link_pin(pins: &Path, name: &str) -> PathBuf {
    pins.join(format!("link-{name}"))
}

fn remove(path: &Path) -> Result<(), ProgramsError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ProgramsError::Pin {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Detaches the pinned links in `pins` and removes every pin there and the
/// directory itself; returns whether there was anything.
pub fn remove_pins(pins: &Path) -> Result<bool, ProgramsError> {
    if !pins.exists() {
        return Ok(false);
    }
    for (name, _) in PROGRAMS {
        let path = link_pin(pins, name);
        // Unpinned and dropped, the link detaches.
        if let Ok(pinned) = PinnedLink::from_pin(&path) {
            drop(pinned.unpin().map_err(|source| ProgramsError::Pin {
                path: path.clone(),
                source,
            })?);
        }
        remove(&path)?;
    }
    for name in MAPS {
        remove(&pins.join(name))?;
    }
    std::fs::remove_dir(pins).map_err(|source| ProgramsError::Pin {
        path: pins.to_owned(),
        source,
    })?;
    Ok(true)
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, ProgramsError> {
    ebpf.program_mut(name)
        .ok_or(ProgramsError::Missing(name))?
        .try_into()
        .map_err(|source| ProgramsError::Program { name, source })
}
