//! The fuzz targets' checks, run in `make test` over their seeds and over
//! cuts and one-byte changes of every seed: the harness works, the seeds
//! are what their names say, and what the fuzzers start from holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use meshguard_fuzz::{
    ext_proc, manifests, seeds, state_file, token, token_outcome, uapi, validation,
};

/// Fewer files than this means the corpus was lost, not minimized.
const CORPUS_AT_LEAST: usize = 100;

/// Prefixes and single-bit flips of `input`, every `step` bytes.
fn variations(input: &[u8], step: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..input.len()).step_by(step).flat_map(move |i| {
        let mut flipped = input.to_vec();
        flipped[i] ^= 1 << (i % 8);
        [input[..i].to_vec(), flipped]
    })
}

#[test]
fn token_seeds_are_refused_for_the_reason_their_name_gives() {
    let expected = [
        ("alg-none.jwt", "invalid token: not a JWT"),
        ("eddsa-expired-float-exp.jwt", "invalid token: expired"),
        ("es256-expired.jwt", "invalid token: expired"),
        (
            "es256-no-kid-wrong-issuer.jwt",
            "invalid token: issuer https://other.example is not the expected one",
        ),
        (
            "hs256-with-rsa-public-key.jwt",
            "invalid token: algorithm HS256 is not allowed",
        ),
        ("ps256-expired-aud-list.jwt", "invalid token: expired"),
        ("rs256-expired.jwt", "invalid token: expired"),
        ("rs256-not-yet-valid.jwt", "invalid token: not yet valid"),
        (
            "rs256-rogue-key.jwt",
            "invalid token: signature does not verify",
        ),
        (
            "rs256-wrong-audience.jwt",
            "invalid token: audience does not match",
        ),
    ];
    let seeds = seeds::tokens().unwrap();
    assert_eq!(seeds.len(), expected.len());
    for ((name, bytes), (want_name, want_reason)) in seeds.iter().zip(expected) {
        assert_eq!(name, want_name);
        let outcome = token_outcome(std::str::from_utf8(bytes).unwrap().trim());
        let reason = outcome.refusal.map(|r| r.reason).unwrap_or_default();
        assert!(reason.starts_with(want_reason), "{name}: {reason}");
    }
}

#[test]
fn the_token_target_holds_on_its_seeds_and_near_them() {
    for (_, seed) in seeds::tokens().unwrap() {
        token(&seed);
        for input in variations(&seed, 7) {
            token(&input);
        }
    }
}

#[test]
fn the_ext_proc_target_holds_on_its_seeds_and_near_them() {
    let seeds = seeds::ext_proc().unwrap();
    assert!(seeds.len() > 10);
    let mut answered = std::collections::BTreeSet::new();
    for (name, seed) in &seeds {
        let status = ext_proc(seed);
        assert!(status.is_some(), "{name} was not judged");
        answered.extend(status);
        for input in variations(seed, 5) {
            answered.extend(ext_proc(&input));
        }
    }
    // The seeds reach every answer the chains can give, so the checks
    // above ran on each kind of outcome, not only on refusals.
    assert_eq!(
        answered.into_iter().collect::<Vec<_>>(),
        [200, 400, 401, 403, 429]
    );
}

#[test]
fn the_committed_corpora_replay_through_the_checks() {
    let tokens = seeds::corpus("token").unwrap();
    assert!(
        tokens.len() >= CORPUS_AT_LEAST,
        "corpus/token: {}",
        tokens.len()
    );
    for (_, input) in &tokens {
        token(input);
    }
    let messages = seeds::corpus("ext_proc").unwrap();
    assert!(
        messages.len() >= CORPUS_AT_LEAST,
        "corpus/ext_proc: {}",
        messages.len()
    );
    let judged = messages.iter().filter_map(|(_, m)| ext_proc(m)).count();
    // A good part of what the fuzzer kept decodes as request headers (501
    // of 1,378 after the first long run): the corpus exercises the chains,
    // not only protobuf decoding.
    assert!(
        judged * 4 > messages.len(),
        "{judged} of {} judged",
        messages.len()
    );
}

#[test]
fn the_manifest_seeds_compile_and_their_variations_are_refused_by_name() {
    use meshguard_fuzz::manifests::Reached;
    let seeds = seeds::manifests().unwrap();
    assert!(seeds.len() >= 5, "{} seeds", seeds.len());
    let mut reached = std::collections::BTreeSet::new();
    for (name, seed) in &seeds {
        // examples/ is valid: every file loads, and the List of all of it
        // compiles, so the NodePolicy checks ran.
        let got = manifests(seed);
        assert!(got >= Reached::RefusedAfterLoading, "{name}: {got:?}");
        reached.insert(got);
        for input in variations(seed, 97) {
            reached.insert(manifests(&input));
        }
    }
    assert!(reached.contains(&Reached::Compiled), "{reached:?}");
    assert!(reached.contains(&Reached::Refused), "{reached:?}");
}

#[test]
fn the_validation_seeds_pass_as_their_own_kind() {
    let seeds = seeds::validation().unwrap();
    assert!(seeds.len() > 10);
    let ours = ["-MeshPolicy-", "-PolicyChain-", "-MeshNode-"];
    let mut checked = 0;
    for (name, seed) in &seeds {
        if ours.iter().any(|kind| name.contains(kind)) {
            assert!(validation(seed) >= 1, "{name} passes as no kind");
            checked += 1;
        }
        for input in variations(seed, 31) {
            validation(&input);
        }
    }
    assert!(checked > 10, "{checked} of our objects among the seeds");
}

#[test]
fn the_state_file_seeds_are_enforceable_and_cuts_are_refused_naming_the_file() {
    use meshguard_fuzz::state_file::Reached;
    let mut reached = std::collections::BTreeSet::new();
    for (name, seed) in seeds::state_file().unwrap() {
        assert_eq!(state_file(&seed), Reached::Enforceable, "{name}");
        for input in variations(&seed, 53) {
            reached.insert(state_file(&input));
        }
    }
    assert!(reached.contains(&Reached::Refused), "{reached:?}");
}

#[test]
fn the_uapi_seeds_are_read_and_broken_ones_refused() {
    let mut refused = 0;
    for (name, seed) in seeds::uapi() {
        assert!(uapi(&seed), "{name} was not read");
        for input in variations(&seed, 3) {
            refused += usize::from(!uapi(&input));
        }
    }
    assert!(refused > 0);
}

/// The corpora of the targets over what meshguard reads from files and
/// daemons (committed: the minimized corpus's inputs of at most 1 KiB;
/// docs/development.md): each replays through its checks, and a good part
/// of each gets past parsing, so the deeper checks ran.
#[test]
fn the_committed_reader_corpora_replay_through_the_checks() {
    use meshguard_fuzz::{manifests::Reached as Loaded, state_file::Reached as State};
    let replay = |target: &str| {
        let inputs = seeds::corpus(target).unwrap();
        assert!(
            inputs.len() >= CORPUS_AT_LEAST,
            "corpus/{target}: {}",
            inputs.len()
        );
        inputs
    };
    let inputs = replay("manifests");
    let compiled = inputs
        .iter()
        .filter(|(_, i)| manifests(i) == Loaded::Compiled)
        .count();
    assert!(
        compiled * 10 > inputs.len(),
        "manifests: {compiled} of {} compiled",
        inputs.len()
    );
    let inputs = replay("validation");
    let accepted = inputs.iter().filter(|(_, i)| validation(i) > 0).count();
    assert!(
        accepted * 20 > inputs.len(),
        "validation: {accepted} of {} accepted",
        inputs.len()
    );
    let inputs = replay("state_file");
    let checked = inputs
        .iter()
        .filter(|(_, i)| state_file(i) >= State::NotEnforceable)
        .count();
    // Few inputs of 1 KiB are a whole NodePolicy (the seeds are 20 KiB):
    // 42 of 2,546 when committed.
    assert!(
        checked >= 20,
        "state_file: {checked} of {} passed the checks",
        inputs.len()
    );
    let inputs = replay("uapi");
    let read = inputs.iter().filter(|(_, i)| uapi(i)).count();
    assert!(
        read * 4 > inputs.len(),
        "uapi: {read} of {} read",
        inputs.len()
    );
    eprintln!(
        "corpora: manifests {compiled} compiled, validation {accepted} accepted, state_file {checked} checked, uapi {read} read"
    );
}
