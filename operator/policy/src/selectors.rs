//! Peer selectors in a form that is cheap to match: names sorted, label
//! requirements normalized, CIDR strings parsed. Two selectors that mean the
//! same thing have the same [`Selector::key`], which names address sets and
//! lets the compiler share work between rules.

use std::{collections::BTreeMap, net::IpAddr};

use meshguard_crds::{
    PeerSelector,
    selector::{LabelOperator, LabelSelector},
};

use crate::{
    addresses::{Prefix, PrefixError},
    members::Member,
};

/// A selector that cannot be read (validation was skipped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(transparent)]
    Cidr(#[from] PrefixError),
    #[error(
        "the selector names no members: it needs one of nodes, nodeSelector, cidrs or all: true"
    )]
    NoKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Members by name (sorted, unique).
    Names(Vec<String>),
    /// Members by labels.
    Labels(LabelMatch),
    /// Addresses inside a block and outside its holes.
    Cidrs(Vec<Block>),
    /// Every member and every address.
    All,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    pub cidr: Prefix,
    pub except: Vec<Prefix>,
}

impl Block {
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        self.cidr.contains_ip(ip) && !self.except.iter().any(|e| e.contains_ip(ip))
    }
}

/// A label selector: every pair equal and every expression true.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelMatch {
    pub equals: Vec<(String, String)>,
    pub expressions: Vec<Expression>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Expression {
    pub key: String,
    pub operator: LabelOperator,
    pub values: Vec<String>,
}

impl LabelMatch {
    pub fn from_spec(spec: &LabelSelector) -> LabelMatch {
        let equals = spec
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut expressions: Vec<Expression> = spec
            .match_expressions
            .iter()
            .flatten()
            .map(|e| {
                let mut values = e.values.clone().unwrap_or_default();
                values.sort();
                values.dedup();
                Expression {
                    key: e.key.clone(),
                    operator: e.operator,
                    values,
                }
            })
            .collect();
        expressions.sort_by(|a, b| {
            (&a.key, a.operator as u8, &a.values).cmp(&(&b.key, b.operator as u8, &b.values))
        });
        expressions.dedup();
        LabelMatch {
            equals,
            expressions,
        }
    }

    /// Kubernetes label-selector semantics: `NotIn` and `DoesNotExist` also
    /// match members that lack the key.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.equals.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    LabelOperator::In => value.is_some_and(|v| e.values.contains(v)),
                    LabelOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    LabelOperator::Exists => value.is_some(),
                    LabelOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

impl Selector {
    /// The normalized form of a validated selector.
    pub fn from_spec(spec: &PeerSelector) -> Result<Selector, SelectorError> {
        if let Some(names) = &spec.nodes {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            return Ok(Selector::Names(names));
        }
        if let Some(labels) = &spec.node_selector {
            return Ok(Selector::Labels(LabelMatch::from_spec(labels)));
        }
        if let Some(blocks) = &spec.cidrs {
            let blocks = blocks
                .iter()
                .map(|b| {
                    let mut except = b
                        .except
                        .iter()
                        .flatten()
                        .map(|e| e.parse())
                        .collect::<Result<Vec<Prefix>, _>>()?;
                    except.sort();
                    except.dedup();
                    Ok(Block {
                        cidr: b.cidr.parse()?,
                        except,
                    })
                })
                .collect::<Result<Vec<_>, PrefixError>>()?;
            return Ok(Selector::Cidrs(blocks));
        }
        if spec.all == Some(true) {
            return Ok(Selector::All);
        }
        // Only possible when validation was skipped: never read it as `all`.
        Err(SelectorError::NoKind)
    }

    pub fn matches_member(&self, member: &Member) -> bool {
        match self {
            Selector::Names(names) => names.binary_search(&member.name).is_ok(),
            Selector::Labels(labels) => labels.matches(&member.labels),
            Selector::Cidrs(blocks) => blocks.iter().any(|b| b.contains_ip(member.mesh_ip)),
            Selector::All => true,
        }
    }

    /// Matching an address that is not a member: only `cidrs` and `all` can.
    pub fn matches_address(&self, ip: IpAddr) -> bool {
        match self {
            Selector::Cidrs(blocks) => blocks.iter().any(|b| b.contains_ip(ip)),
            Selector::All => true,
            Selector::Names(_) | Selector::Labels(_) => false,
        }
    }

    /// Whether every address of `region` matches. Only meaningful for a region
    /// that no boundary of this selector cuts (see `addresses::split_by`).
    pub fn matches_region(&self, region: Prefix) -> bool {
        match self {
            Selector::Cidrs(blocks) => blocks
                .iter()
                .any(|b| b.cidr.contains(region) && !b.except.iter().any(|e| e.overlaps(region))),
            Selector::All => true,
            Selector::Names(_) | Selector::Labels(_) => false,
        }
    }

    /// The prefixes this selector draws in the address space.
    pub fn boundaries(&self) -> Vec<Prefix> {
        match self {
            Selector::Cidrs(blocks) => blocks
                .iter()
                .flat_map(|b| std::iter::once(b.cidr).chain(b.except.iter().copied()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A canonical text form: equal for selectors that mean the same.
    pub fn key(&self) -> String {
        match self {
            Selector::Names(names) => format!("nodes({})", names.join(",")),
            Selector::Labels(labels) => {
                let equals: Vec<String> = labels
                    .equals
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let expressions: Vec<String> = labels
                    .expressions
                    .iter()
                    .map(|e| format!("{} {:?} ({})", e.key, e.operator, e.values.join(",")))
                    .collect();
                format!("labels({};{})", equals.join(","), expressions.join(";"))
            }
            Selector::Cidrs(blocks) => {
                let blocks: Vec<String> = blocks
                    .iter()
                    .map(|b| {
                        let except: Vec<String> = b.except.iter().map(Prefix::to_string).collect();
                        format!("{}-[{}]", b.cidr, except.join(","))
                    })
                    .collect();
                format!("cidrs({})", blocks.join(","))
            }
            Selector::All => "all".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use meshguard_crds::selector::LabelSelectorRequirement;

    use super::*;

    fn member(name: &str, labels: &[(&str, &str)], ip: &str) -> Member {
        Member {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mesh_ip: ip.parse().unwrap(),
            public_key: String::new(),
            endpoint: None,
            allowed_ips: vec![],
        }
    }

    fn expr(key: &str, operator: LabelOperator, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator,
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
        }
    }

    #[test]
    fn label_operators_follow_kubernetes() {
        let web = member("w", &[("role", "web")], "10.0.0.1");
        let bare = member("b", &[], "10.0.0.2");
        let cases = [
            (LabelOperator::In, vec!["web"], true, false),
            (LabelOperator::NotIn, vec!["web"], false, true),
            (LabelOperator::NotIn, vec!["db"], true, true),
            (LabelOperator::Exists, vec![], true, false),
            (LabelOperator::DoesNotExist, vec![], false, true),
        ];
        for (op, values, on_web, on_bare) in cases {
            let m = LabelMatch::from_spec(&expr("role", op, &values));
            assert_eq!(m.matches(&web.labels), on_web, "{op:?} {values:?} on web");
            assert_eq!(
                m.matches(&bare.labels),
                on_bare,
                "{op:?} {values:?} on bare"
            );
        }
        assert!(
            LabelMatch::default().matches(&bare.labels),
            "{{}} selects everyone"
        );
    }

    #[test]
    fn member_selectors_never_match_plain_addresses() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!Selector::Names(vec!["w".into()]).matches_address(ip));
        assert!(!Selector::Labels(LabelMatch::default()).matches_address(ip));
        assert!(Selector::All.matches_address(ip));
        let blocks = Selector::Cidrs(vec![Block {
            cidr: "10.0.0.0/8".parse().unwrap(),
            except: vec!["10.0.0.0/24".parse().unwrap()],
        }]);
        assert!(!blocks.matches_address(ip));
        assert!(blocks.matches_address("10.0.1.1".parse().unwrap()));
        assert!(blocks.matches_member(&member("x", &[], "10.9.0.1")));
        assert!(blocks.matches_region("10.1.0.0/16".parse().unwrap()));
        assert!(!blocks.matches_region("10.0.0.0/16".parse().unwrap()));
    }

    #[test]
    fn equal_meaning_gives_equal_keys() {
        let a = PeerSelector {
            nodes: Some(vec!["b".into(), "a".into(), "a".into()]),
            ..Default::default()
        };
        let b = PeerSelector {
            nodes: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        };
        assert_eq!(
            Selector::from_spec(&a).unwrap().key(),
            Selector::from_spec(&b).unwrap().key()
        );
    }
}
