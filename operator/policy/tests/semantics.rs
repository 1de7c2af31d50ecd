//! One test (or a few) per numbered line of "Policy semantics" in
//! ARCHITECTURE.md, on compiled NodePolicies, peers and verdicts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use meshguard_crds::{Action, NodePolicySpec, Protocol, Verdict, node_policy::FilterRule};
use meshguard_policy::{
    compile::Compiled,
    evaluate::{Flow, Outcome, evaluate},
    members::Endpoint,
    policy_tests,
};
use support::*;

fn verdict(
    c: &Compiled,
    from: &str,
    to: &str,
    protocol: Protocol,
    port: Option<u16>,
) -> (Verdict, Option<String>) {
    let find = |name: &str| match c.member(name) {
        Some(m) => Endpoint::Member(m),
        None => Endpoint::Address(name.parse().unwrap()),
    };
    let d = evaluate(
        c.policy_set(),
        &Flow {
            src: find(from),
            dst: find(to),
            protocol,
            port,
        },
    );
    (d.verdict, d.rule.map(|r| c.policy_set().rule_id(r)))
}

fn ids(list: &[FilterRule]) -> Vec<&str> {
    list.iter().map(|r| r.id.as_str()).collect()
}

fn spec(c: &Compiled, name: &str) -> NodePolicySpec {
    c.node_policy(name).unwrap()
}

fn covers(set: &meshguard_crds::node_policy::AddressSet, ip: &str) -> bool {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    set.addresses
        .iter()
        .any(|a| a.parse::<std::net::IpAddr>().unwrap() == ip)
        || set
            .cidrs
            .iter()
            .any(|c| c.parse::<ipnet::IpNet>().unwrap().contains(&ip))
}

fn two() -> Vec<meshguard_policy::members::Member> {
    vec![
        member("a", &[("role", "web")], "100.64.0.1"),
        member("b", &[("role", "db")], "100.64.0.2"),
    ]
}

#[test]
fn s1_a_members_address_is_its_mesh_ip() {
    // A CIDR selector matches a member through its mesh IP, and the member
    // keeps being a member (name and label selectors still apply).
    let c = compiled(
        &two(),
        &[policy(
            "p",
            100,
            vec![rule(
                Action::Allow,
                vec![cidr("100.64.0.1/32", &[])],
                vec![nodes(&["b"])],
                None,
            )],
        )],
    );
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(1)).0,
        Verdict::Allow
    );
    assert_eq!(
        verdict(&c, "100.64.0.1", "b", Protocol::TCP, Some(1)).0,
        Verdict::Allow
    );
    assert!(c.are_peers("a", "b"));
    assert_eq!(spec(&c, "a").interface.mesh_ip, "100.64.0.1");
    assert_eq!(spec(&c, "b").peers[0].allowed_ips, vec!["100.64.0.1/32"]);
}

#[test]
fn s2_lower_priority_first_then_name_then_rule_order() {
    let deny = |name: &str, priority| {
        policy(
            name,
            priority,
            vec![rule(
                Action::Deny,
                vec![all()],
                vec![all()],
                Some(vec![tcp(22)]),
            )],
        )
    };
    let allow = |name: &str, priority| {
        policy(
            name,
            priority,
            vec![rule(
                Action::Allow,
                vec![all()],
                vec![all()],
                Some(vec![tcp(22)]),
            )],
        )
    };

    // Priority beats name.
    let c = compiled(&two(), &[deny("a-deny", 200), allow("z-allow", 100)]);
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(22)),
        (Verdict::Allow, Some("z-allow/0".into()))
    );
    // Equal priority: name order.
    let c = compiled(&two(), &[allow("b-allow", 100), deny("a-deny", 100)]);
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(22)),
        (Verdict::Deny, Some("a-deny/0".into()))
    );
    assert_eq!(
        ids(&spec(&c, "b").ingress),
        vec!["a-deny/0", "b-allow/0"],
        "lists keep the global order"
    );
    // Inside a policy: listed order, names in ids.
    let c = compiled(
        &two(),
        &[policy(
            "p",
            1,
            vec![
                named(
                    "first",
                    rule(Action::Deny, vec![all()], vec![all()], Some(vec![tcp(22)])),
                ),
                named(
                    "second",
                    rule(Action::Allow, vec![all()], vec![all()], None),
                ),
            ],
        )],
    );
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(22)),
        (Verdict::Deny, Some("p/first".into()))
    );
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(23)),
        (Verdict::Allow, Some("p/second".into()))
    );
}

#[test]
fn s2_log_rules_record_and_go_on() {
    let c = compiled(
        &two(),
        &[policy(
            "p",
            1,
            vec![
                named("trail", rule(Action::Log, vec![all()], vec![all()], None)),
                named(
                    "ok",
                    rule(Action::Allow, vec![all()], vec![all()], Some(vec![tcp(80)])),
                ),
            ],
        )],
    );
    let d = evaluate(
        c.policy_set(),
        &Flow {
            src: Endpoint::Member(c.member("a").unwrap()),
            dst: Endpoint::Member(c.member("b").unwrap()),
            protocol: Protocol::TCP,
            port: Some(80),
        },
    );
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(
        d.hits()
            .map(|s| c.policy_set().rule_id(s.rule))
            .collect::<Vec<_>>(),
        vec!["p/trail"]
    );
    let ingress = spec(&c, "b").ingress;
    assert_eq!(
        (ingress[0].id.as_str(), ingress[0].action),
        ("p/trail", Action::Log)
    );
    // A Log rule alone decides nothing: default deny.
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(81)),
        (Verdict::Deny, None)
    );
}

#[test]
fn s3_default_deny() {
    let c = compiled(&two(), &[]);
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(443)),
        (Verdict::Deny, None)
    );
    let s = spec(&c, "a");
    assert!(
        s.peers.is_empty()
            && s.ingress.is_empty()
            && s.egress.is_empty()
            && s.address_sets.is_empty()
    );
}

#[test]
fn s4_audit_mode_never_decides() {
    let policies = [
        audit(policy(
            "trial",
            1,
            vec![
                rule(Action::Deny, vec![all()], vec![all()], None),
                rule(
                    Action::Allow,
                    vec![all()],
                    vec![all()],
                    Some(vec![tcp(9100)]),
                ),
            ],
        )),
        policy(
            "real",
            100,
            vec![rule(
                Action::Allow,
                vec![all()],
                vec![all()],
                Some(vec![tcp(22)]),
            )],
        ),
    ];
    let c = compiled(&two(), &policies);
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(22)),
        (Verdict::Allow, Some("real/0".into())),
        "the audit Deny does not decide"
    );
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(9100)),
        (Verdict::Deny, None),
        "the audit Allow does not decide"
    );
    let d = evaluate(
        c.policy_set(),
        &Flow {
            src: Endpoint::Member(c.member("a").unwrap()),
            dst: Endpoint::Member(c.member("b").unwrap()),
            protocol: Protocol::TCP,
            port: Some(22),
        },
    );
    assert_eq!(
        d.steps[0].outcome,
        Outcome::WouldHave(Action::Deny),
        "counted where it would have matched"
    );
    let ingress = spec(&c, "b").ingress;
    assert!(ingress[0].audit && ingress[1].audit && !ingress[2].audit);
    assert_eq!(ids(&ingress), vec!["trial/0", "trial/1", "real/0"]);
}

#[test]
fn audit_peers_list_every_other_member_only_when_asked() {
    // Agent-wide audit (`meshguard-agent --enforcement audit`) installs these
    // too, so that flows to members the policies keep apart can be counted.
    let members = vec![
        member("a", &[("role", "web")], "100.64.0.1"),
        member("b", &[("role", "db")], "100.64.0.2"),
        member("c", &[("role", "ops")], "100.64.0.3"),
    ];
    let policies = [policy(
        "p",
        1,
        vec![rule(
            Action::Allow,
            vec![nodes(&["a"])],
            vec![nodes(&["b"])],
            Some(vec![tcp(5432)]),
        )],
    )];
    let inputs = meshguard_policy::compile::Inputs {
        members: &members,
        policies: &policies,
        chains: &[],
        secrets: &[],
        config_maps: &[],
        listen_port: 51820,
    };
    let plain = compiled(&members, &policies);
    let audited = meshguard_policy::compile::Compiler::default()
        .audit_peers(true)
        .compile(&inputs);
    let names = |peers: &[meshguard_crds::node_policy::Peer]| -> Vec<String> {
        peers.iter().map(|p| p.name.clone()).collect()
    };
    for m in ["a", "b", "c"] {
        assert!(spec(&plain, m).audit_peers.is_empty(), "{m}: not asked for");
        let (p, a) = (spec(&plain, m), spec(&audited, m));
        assert_eq!(a.peers, p.peers, "{m}: audit peers do not change the peers");
        assert_ne!(
            a.revision, p.revision,
            "{m}: the revision covers auditPeers"
        );
    }
    assert_eq!(names(&spec(&audited, "a").audit_peers), vec!["c"]);
    assert_eq!(names(&spec(&audited, "b").audit_peers), vec!["c"]);
    assert_eq!(names(&spec(&audited, "c").audit_peers), vec!["a", "b"]);
    let c_entry = &spec(&audited, "c").audit_peers[0];
    assert_eq!(c_entry.allowed_ips, vec!["100.64.0.1/32".to_string()]);
}

#[test]
fn s5_one_direction_allowed_opens_the_tunnel_both_ways() {
    // Replies ride on connection tracking in the agent; the compiler's part is
    // that both ends are peers and the opening direction passes both lists.
    let c = compiled(
        &two(),
        &[policy(
            "p",
            1,
            vec![rule(
                Action::Allow,
                vec![nodes(&["a"])],
                vec![nodes(&["b"])],
                Some(vec![tcp(5432)]),
            )],
        )],
    );
    assert!(c.are_peers("a", "b") && c.are_peers("b", "a"));
    assert_eq!(ids(&spec(&c, "a").egress), vec!["p/0"]);
    assert_eq!(ids(&spec(&c, "b").ingress), vec!["p/0"]);
    assert!(
        spec(&c, "a").ingress.is_empty(),
        "new connections from b to a stay denied"
    );
    assert_eq!(
        verdict(&c, "b", "a", Protocol::TCP, Some(5432)).0,
        Verdict::Deny
    );
}

#[test]
fn s6_peers_need_some_allowed_traffic_after_shadowing() {
    let three = vec![
        member("a", &[], "100.64.0.1"),
        member("b", &[], "100.64.0.2"),
        member("c", &[], "100.64.0.3"),
    ];
    // Shadowed completely: the Allow grants nothing.
    let c = compiled(
        &three,
        &[policy(
            "p",
            1,
            vec![
                rule(Action::Deny, vec![all()], vec![all()], None),
                rule(
                    Action::Allow,
                    vec![nodes(&["a"])],
                    vec![nodes(&["b"])],
                    Some(vec![tcp(22)]),
                ),
            ],
        )],
    );
    assert!(!c.are_peers("a", "b"));
    assert!(spec(&c, "a").peers.is_empty());
    // Shadowed in part: UDP is still allowed, so they are peers.
    let c = compiled(
        &three,
        &[policy(
            "p",
            1,
            vec![
                rule(
                    Action::Deny,
                    vec![all()],
                    vec![all()],
                    Some(vec![port(Protocol::TCP, None, None)]),
                ),
                rule(
                    Action::Allow,
                    vec![nodes(&["a"])],
                    vec![nodes(&["b"])],
                    None,
                ),
            ],
        )],
    );
    assert!(c.are_peers("a", "b") && !c.are_peers("a", "c") && !c.are_peers("b", "c"));
    // Either direction counts; audit and log rules grant nothing.
    let c = compiled(
        &three,
        &[
            policy(
                "p",
                1,
                vec![
                    rule(
                        Action::Allow,
                        vec![nodes(&["c"])],
                        vec![nodes(&["a"])],
                        Some(vec![icmp()]),
                    ),
                    rule(Action::Log, vec![all()], vec![all()], None),
                ],
            ),
            audit(policy(
                "q",
                1,
                vec![rule(Action::Allow, vec![all()], vec![all()], None)],
            )),
        ],
    );
    assert!(c.are_peers("a", "c") && c.are_peers("c", "a"));
    assert!(!c.are_peers("a", "b") && !c.are_peers("b", "c"));
    // Never its own peer, even when its whole class talks to itself.
    let c = compiled(
        &three,
        &[policy(
            "p",
            1,
            vec![rule(Action::Allow, vec![all()], vec![all()], None)],
        )],
    );
    let peers: Vec<String> = spec(&c, "a").peers.into_iter().map(|p| p.name).collect();
    assert_eq!(peers, vec!["b", "c"]);
}

#[test]
fn s7_both_ends_enforce_and_addresses_are_matched_as_packets() {
    let members = vec![
        member("db", &[("role", "db")], "100.64.0.1"),
        router(member("gw", &[], "100.64.0.9"), &["192.168.50.0/24"]),
    ];
    let policies = [policy(
        "backup",
        1,
        vec![named(
            "appliances",
            rule(
                Action::Allow,
                vec![labels(&[("role", "db")])],
                vec![cidr("192.168.50.0/24", &["192.168.50.128/25"])],
                Some(vec![tcp(873)]),
            ),
        )],
    )];
    let c = compiled(&members, &policies);
    // The source's egress and the router's ingress both carry the rule.
    let db = spec(&c, "db");
    let gw = spec(&c, "gw");
    assert_eq!(ids(&db.egress), vec!["backup/appliances"]);
    assert_eq!(ids(&gw.ingress), vec!["backup/appliances"]);
    let set = |s: &NodePolicySpec, name: &str| {
        s.address_sets
            .iter()
            .find(|a| a.name == name)
            .unwrap()
            .cidrs
            .clone()
    };
    assert_eq!(
        set(&db, &db.egress[0].set),
        vec!["192.168.50.0/25"],
        "except subtracted, as packet addresses"
    );
    // On the router, the rule covers the subnet's lower half only, not the router itself.
    assert_eq!(
        set(&gw, gw.ingress[0].local.as_ref().unwrap()),
        vec!["192.168.50.0/25"]
    );
    assert!(
        c.are_peers("db", "gw"),
        "traffic to a routed subnet makes its router a peer"
    );
    assert_eq!(
        db.peers[0].allowed_ips,
        vec!["100.64.0.9/32", "192.168.50.0/24"]
    );
    assert_eq!(
        verdict(&c, "db", "192.168.50.200", Protocol::TCP, Some(873)).0,
        Verdict::Deny
    );
    assert_eq!(
        verdict(&c, "db", "192.168.50.20", Protocol::TCP, Some(873)).0,
        Verdict::Allow
    );
}

/// CIDR selectors whose blocks lie inside a routed subnet, or cover it,
/// reach the router's rules for exactly their part of the subnet.
#[test]
fn s7b_blocks_inside_and_around_a_routed_subnet_reach_its_router() {
    let members = vec![
        member("db", &[("role", "db")], "100.64.0.1"),
        router(member("gw", &[], "100.64.0.9"), &["192.168.50.0/24"]),
    ];
    let from_db = || vec![labels(&[("role", "db")])];
    let policies = [policy(
        "backup",
        1,
        vec![
            named(
                "inside",
                rule(
                    Action::Allow,
                    from_db(),
                    vec![cidr("192.168.50.0/26", &[])],
                    Some(vec![tcp(873)]),
                ),
            ),
            named(
                "around",
                rule(
                    Action::Allow,
                    from_db(),
                    vec![cidr("192.168.0.0/16", &[])],
                    Some(vec![tcp(22)]),
                ),
            ),
        ],
    )];
    let c = compiled(&members, &policies);
    let gw = spec(&c, "gw");
    let local = |id: &str| {
        let rule = gw
            .ingress
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("{id} not on gw: {:?}", ids(&gw.ingress)));
        gw.address_sets
            .iter()
            .find(|a| Some(&a.name) == rule.local.as_ref())
            .unwrap()
            .clone()
    };
    let inside = local("backup/inside");
    assert!(covers(&inside, "192.168.50.10") && !covers(&inside, "192.168.50.100"));
    let around = local("backup/around");
    assert!(covers(&around, "192.168.50.10") && covers(&around, "192.168.50.100"));
}

#[test]
fn s8_tests_run_against_the_whole_enforce_set() {
    let mut tested = policy(
        "tested",
        500,
        vec![rule(
            Action::Allow,
            vec![all()],
            vec![all()],
            Some(vec![tcp(22)]),
        )],
    );
    let test = |from: &str, to: &str, port: i32, expect| meshguard_crds::PolicyTest {
        from: from.into(),
        to: to.into(),
        protocol: Protocol::TCP,
        port: Some(port),
        expect,
    };
    tested.spec.tests = vec![
        test("a", "b", 22, Verdict::Deny),
        test("a", "b", 22, Verdict::Allow),
        test("a", "nobody", 22, Verdict::Deny),
    ];
    let blocker = policy(
        "blocker",
        1,
        vec![named(
            "no-ssh-to-db",
            rule(
                Action::Deny,
                vec![all()],
                vec![labels(&[("role", "db")])],
                Some(vec![tcp(22)]),
            ),
        )],
    );
    let policies = [tested, blocker];
    let c = compiled(&two(), &policies);
    let outcomes = policy_tests::run(&policies, c.policy_set(), c.members());
    assert!(
        outcomes[0].passed(),
        "decided by the other policy: {}",
        outcomes[0]
    );
    assert!(!outcomes[1].passed());
    assert_eq!(
        outcomes[1].to_string(),
        "a -> b TCP/22: expected Allow, got Deny (decided by blocker/no-ssh-to-db)"
    );
    assert!(!outcomes[2].passed());
    assert_eq!(
        outcomes[2].to_string(),
        "a -> nobody TCP/22: expected Deny, could not run: \"nobody\" is neither a member nor an IP address"
    );
}

#[test]
fn s9_unknown_names_match_nothing_and_warn() {
    let c = compiled(
        &two(),
        &[policy(
            "p",
            1,
            vec![rule(
                Action::Allow,
                vec![nodes(&["a", "ghost"])],
                vec![nodes(&["ghost"])],
                None,
            )],
        )],
    );
    let warnings: Vec<String> = c.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![
            "warning: MeshPolicy/p: spec.rules[0].from[0].nodes: no member is named \"ghost\"; it matches nothing",
            "warning: MeshPolicy/p: spec.rules[0].to[0].nodes: no member is named \"ghost\"; it matches nothing",
        ]
    );
    assert!(!c.are_peers("a", "b"));
    assert!(
        spec(&c, "a").egress.is_empty(),
        "a rule whose other side matches nothing is left out"
    );
}

#[test]
fn s9_unreadable_rules_fail_closed() {
    // Validation skipped: selectors the compiler cannot read never widen access.
    let open = policy(
        "open",
        500,
        vec![rule(Action::Allow, vec![all()], vec![all()], None)],
    );
    let empty = meshguard_crds::PeerSelector::default();

    // A broken Allow grants nothing.
    let bad_allow = policy(
        "bad-allow",
        1,
        vec![rule(
            Action::Allow,
            vec![cidr("not-a-cidr", &[])],
            vec![nodes(&["b"])],
            Some(vec![tcp(22)]),
        )],
    );
    let c = compiled(&two(), &[bad_allow]);
    assert!(c.diagnostics().iter().any(|d| d.to_string() == "error: MeshPolicy/bad-allow: spec.rules[0].from[0]: \"not-a-cidr\" is not an IPv4 or IPv6 CIDR"));
    assert!(c.diagnostics().iter().any(|d| d.to_string() == "error: MeshPolicy/bad-allow: spec.rules[0]: this rule cannot be read and is left out (fails closed)"));
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(22)).0,
        Verdict::Deny
    );
    assert!(!c.are_peers("a", "b"));

    // A broken Deny denies more, not less: its unreadable side becomes everyone.
    let bad_deny = policy(
        "bad-deny",
        1,
        vec![rule(
            Action::Deny,
            vec![empty.clone()],
            vec![nodes(&["b"])],
            Some(vec![tcp(22)]),
        )],
    );
    let c = compiled(&two(), &[bad_deny, open.clone()]);
    assert!(c.diagnostics().iter().any(|d| {
        d.to_string()
            .contains("spec.rules[0].from[0]: the selector names no members")
    }));
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(22)),
        (Verdict::Deny, Some("bad-deny/0".into()))
    );
    assert_eq!(
        verdict(&c, "a", "b", Protocol::TCP, Some(23)).0,
        Verdict::Allow,
        "the readable parts still apply"
    );
    assert_eq!(
        verdict(&c, "b", "a", Protocol::TCP, Some(22)).0,
        Verdict::Allow,
        "the readable side is kept"
    );

    // `all: false` is not `all`.
    let not_all = meshguard_crds::PeerSelector {
        all: Some(false),
        ..Default::default()
    };
    let c = compiled(
        &two(),
        &[policy(
            "p",
            1,
            vec![rule(Action::Allow, vec![not_all], vec![all()], None)],
        )],
    );
    assert_eq!(verdict(&c, "a", "b", Protocol::ICMP, None).0, Verdict::Deny);
}

#[test]
fn quarantine_cuts_a_member_off() {
    let q = |v: &str| {
        member(
            "q",
            &[("role", "web"), ("meshguard.io/quarantine", v)],
            "100.64.0.3",
        )
    };
    let quarantine = policy(
        "quarantine",
        0,
        vec![
            rule(
                Action::Deny,
                vec![labels(&[("meshguard.io/quarantine", "true")])],
                vec![all()],
                None,
            ),
            rule(
                Action::Deny,
                vec![all()],
                vec![labels(&[("meshguard.io/quarantine", "true")])],
                None,
            ),
        ],
    );
    let open = policy(
        "open",
        100,
        vec![rule(Action::Allow, vec![all()], vec![all()], None)],
    );
    let mut members = two();
    members.push(q("false"));
    let c = compiled(&members, &[quarantine.clone(), open.clone()]);
    assert!(c.are_peers("a", "q"));
    members[2] = q("true");
    let c = compiled(&members, &[quarantine, open]);
    assert!(spec(&c, "q").peers.is_empty());
    assert!(!spec(&c, "a").peers.iter().any(|p| p.name == "q"));
    assert!(c.are_peers("a", "b"));
    assert_eq!(
        verdict(&c, "q", "a", Protocol::ICMP, None).1.as_deref(),
        Some("quarantine/0")
    );
}

#[test]
fn ipv6_members_and_sets() {
    let members = vec![
        member("a", &[], "fd00::1"),
        member("b", &[], "fd00::2"),
        member("c", &[], "100.64.0.3"),
    ];
    let c = compiled(
        &members,
        &[policy(
            "p",
            1,
            vec![rule(
                Action::Allow,
                vec![cidr("fd00::/64", &["fd00::2/128"])],
                vec![all()],
                Some(vec![tcp(443)]),
            )],
        )],
    );
    assert!(c.are_peers("a", "b") && c.are_peers("a", "c") && !c.are_peers("b", "c"));
    let s = spec(&c, "c");
    let set = s
        .address_sets
        .iter()
        .find(|x| x.name == s.ingress[0].set)
        .unwrap();
    assert!(
        set.cidrs
            .iter()
            .chain(&set.addresses)
            .all(|p| p.starts_with("fd00:"))
            && covers(set, "fd00::1")
            && covers(set, "fd00::ffff")
            && !covers(set, "fd00::2")
    );
    assert_eq!(spec(&c, "b").peers[0].allowed_ips, vec!["fd00::1/128"]);
}

#[test]
fn output_is_byte_identical_for_the_same_inputs() {
    let members = two();
    let policies = [policy(
        "p",
        1,
        vec![rule(
            Action::Allow,
            vec![all()],
            vec![labels(&[("role", "db")])],
            Some(vec![tcp(5432)]),
        )],
    )];
    let render = |c: &Compiled| serde_json::to_string(&c.node_policy("b").unwrap()).unwrap();
    assert_eq!(
        render(&compiled(&members, &policies)),
        render(&compiled(&members, &policies))
    );
}
