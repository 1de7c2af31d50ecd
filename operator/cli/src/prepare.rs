//! From `-f` paths to a compiled policy set: manifests loaded, members
//! given mesh IPs, the compiler run, every problem printed with the file it
//! came from. `validate`, `check` and `compile` all start here.

use std::{io::Write, net::IpAddr, path::PathBuf};

use meshguard_policy::{
    addresses::Prefix,
    compile::{Compiled, Compiler, Inputs as CompileInputs},
    diagnostics::{Diagnostic, Severity},
    ipam,
    members::Member,
};

use crate::{
    args::{InputArgs, exit},
    load::{Checker, InputError, Loaded, load},
};

/// Inputs read, members resolved, everything compiled.
pub struct Prepared {
    pub loaded: Loaded,
    pub compiled: Compiled,
}

/// Loads and compiles, printing bad input and warnings to `err`. `Err` holds
/// the exit code when the input was bad.
pub fn prepare(args: &InputArgs, err: &mut dyn Write) -> anyhow::Result<Result<Prepared, u8>> {
    prepare_with(args, Compiler::default(), &Checker::default(), err)
}

/// [`prepare`] with a configured compiler and a checker shared with other
/// loads of the same command.
pub fn prepare_with(
    args: &InputArgs,
    compiler: Compiler,
    checker: &Checker,
    err: &mut dyn Write,
) -> anyhow::Result<Result<Prepared, u8>> {
    let loaded = match load(&args.files, checker) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in errors {
                writeln!(err, "error: {e}")?;
            }
            return Ok(Err(exit::BAD_INPUT));
        }
    };
    prepare_loaded(loaded, args, compiler, err)
}

/// [`prepare_with`] of what is loaded already: members resolved, compiled.
pub fn prepare_loaded(
    loaded: Loaded,
    args: &InputArgs,
    mut compiler: Compiler,
    err: &mut dyn Write,
) -> anyhow::Result<Result<Prepared, u8>> {
    let members = match members(&loaded, args.mesh_cidr) {
        Ok(members) => members,
        Err(errors) => {
            for e in errors {
                writeln!(err, "error: {e}")?;
            }
            return Ok(Err(exit::BAD_INPUT));
        }
    };
    let compiled = compiler.compile(&CompileInputs {
        members: &members,
        policies: &loaded.policies,
        chains: &loaded.chains,
        secrets: &loaded.secrets,
        config_maps: &loaded.config_maps,
        listen_port: args.listen_port,
    });
    let mut failed = false;
    for d in compiled.diagnostics() {
        writeln!(err, "{}", located(&loaded, d))?;
        failed |= d.severity == Severity::Error;
    }
    if failed {
        return Ok(Err(exit::BAD_INPUT));
    }
    Ok(Ok(Prepared { loaded, compiled }))
}

/// A diagnostic with the file its object came from.
fn located(loaded: &Loaded, d: &Diagnostic) -> String {
    let severity = match d.severity {
        Severity::Warning => "warning",
        Severity::Error => "error",
    };
    let file = loaded
        .origin(d.object.kind, d.object.namespace.as_deref(), &d.object.name)
        .map(|f| format!("{}: ", f.display()))
        .unwrap_or_default();
    let object = format!("{}/{}", d.object.kind, d.object.name);
    match &d.field {
        Some(field) => format!("{severity}: {file}{object}: {field}: {}", d.message),
        None => format!("{severity}: {file}{object}: {}", d.message),
    }
}

/// Members from the MeshNodes: mesh IP from `spec.meshIP`, else `status.meshIP`
/// (a `kubectl get -o yaml` export), else allocated from the mesh CIDR.
fn members(loaded: &Loaded, cidr: Prefix) -> Result<Vec<Member>, Vec<InputError>> {
    let name_of = |n: &meshguard_crds::MeshNode| n.metadata.name.clone().unwrap_or_default();
    let error = |name: &str, field: &str, message: String| InputError {
        file: loaded
            .origin("MeshNode", None, name)
            .map(PathBuf::from)
            .unwrap_or_default(),
        object: Some(format!("MeshNode/{name}")),
        field: Some(field.to_owned()),
        message,
    };
    let fixed_field = |n: &meshguard_crds::MeshNode| {
        if n.spec.mesh_ip.is_some() {
            "spec.meshIP"
        } else {
            "status.meshIP"
        }
    };
    let fixed: Vec<(String, Option<IpAddr>)> = loaded
        .nodes
        .iter()
        .map(|n| {
            let ip = n
                .spec
                .mesh_ip
                .as_deref()
                .or(n.status.as_ref().and_then(|s| s.mesh_ip.as_deref()));
            (name_of(n), ip.and_then(|ip| ip.parse().ok()))
        })
        .collect();
    let assigned = ipam::assign(&fixed, cidr).map_err(|e| {
        vec![match e {
            ipam::IpamError::Conflict { ip, first, second } => {
                let node = loaded.nodes.iter().find(|n| name_of(n) == second);
                let first_file = loaded
                    .origin("MeshNode", None, &first)
                    .map(|f| f.display().to_string())
                    .unwrap_or_default();
                error(
                    &second,
                    node.map_or("spec.meshIP", fixed_field),
                    format!("mesh IP {ip} is already MeshNode/{first}'s ({first_file})"),
                )
            }
            ipam::IpamError::Exhausted { cidr, member } => error(
                &member,
                "spec.meshIP",
                format!("no free address left in the mesh CIDR {cidr}; give a larger --mesh-cidr"),
            ),
        }]
    })?;
    let mut errors = Vec::new();
    let mut members = Vec::new();
    for n in &loaded.nodes {
        let name = name_of(n);
        let mut allowed_ips = Vec::new();
        for (i, text) in n.spec.allowed_ips.iter().flatten().enumerate() {
            match text.parse::<Prefix>() {
                Ok(prefix) => allowed_ips.push(prefix),
                Err(e) => errors.push(error(
                    &name,
                    &format!("spec.allowedIPs[{i}]"),
                    e.to_string(),
                )),
            }
        }
        members.push(Member {
            mesh_ip: assigned[&name],
            labels: meshguard_policy::members::labels(
                loaded.node_labels.get(&name),
                n.metadata.labels.as_ref(),
            ),
            public_key: n.spec.public_key.clone(),
            endpoint: n.spec.endpoint.clone(),
            allowed_ips,
            name,
        });
    }
    if errors.is_empty() {
        Ok(members)
    } else {
        Err(errors)
    }
}
