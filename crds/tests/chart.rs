//! The Helm chart, rendered offline by the Helm SDK (`scripts/chart.py`):
//! strict lint, every rendering accepted by `kubernetes-validate --strict`,
//! values reaching the containers they configure, bad values refused naming
//! the field, and `deploy/meshguard.yaml` equal to the default rendering.
//! The operator's and the agent's own tests check the RBAC in
//! `deploy/meshguard.yaml` against the requests their code makes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{kubernetes_validate, repo_root, venv_tool};

fn chart(command: &str, values: &Value, release: &str, namespace: &str) -> Output {
    Command::new(venv_tool("python"))
        .arg(repo_root().join("scripts/chart.py"))
        .args([command, "--values", &values.to_string()])
        .args(["--release", release, "--namespace", namespace])
        .output()
        .expect("run scripts/chart.py")
}

fn render_text(values: &Value) -> String {
    render_hooks(values, "include")
}

/// `hooks`: `include` (as `helm template`), `exclude` or `only`.
fn render_hooks(values: &Value, hooks: &str) -> String {
    let output = Command::new(venv_tool("python"))
        .arg(repo_root().join("scripts/chart.py"))
        .args(["render", "--values", &values.to_string(), "--hooks", hooks])
        .output()
        .expect("run scripts/chart.py");
    assert!(
        output.status.success(),
        "render {values}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn render(values: &Value) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&render_text(values))
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendering"))
}

fn env(container: &Value) -> Vec<(String, Value)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = if e["value"].is_null() {
                e["valueFrom"].clone()
            } else {
                e["value"].clone()
            };
            (e["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn env_value(container: &Value, name: &str) -> String {
    env(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{name} not set in {}", container["name"]))
}

fn container<'a>(pod: &'a Value, field: &str, name: &str) -> Option<&'a Value> {
    pod["spec"]["template"]["spec"][field]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

#[test]
fn strict_lint_finds_nothing_worse_than_information() {
    for values in [json!({}), json!({ "agent": { "wireguard": "kernel" } })] {
        let output = chart("lint", &values, "meshguard", "meshguard-system");
        assert!(
            output.status.success(),
            "helm lint --strict {values}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_rendering_is_valid_kubernetes() {
    let cases = [
        ("meshguard", "meshguard-system", json!({})),
        (
            "edge",
            "net",
            json!({
                "agent": {
                    "wireguard": "kernel",
                    "enforcement": "audit",
                    "backend": "ebpf",
                    "extProc": { "listen": "127.0.0.1:9901", "unmatchedRoute": "allow" }
                },
                "operator": { "replicas": 1, "leaderElect": false },
                "metrics": { "grafanaDashboard": { "enabled": true } },
                "logFormat": "json",
                "imagePullSecrets": [{ "name": "registry" }],
            }),
        ),
    ];
    let dir = std::env::temp_dir().join(format!("meshguard-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (release, namespace, values)) in cases.iter().enumerate() {
        let output = chart("render", values, release, namespace);
        assert!(output.status.success(), "{values}");
        let text = String::from_utf8(output.stdout).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple::<Value>(&text)
            .unwrap()
            .into_iter()
            .filter(|d| !d.is_null())
            .collect();
        // 15 by default (two operator replicas: a PodDisruptionBudget) and
        // the uninstall hook's 5; "edge" has one replica (no budget) and the
        // dashboard's ConfigMap.
        assert_eq!(docs.len(), 20, "{values}: objects rendered");
        for doc in &docs {
            let name = doc["metadata"]["name"].as_str().unwrap();
            assert!(name.starts_with(release), "{name} carries the release name");
            let kind = doc["kind"].as_str().unwrap();
            // Cluster-scoped: RBAC's Cluster* and the admission policy.
            if kind.starts_with("Cluster") || kind.starts_with("ValidatingAdmissionPolicy") {
                assert!(doc["metadata"]["namespace"].is_null(), "{name}");
            } else {
                assert_eq!(doc["metadata"]["namespace"], *namespace, "{name}");
            }
        }
        let file = dir.join(format!("rendering-{i}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let report = kubernetes_validate(&[file]);
        assert_eq!(
            report
                .lines()
                .filter(|l| l.contains(" passed for resource "))
                .count(),
            docs.len(),
            "{report}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn userspace_mode_runs_boringtun_beside_the_agent_on_one_socket() {
    let docs = render(&json!({ "mesh": { "interface": "wg-mesh" } }));
    let agent = find(&docs, "DaemonSet", "meshguard-agent");
    let pod = &agent["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let daemon = container(agent, "initContainers", "wireguard").expect("boringtun sidecar");
    assert_eq!(daemon["restartPolicy"], "Always", "a native sidecar");
    let args = daemon["command"].as_array().unwrap();
    assert_eq!(args[0], "boringtun-cli");
    assert_eq!(args.last().unwrap(), "wg-mesh");
    let main = container(agent, "containers", "agent").unwrap();
    assert_eq!(env_value(main, "MESHGUARD_WIREGUARD"), "uapi");
    assert_eq!(env_value(main, "MESHGUARD_INTERFACE"), "wg-mesh");
    let socket = env_value(main, "MESHGUARD_UAPI_SOCKET");
    assert_eq!(socket, "/var/run/wireguard/wg-mesh.sock");
    // The sidecar's startup probe waits for the very socket the agent dials,
    // in a directory both containers mount.
    assert_eq!(
        daemon["startupProbe"]["exec"]["command"][2],
        socket.as_str()
    );
    let mounted = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/var/run/wireguard")
    };
    assert!(mounted(daemon) && mounted(main));
}

#[test]
fn kernel_mode_has_no_daemon_and_audit_agents_get_audit_peers() {
    let docs = render(&json!({ "agent": { "wireguard": "kernel", "enforcement": "audit" } }));
    let agent = find(&docs, "DaemonSet", "meshguard-agent");
    assert!(agent["spec"]["template"]["spec"]["initContainers"].is_null());
    let main = container(agent, "containers", "agent").unwrap();
    assert_eq!(env_value(main, "MESHGUARD_WIREGUARD"), "kernel");
    assert_eq!(env_value(main, "MESHGUARD_ENFORCEMENT"), "audit");
    assert!(
        !main["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "wireguard-sockets")
    );
    assert!(
        env(main)
            .iter()
            .all(|(n, _)| n != "MESHGUARD_EXT_PROC_LISTEN"),
        "chains are served only when asked"
    );
    // Without auditPeers an audit-mode agent would have no peers to audit.
    let operator = find(&docs, "Deployment", "meshguard-operator");
    let op = container(operator, "containers", "operator").unwrap();
    assert_eq!(env_value(op, "MESHGUARD_AUDIT_PEERS"), "true");
    let docs = render(&json!({}));
    let operator = find(&docs, "Deployment", "meshguard-operator");
    let op = container(operator, "containers", "operator").unwrap();
    assert_eq!(env_value(op, "MESHGUARD_AUDIT_PEERS"), "false");
}

/// The eBPF backend gets exactly what it needs beyond iptables' (BPF, the
/// node's bpffs; e2e/tests/ebpf.rs runs it with these capabilities and no
/// others) and the iptables backend none of it.
#[test]
fn the_ebpf_backend_adds_exactly_its_capabilities_and_the_bpffs() {
    let agent_of = |backend: &str| {
        let docs = render(&json!({ "agent": { "backend": backend } }));
        let agent = find(&docs, "DaemonSet", "meshguard-agent").clone();
        let main = container(&agent, "containers", "agent").unwrap().clone();
        let capabilities: Vec<String> = main["securityContext"]["capabilities"]["add"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let mounts: Vec<String> = main["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap().to_owned())
            .collect();
        let volumes: Vec<Value> = agent["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .clone();
        (
            env_value(&main, "MESHGUARD_BACKEND"),
            capabilities,
            mounts,
            volumes,
        )
    };
    let (backend, base, base_mounts, base_volumes) = agent_of("iptables");
    assert_eq!(backend, "iptables");
    assert_eq!(base, ["NET_ADMIN", "NET_RAW"]);
    assert!(
        !base_mounts.iter().any(|m| m.contains("bpf")),
        "{base_mounts:?}"
    );
    for kind in ["ebpf", "auto"] {
        let (backend, capabilities, mounts, volumes) = agent_of(kind);
        assert_eq!(backend, kind);
        assert_eq!(capabilities, ["NET_ADMIN", "NET_RAW", "BPF"], "{kind}");
        let added: Vec<&String> = mounts.iter().filter(|m| !base_mounts.contains(m)).collect();
        assert_eq!(added, ["/sys/fs/bpf"], "{kind}");
        let new: Vec<&Value> = volumes
            .iter()
            .filter(|v| !base_volumes.contains(v))
            .collect();
        assert_eq!(new.len(), 1, "{kind}: {new:?}");
        assert_eq!(new[0]["hostPath"]["path"], "/sys/fs/bpf");
        assert_eq!(
            new[0]["hostPath"]["type"], "Directory",
            "the node's, never created empty"
        );
    }
    // Not a value the agent knows: refused by the schema.
    let output = chart(
        "render",
        &json!({ "agent": { "backend": "nftables" } }),
        "meshguard",
        "meshguard-system",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("backend"));
}

/// scripts/cel_check.py on `input` (a policy and requests).
fn cel_check(input: &Value) -> Output {
    let mut child = Command::new(venv_tool("python"))
        .arg(repo_root().join("scripts/cel_check.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run scripts/cel_check.py");
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        input.to_string().as_bytes(),
    )
    .unwrap();
    child.wait_with_output().unwrap()
}

/// The ValidatingAdmissionPolicy that keeps each agent to its own node,
/// evaluated by cel-python (scripts/cel_check.py, which also fails on an
/// expression that does not compile) on admission requests as the API
/// server would send them.
#[test]
fn agents_write_only_their_own_node() {
    let docs = render(&json!({}));
    let policy = find(
        &docs,
        "ValidatingAdmissionPolicy",
        "meshguard-agent-own-node",
    );
    let binding = find(
        &docs,
        "ValidatingAdmissionPolicyBinding",
        "meshguard-agent-own-node",
    );
    assert_eq!(binding["spec"]["policyName"], "meshguard-agent-own-node");
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let agent = "system:serviceaccount:meshguard-system:meshguard-agent";
    let operator = "system:serviceaccount:meshguard-system:meshguard-operator";
    let request = |user: &str, node: Option<&str>, resource: &str, sub: &str, name: &str| {
        let mut user_info = json!({ "username": user, "groups": ["system:serviceaccounts"] });
        if let Some(node) = node {
            user_info["extra"] = json!({
                "authentication.kubernetes.io/node-name": [node],
                "authentication.kubernetes.io/pod-name": ["meshguard-agent-x1"],
            });
        }
        json!({
            "operation": "UPDATE",
            "resource": { "group": "meshguard.io", "version": "v1alpha1", "resource": resource },
            "subResource": sub,
            "name": name,
            "userInfo": user_info,
        })
    };
    let cases = [
        (
            "own MeshNode",
            request(agent, Some("node-a"), "meshnodes", "", "node-a"),
            true,
            true,
        ),
        (
            "own NodePolicy status",
            request(agent, Some("node-a"), "nodepolicies", "status", "node-a"),
            true,
            true,
        ),
        (
            "another node's MeshNode",
            request(agent, Some("node-a"), "meshnodes", "", "node-b"),
            true,
            false,
        ),
        (
            "another node's NodePolicy status",
            request(agent, Some("node-a"), "nodepolicies", "status", "node-b"),
            true,
            false,
        ),
        (
            "no node claim",
            request(agent, None, "meshnodes", "", "node-a"),
            true,
            false,
        ),
        (
            "the operator",
            request(operator, None, "nodepolicies", "status", "node-b"),
            false,
            true,
        ),
        (
            "a NodePolicy's spec (RBAC's)",
            request(agent, Some("node-a"), "nodepolicies", "", "node-b"),
            false,
            true,
        ),
    ];
    let output = cel_check(&json!({
        "policy": policy,
        "requests": cases.iter().map(|(_, r, _, _)| r.clone()).collect::<Vec<_>>(),
    }));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), cases.len());
    for ((what, _, matched, allowed), answer) in cases.iter().zip(&answers) {
        assert_eq!(
            (answer["matched"].as_bool(), answer["allowed"].as_bool()),
            (Some(*matched), Some(*allowed)),
            "{what}: {answer}"
        );
    }
    // The refusals say why.
    assert!(
        answers[2]["messages"][0]
            .as_str()
            .unwrap()
            .contains("node-a may write only its own"),
        "{}",
        answers[2]
    );
    assert!(
        answers[4]["messages"][0]
            .as_str()
            .unwrap()
            .contains("no authentication.kubernetes.io/node-name claim"),
        "{}",
        answers[4]
    );

    // An expression that does not compile fails the check.
    let mut broken = policy.clone();
    broken["spec"]["validations"][0]["expression"] = json!("request.name ==");
    let output = cel_check(&json!({ "policy": broken, "requests": [] }));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("validations[0]: does not compile"));

    // Off when asked.
    let docs = render(&json!({ "agent": { "nodeRestriction": false } }));
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ValidatingAdmissionPolicy")
    );
}

/// Day-two shape: a drain takes one operator at a time, replicas spread
/// over nodes, probes on /healthz and /readyz; the agents roll one node at
/// a time with the old agent gone before the new one starts.
#[test]
fn the_operator_survives_drains_and_agents_never_overlap() {
    let docs = render(&json!({}));
    let pdb = find(&docs, "PodDisruptionBudget", "meshguard-operator");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let operator = find(&docs, "Deployment", "meshguard-operator");
    let selector = &operator["spec"]["selector"]["matchLabels"];
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    let spread = &operator["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(&spread["labelSelector"]["matchLabels"], selector);
    let op = container(operator, "containers", "operator").unwrap();
    assert_eq!(op["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(op["readinessProbe"]["httpGet"]["path"], "/readyz");
    let agent = find(&docs, "DaemonSet", "meshguard-agent");
    let rolling = &agent["spec"]["updateStrategy"]["rollingUpdate"];
    assert_eq!(
        (
            rolling["maxUnavailable"].as_i64(),
            rolling["maxSurge"].as_i64()
        ),
        (Some(1), Some(0))
    );
    // One replica: no budget that would block every drain.
    let docs = render(&json!({ "operator": { "replicas": 1, "leaderElect": false } }));
    assert!(!docs.iter().any(|d| d["kind"] == "PodDisruptionBudget"));
}

/// Prometheus finds both: a metrics Service per component on the port the
/// pods listen on (the agents' headless: one endpoint per node), and with
/// metrics.serviceMonitor.enabled a ServiceMonitor selecting each Service.
#[test]
fn metrics_are_reachable_through_services_and_service_monitors() {
    let docs = render(&json!({ "metrics": { "serviceMonitor": {
        "enabled": true, "labels": { "release": "prometheus" }, "interval": "15s" } } }));
    for (component, workload, kind, port) in [
        ("operator", "meshguard-operator", "Deployment", 9470),
        ("agent", "meshguard-agent", "DaemonSet", 9471),
    ] {
        let service = find(&docs, "Service", &format!("{workload}-metrics"));
        let pod_labels = &find(&docs, kind, workload)["spec"]["template"]["metadata"]["labels"];
        for (k, v) in service["spec"]["selector"].as_object().unwrap() {
            assert_eq!(
                &pod_labels[k], v,
                "{component}: the Service selects its pods"
            );
        }
        let main = container(find(&docs, kind, workload), "containers", component).unwrap();
        let listens = main["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "metrics")
            .unwrap();
        assert_eq!(listens["containerPort"], port);
        assert_eq!(service["spec"]["ports"][0]["port"], port);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
        let monitor = find(&docs, "ServiceMonitor", workload);
        assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
        for (k, v) in monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(
                &service["metadata"]["labels"][k], v,
                "{component}: the monitor selects its Service"
            );
        }
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
        assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    }
    assert!(find(&docs, "Service", "meshguard-agent-metrics")["spec"]["clusterIP"] == "None");
    // An unready pod is still scraped: it is unready when its metrics say
    // why (a watch out of step with the API), and its alert needs them.
    for workload in ["meshguard-operator", "meshguard-agent"] {
        assert_eq!(
            find(&docs, "Service", &format!("{workload}-metrics"))["spec"]["publishNotReadyAddresses"],
            true,
            "{workload}"
        );
    }
    // Off by default: no ServiceMonitor without the Prometheus Operator.
    assert!(
        !render(&json!({}))
            .iter()
            .any(|d| d["kind"] == "ServiceMonitor")
    );
}

/// The uninstall hook (`helm uninstall`'s pre-delete): RBAC, then a
/// teardown DaemonSet placed, configured and privileged exactly as the
/// agents are (so it runs on each of their nodes and finds what they made),
/// then the Job Helm waits for, naming both DaemonSets. Off with
/// uninstall.teardown=false.
#[test]
fn the_uninstall_hook_reaches_every_node_the_agents_run_on() {
    let values = json!({
        "agent": {
            "backend": "ebpf", "wireguard": "kernel", "stateDir": "/opt/meshguard",
            "nodeSelector": { "mesh": "yes" },
            "tolerations": [{ "operator": "Exists" }],
            "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "edge", "operator": "DoesNotExist" }] }] } } },
            "priorityClassName": "system-node-critical"
        },
        "mesh": { "interface": "wg-mesh", "cidr": "100.100.0.0/16" },
        "uninstall": { "timeout": "3m" },
    });
    let docs = render(&values);
    let hooks: Vec<&Value> = docs
        .iter()
        .filter(|d| !d["metadata"]["annotations"]["helm.sh/hook"].is_null())
        .collect();
    let weights: Vec<(String, String)> = hooks
        .iter()
        .map(|d| {
            let annotations = &d["metadata"]["annotations"];
            assert_eq!(annotations["helm.sh/hook"], "pre-delete");
            assert_eq!(
                annotations["helm.sh/hook-delete-policy"],
                "before-hook-creation,hook-succeeded"
            );
            (
                d["kind"].as_str().unwrap().to_owned(),
                annotations["helm.sh/hook-weight"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let weight = |kind: &str| &weights.iter().find(|(k, _)| k == kind).unwrap().1;
    assert_eq!(weights.len(), 5, "{weights:?}");
    for kind in ["ServiceAccount", "Role", "RoleBinding"] {
        assert_eq!(weight(kind), "-10", "{kind} before what uses it");
    }
    assert_eq!(weight("DaemonSet"), "-5");
    assert_eq!(weight("Job"), "0", "the Job last: Helm waits for it");

    let agent = find(&docs, "DaemonSet", "meshguard-agent");
    let teardown = find(&docs, "DaemonSet", "meshguard-teardown");
    let (pod, agent_pod) = (
        &teardown["spec"]["template"]["spec"],
        &agent["spec"]["template"]["spec"],
    );
    for field in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
        "hostNetwork",
    ] {
        assert!(!agent_pod[field].is_null(), "{field}");
        assert_eq!(
            pod[field], agent_pod[field],
            "{field}: where the agents run"
        );
    }
    let (tearing, running) = (
        container(teardown, "containers", "teardown").unwrap(),
        container(agent, "containers", "agent").unwrap(),
    );
    for name in [
        "MESHGUARD_INTERFACE",
        "MESHGUARD_MESH_CIDR",
        "MESHGUARD_WIREGUARD",
        "MESHGUARD_UAPI_SOCKET",
        "MESHGUARD_AGENT_LOCK",
    ] {
        assert_eq!(env_value(tearing, name), env_value(running, name), "{name}");
    }
    assert_eq!(env_value(tearing, "MESHGUARD_INTERFACE"), "wg-mesh");
    assert_eq!(
        env_value(tearing, "MESHGUARD_AGENT_LOCK"),
        "/opt/meshguard/wg-mesh.lock"
    );
    assert_eq!(
        tearing["securityContext"]["capabilities"],
        running["securityContext"]["capabilities"]
    );
    // Every host path the agent mounts, mounted at the same place.
    let host_mounts = |pod: &Value, main: &Value| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| !v["hostPath"].is_null())
            .map(|v| {
                let at = main["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == v["name"])
                    .unwrap();
                (
                    v["hostPath"]["path"].as_str().unwrap().to_owned(),
                    at["mountPath"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let mounted = host_mounts(pod, tearing);
    assert_eq!(mounted, host_mounts(agent_pod, running));
    assert!(mounted.contains(&("/sys/fs/bpf".into(), "/sys/fs/bpf".into())));
    assert!(mounted.contains(&("/opt/meshguard".into(), "/opt/meshguard".into())));
    assert_eq!(
        tearing["command"],
        json!([
            "meshguard-agent",
            "teardown",
            "--wait-for-agent",
            "--hold",
            "--done-file=/run/teardown/done"
        ])
    );
    assert_eq!(
        tearing["readinessProbe"]["exec"]["command"],
        json!(["test", "-f", "/run/teardown/done"])
    );
    assert_eq!(pod["automountServiceAccountToken"], false);

    let job = find(&docs, "Job", "meshguard-uninstall");
    let job_pod = &job["spec"]["template"]["spec"];
    let args: Vec<&str> = job_pod["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "meshguard-operator",
            "uninstall",
            "--namespace=meshguard-system",
            "--agent-daemonset=meshguard-agent",
            "--teardown-daemonset=meshguard-teardown",
            "--timeout=3m",
        ]
    );
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job_pod["serviceAccountName"], "meshguard-uninstall");
    let binding = find(&docs, "RoleBinding", "meshguard-uninstall");
    assert_eq!(binding["roleRef"]["name"], "meshguard-uninstall");
    assert_eq!(binding["subjects"][0]["name"], "meshguard-uninstall");
    // Only the agents' DaemonSet may be deleted.
    let role = find(&docs, "Role", "meshguard-uninstall");
    let deletes: Vec<&Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verbs"].as_array().unwrap().contains(&json!("delete")))
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["resourceNames"], json!(["meshguard-agent"]));

    let off = render(&json!({ "uninstall": { "teardown": false } }));
    assert!(
        !off.iter()
            .any(|d| !d["metadata"]["annotations"]["helm.sh/hook"].is_null())
    );
}

/// metrics.grafanaDashboard: docs/grafana/meshguard.json, unchanged, in a
/// ConfigMap Grafana's sidecar loads by its label; off by default. (The
/// panels' queries are checked against real scrapes in e2e/tests/l7.rs.)
#[test]
fn the_dashboard_ships_in_a_config_map_for_grafanas_sidecar() {
    let docs_copy =
        std::fs::read_to_string(repo_root().join("docs/grafana/meshguard.json")).unwrap();
    assert_eq!(
        std::fs::read_to_string(repo_root().join("charts/meshguard/dashboards/meshguard.json"))
            .unwrap(),
        docs_copy,
        "docs/grafana/meshguard.json is the chart's dashboard (copy it over)"
    );
    let dashboard: Value = serde_json::from_str(&docs_copy).unwrap();
    assert_eq!(dashboard["uid"], "meshguard");

    let docs = render(&json!({ "metrics": { "grafanaDashboard": { "enabled": true } } }));
    let config_map = find(&docs, "ConfigMap", "meshguard-dashboard");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(config_map["metadata"]["namespace"], "meshguard-system");
    let shipped: Value =
        serde_json::from_str(config_map["data"]["meshguard.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard);

    let docs = render(&json!({ "metrics": { "grafanaDashboard": {
        "enabled": true, "namespace": "monitoring",
        "labels": { "dashboards": "network" }, "annotations": { "grafana_folder": "Network" } } } }));
    let config_map = find(&docs, "ConfigMap", "meshguard-dashboard");
    assert_eq!(config_map["metadata"]["namespace"], "monitoring");
    assert_eq!(config_map["metadata"]["labels"]["dashboards"], "network");
    // Helm merges maps: the default label stays unless set to null.
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["metadata"]["annotations"]["grafana_folder"],
        "Network"
    );

    assert!(!render(&json!({})).iter().any(|d| d["kind"] == "ConfigMap"));
}

/// The alerts (metrics.prometheusRule), checked by promtool from Debian's
/// prometheus package: the rules load, and each alert fires on the series
/// it is for, with its labels and text, and not on a healthy agent.
#[test]
fn the_alerts_fire_when_they_should_by_promtool() {
    let docs = render(&json!({ "metrics": { "prometheusRule": {
        "enabled": true, "labels": { "release": "prometheus" } } } }));
    let rule = find(&docs, "PrometheusRule", "meshguard");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let dir = std::env::temp_dir().join(format!("meshguard-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // JSON is YAML: promtool reads both.
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        json!({ "groups": rule["spec"]["groups"] }).to_string(),
    )
    .unwrap();
    let promtool = |args: &[&str]| {
        Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian's prometheus package: make deps)")
    };
    let checked = promtool(&["check", "rules", "rules.yaml"]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );

    let warning = |extra: Value| {
        let mut labels = json!({ "severity": "warning" });
        for (k, v) in extra.as_object().unwrap() {
            labels[k] = v.clone();
        }
        labels
    };
    let tests = |cases: Value| json!({ "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": cases });
    let pod = "meshguard-agent-x1";
    let cases = json!([
        {
            "interval": "1m",
            "input_series": [
                { "series": format!("meshguard_agent_latest_applied{{pod=\"{pod}\"}}"), "values": "1 1 0x20" },
                { "series": format!("meshguard_agent_applies_total{{pod=\"{pod}\",result=\"error\"}}"), "values": "0 0 1x20" },
                { "series": format!("meshguard_agent_drift_repairs_total{{pod=\"{pod}\",kind=\"rules\"}}"), "values": "0+1x20" },
                { "series": "meshguard_operator_rejected_objects{pod=\"meshguard-operator-0\"}", "values": "0 1x20" },
                { "series": "meshguard_agent_latest_applied{pod=\"healthy\"}", "values": "1x20" },
                // Out of step from minute 3 to 12 (9 minutes); a blip of 2.
                { "series": format!("meshguard_agent_watch_synced{{pod=\"{pod}\",watch=\"NodePolicy\"}}"), "values": "1 1 1 0x8 1x8" },
                { "series": "meshguard_agent_watch_synced{pod=\"blip\",watch=\"NodePolicy\"}", "values": "1 0 0 1x17" },
                { "series": "meshguard_operator_watch_synced{pod=\"meshguard-operator-0\",watch=\"MeshPolicy\"}", "values": "1 0x19" },
                // A leader to minute 5, then none; a second replica acting from 12.
                { "series": "meshguard_operator_leader{pod=\"meshguard-operator-0\"}", "values": "1x5 0x6 1x8" },
                { "series": "meshguard_operator_leader{pod=\"meshguard-operator-1\"}", "values": "0x12 1x7" },
            ],
            "alert_rule_test": [
                // Failing since minute 2: pending for 10 minutes, then firing.
                { "eval_time": "5m", "alertname": "MeshguardAgentNotApplied", "exp_alerts": [] },
                { "eval_time": "13m", "alertname": "MeshguardAgentNotApplied", "exp_alerts": [{
                    "exp_labels": warning(json!({ "pod": pod })),
                    "exp_annotations": {
                        "summary": format!("meshguard agent {pod} has not enforced its latest NodePolicy revision for 10m"),
                        "description": "The previous revision stays enforced; the NodePolicy's Applied condition says why (kubectl get nodepolicy <node> -o yaml).",
                    },
                }] },
                { "eval_time": "4m", "alertname": "MeshguardAgentApplyFailures", "exp_alerts": [{
                    "exp_labels": warning(json!({ "pod": pod, "result": "error" })),
                    "exp_annotations": { "summary": format!("meshguard agent {pod} failed to apply a NodePolicy revision in the last 15 minutes") },
                }] },
                { "eval_time": "2m", "alertname": "MeshguardDriftRepairedRepeatedly", "exp_alerts": [] },
                { "eval_time": "10m", "alertname": "MeshguardDriftRepairedRepeatedly", "exp_alerts": [{
                    "exp_labels": warning(json!({ "pod": pod, "kind": "rules" })),
                    "exp_annotations": { "summary": format!("meshguard agent {pod} repaired rules drift more than 3 times in an hour") },
                }] },
                { "eval_time": "7m", "alertname": "MeshguardAgentOutOfSync", "exp_alerts": [] },
                { "eval_time": "9m", "alertname": "MeshguardAgentOutOfSync", "exp_alerts": [{
                    "exp_labels": warning(json!({ "pod": pod, "watch": "NodePolicy" })),
                    "exp_annotations": {
                        "summary": format!("meshguard agent {pod} has been out of step with the API (NodePolicy watch) for 5m"),
                        "description": "The node keeps enforcing the last NodePolicy it applied; changes do not reach it. The agent's /readyz and log say why.",
                    },
                }] },
                { "eval_time": "14m", "alertname": "MeshguardAgentOutOfSync", "exp_alerts": [] },
                { "eval_time": "7m", "alertname": "MeshguardOperatorOutOfSync", "exp_alerts": [{
                    "exp_labels": warning(json!({ "pod": "meshguard-operator-0", "watch": "MeshPolicy" })),
                    "exp_annotations": {
                        "summary": "meshguard operator meshguard-operator-0 has been out of step with the API (MeshPolicy watch) for 5m",
                        "description": "It works from what it last saw: changes of that kind are not compiled. Its /readyz and log say why.",
                    },
                }] },
                { "eval_time": "5m", "alertname": "MeshguardOperatorLeadership", "exp_alerts": [] },
                { "eval_time": "11m", "alertname": "MeshguardOperatorLeadership", "exp_alerts": [{
                    "exp_labels": warning(json!({})),
                    "exp_annotations": { "summary": "0 meshguard operator replicas act; exactly one should" },
                }] },
                { "eval_time": "18m", "alertname": "MeshguardOperatorLeadership", "exp_alerts": [{
                    "exp_labels": warning(json!({})),
                    "exp_annotations": { "summary": "2 meshguard operator replicas act; exactly one should" },
                }] },
                { "eval_time": "8m", "alertname": "MeshguardObjectRejected", "exp_alerts": [{
                    "exp_labels": warning(json!({ "pod": "meshguard-operator-0" })),
                    "exp_annotations": { "summary": "1 MeshPolicies or PolicyChains are rejected (Accepted=False); their last accepted versions stay enforced" },
                }] },
            ],
        },
    ]);
    std::fs::write(dir.join("tests.yaml"), tests(cases).to_string()).unwrap();
    let tested = promtool(&["test", "rules", "tests.yaml"]);
    assert!(
        tested.status.success(),
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    // promtool does fail a wrong expectation: the healthy agent alerting.
    let wrong = json!([{
        "interval": "1m",
        "input_series": [{ "series": "meshguard_agent_latest_applied{pod=\"healthy\"}", "values": "1x20" }],
        "alert_rule_test": [{ "eval_time": "15m", "alertname": "MeshguardAgentNotApplied", "exp_alerts": [{
            "exp_labels": warning(json!({ "pod": "healthy" })),
        }] }],
    }]);
    std::fs::write(dir.join("wrong.yaml"), tests(wrong).to_string()).unwrap();
    assert!(!promtool(&["test", "rules", "wrong.yaml"]).status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ext_proc_is_served_where_the_values_say() {
    let docs = render(&json!({ "agent": { "extProc": {
        "listen": "unix:/run/meshguard/ext-proc.sock", "jwks": { "refetchInterval": "1m" }
    } } }));
    let agent = find(&docs, "DaemonSet", "meshguard-agent");
    let main = container(agent, "containers", "agent").unwrap();
    assert_eq!(
        env_value(main, "MESHGUARD_EXT_PROC_LISTEN"),
        "unix:/run/meshguard/ext-proc.sock"
    );
    assert_eq!(env_value(main, "MESHGUARD_UNMATCHED_ROUTE"), "deny");
    // The agent's own defaults unless a value says otherwise.
    assert_eq!(env_value(main, "MESHGUARD_JWKS_TIMEOUT"), "5s");
    assert_eq!(env_value(main, "MESHGUARD_JWKS_REFRESH"), "5m");
    assert_eq!(env_value(main, "MESHGUARD_JWKS_REFETCH_INTERVAL"), "1m");
}

#[test]
fn operator_and_agents_agree_on_the_mesh() {
    let docs = render(&json!({ "mesh": { "cidr": "10.200.0.0/16", "listenPort": 51999 } }));
    let operator = find(&docs, "Deployment", "meshguard-operator");
    let op = container(operator, "containers", "operator").unwrap();
    let agent = find(&docs, "DaemonSet", "meshguard-agent");
    let main = container(agent, "containers", "agent").unwrap();
    for (name, expected) in [
        ("MESHGUARD_MESH_CIDR", "10.200.0.0/16"),
        ("MESHGUARD_LISTEN_PORT", "51999"),
    ] {
        assert_eq!(env_value(op, name), expected);
        assert_eq!(env_value(main, name), expected);
    }
    // The Lease lives in the release namespace, where the Role grants it.
    let lease_ns = env(op)
        .into_iter()
        .find(|(n, _)| n == "MESHGUARD_LEASE_NAMESPACE")
        .unwrap()
        .1;
    assert_eq!(lease_ns["fieldRef"]["fieldPath"], "metadata.namespace");
    let role = find(&docs, "Role", "meshguard-operator-leader-election");
    assert_eq!(role["metadata"]["namespace"], "meshguard-system");
    assert_eq!(
        env_value(op, "MESHGUARD_LEASE_NAME"),
        "meshguard-operator",
        "the lease name the Role's grant covers"
    );
    // The agent learns its node and address from the downward API.
    let from = |name: &str| {
        env(main).into_iter().find(|(n, _)| n == name).unwrap().1["fieldRef"]["fieldPath"].clone()
    };
    assert_eq!(from("MESHGUARD_NODE"), "spec.nodeName");
    assert_eq!(from("MESHGUARD_NODE_IP"), "status.hostIP");
}

#[test]
fn bad_values_are_refused_naming_the_field() {
    for (values, field) in [
        (
            json!({ "agent": { "wireguard": "wg" } }),
            "/agent/wireguard",
        ),
        (
            json!({ "mesh": { "listenPort": 70000 } }),
            "/mesh/listenPort",
        ),
        (
            json!({ "mesh": { "interface": "a-very-long-interface" } }),
            "/mesh/interface",
        ),
        (json!({ "operator": { "replica": 3 } }), "replica"),
        (json!({ "logFormat": "xml" }), "/logFormat"),
        (
            json!({ "agent": { "extProc": { "listen": "9901" } } }),
            "/agent/extProc/listen",
        ),
        (
            json!({ "agent": { "extProc": { "unmatchedRoute": "maybe" } } }),
            "/agent/extProc/unmatchedRoute",
        ),
        (
            json!({ "agent": { "extProc": { "jwks": { "timeout": "soon" } } } }),
            "/agent/extProc/jwks/timeout",
        ),
    ] {
        let output = chart("render", &values, "meshguard", "meshguard-system");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{values} rendered");
        assert!(
            stderr.contains(field) && stderr.contains("charts/meshguard"),
            "{values}: {stderr}"
        );
    }
}

#[test]
fn deploy_manifest_is_the_default_rendering() {
    let expected = format!(
        "# Generated by `make manifests` from charts/meshguard with its default values. Do not edit.\n{}",
        render_hooks(&json!({}), "exclude")
    );
    let actual = std::fs::read_to_string(repo_root().join("deploy/meshguard.yaml")).unwrap();
    assert!(
        actual == expected,
        "deploy/meshguard.yaml differs from the chart: run `make manifests` and commit the result"
    );
    assert!(
        !actual.contains("helm.sh/hook"),
        "kubectl apply would run the hook at once"
    );
    let expected = format!(
        "# Generated by `make manifests`: the chart's uninstall hook, for installs made with kubectl\n\
         # (docs/operations.md). Not part of kustomization.yaml. Do not edit.\n{}",
        render_hooks(&json!({}), "only")
    );
    let actual = std::fs::read_to_string(repo_root().join("deploy/uninstall.yaml")).unwrap();
    assert!(
        actual == expected,
        "deploy/uninstall.yaml differs from the chart: run `make manifests` and commit the result"
    );
    // Everything the kustomization lists exists, and the namespace the
    // rendering assumes is created with the Pod Security level it needs.
    let kustomization: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for file in &listed {
        assert!(repo_root().join("deploy").join(file).exists(), "{file}");
    }
    assert!(listed.contains(&"namespace.yaml") && listed.contains(&"meshguard.yaml"));
    assert!(
        !listed.contains(&"uninstall.yaml"),
        "applied only to uninstall"
    );
    let namespace: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/namespace.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(namespace["metadata"]["name"], "meshguard-system");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
}

#[test]
fn chart_version_follows_the_workspace() {
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("charts/meshguard/Chart.yaml")).unwrap(),
    )
    .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["version"], version);
    assert_eq!(chart["appVersion"], version);
    let notes = chart_notes();
    assert!(
        notes.contains(version) && notes.contains("meshguard-system"),
        "{notes}"
    );
}

fn chart_notes() -> String {
    let output = chart("notes", &json!({}), "meshguard", "meshguard-system");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}
