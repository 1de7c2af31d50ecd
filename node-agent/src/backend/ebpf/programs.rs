//! The compiled programs: loaded with aya, attached at TC ingress and
//! egress of one interface (TCX on kernels >= 6.6, where aya's `attach`
//! chooses it), and the maps they decide with. Dropping [`Programs`]
//! detaches both (pinning, so that an agent restart keeps enforcing, comes
//! with the backend).

use aya::{
    Ebpf,
    maps::{HashMap, LpmTrie, MapData, MapError, lpm_trie::Key},
    programs::{ProgramError, SchedClassifier, TcAttachType},
};
use ipnet::IpNet;

use super::{
    keys::{ClassKey, PortPrefix, port_prefixes, protocol_numbers, verdict_key, verdict_value},
    verdicts::Table,
};

/// Which address of a packet a class is of.
#[derive(Clone, Copy)]
enum Side {
    Remote,
    Local,
}

/// The object `build.rs` compiled from `bpf/meshguard.c`.
const OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshguard.bpf.o"));

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
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
}

pub struct Programs {
    ebpf: Ebpf,
}

impl Programs {
    /// Loads the object and both programs into the kernel (the verifier
    /// runs here); nothing is attached yet.
    pub fn load() -> Result<Programs, ProgramsError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        for name in ["ingress", "egress"] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| ProgramsError::Program { name, source })?;
        }
        Ok(Programs { ebpf })
    }

    /// Attaches `ingress` and `egress` to `interface`, in this process's
    /// network namespace.
    pub fn attach(&mut self, interface: &str) -> Result<(), ProgramsError> {
        for (name, at) in [
            ("ingress", TcAttachType::Ingress),
            ("egress", TcAttachType::Egress),
        ] {
            classifier(&mut self.ebpf, name)?
                .attach(interface, at)
                .map_err(|source| ProgramsError::Program { name, source })?;
        }
        Ok(())
    }

    /// Fills freshly loaded maps with `table` (revisions, written aside and
    /// switched at once, come with the backend). Returns the verdict
    /// entries written.
    pub fn write(&mut self, table: &Table) -> Result<usize, ProgramsError> {
        for (side, classes) in [(Side::Remote, &table.remote), (Side::Local, &table.local)] {
            for &(net, class) in &classes.entries {
                self.set_class(side, net, class)?;
            }
        }
        let name = "verdicts";
        let mut map: LpmTrie<&mut MapData, [u8; 12], u32> = self.map(name)?;
        let mut written = 0;
        for entry in &table.entries {
            let value = verdict_value(entry.verdict);
            let numbers: &[Option<u8>] = match entry.protocol {
                None => &[None],
                Some(p) => &protocol_numbers(p)
                    .iter()
                    .map(|&n| Some(n))
                    .collect::<Vec<_>>(),
            };
            let ports: Vec<Option<PortPrefix>> = match entry.ports {
                None => vec![None],
                Some((first, last)) => port_prefixes(first, last).into_iter().map(Some).collect(),
            };
            for &protocol in numbers {
                for &port in &ports {
                    let key =
                        verdict_key(entry.direction, entry.remote, entry.local, protocol, port);
                    map.insert(&key, value, 0)
                        .map_err(|source| ProgramsError::Map { name, source })?;
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    fn set_class(&mut self, side: Side, net: IpNet, class: u32) -> Result<(), ProgramsError> {
        match (ClassKey::of(net), side) {
            (ClassKey::V4(key), Side::Remote) => self.insert_class("classes_v4", &key, class),
            (ClassKey::V4(key), Side::Local) => self.insert_class("locals_v4", &key, class),
            (ClassKey::V6(key), Side::Remote) => self.insert_class("classes_v6", &key, class),
            (ClassKey::V6(key), Side::Local) => self.insert_class("locals_v6", &key, class),
        }
    }

    fn insert_class<K: aya::Pod>(
        &mut self,
        name: &'static str,
        key: &Key<K>,
        class: u32,
    ) -> Result<(), ProgramsError> {
        let mut map: LpmTrie<&mut MapData, K, u32> = self.map(name)?;
        map.insert(key, class, 0)
            .map_err(|source| ProgramsError::Map { name, source })
    }

    /// Flows the programs let through, as the flow table holds them.
    pub fn flows(&mut self) -> Result<usize, ProgramsError> {
        let name = "flows";
        let map: HashMap<&mut MapData, [u8; 40], u8> = self.map(name)?;
        Ok(map.keys().filter(Result::is_ok).count())
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

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, ProgramsError> {
    ebpf.program_mut(name)
        .ok_or(ProgramsError::Missing(name))?
        .try_into()
        .map_err(|source| ProgramsError::Program { name, source })
}
