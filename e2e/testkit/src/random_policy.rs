//! Random pieces of MeshPolicies, as YAML, for the randomized tests (the
//! soak, the diff's exactness test): the selectors over members that both
//! draw from.

use crate::rng::Rng;

/// A `from`/`to` entry over members named `names`, labelled `role` a|b and
/// `zone` x|y, with mesh IPs handed out in name order from 100.96.0.1 (so
/// `100.96.0.0/30` holds the first three).
pub fn member_selector(rng: &mut Rng, names: &[&str]) -> String {
    match rng.below(7) {
        0 => format!("{{ nodes: [{}] }}", rng.pick(names)),
        1 => format!("{{ nodes: [{}, {}] }}", rng.pick(names), rng.pick(names)),
        2 => format!(
            "{{ nodeSelector: {{ matchLabels: {{ role: \"{}\" }} }} }}",
            rng.pick(&["a", "b"])
        ),
        3 => format!(
            "{{ nodeSelector: {{ matchLabels: {{ zone: \"{}\" }} }} }}",
            rng.pick(&["x", "y"])
        ),
        4 => "{ nodeSelector: {} }".into(),
        5 => "{ all: true }".into(),
        _ => "{ cidrs: [{ cidr: 100.96.0.0/30 }] }".into(),
    }
}

/// MeshPolicy `p<index>`: a random priority (0–400), Enforce mode four times
/// in five, and one to three rules (Allow mostly, some Deny, some Log)
/// whose sides come from `selector` and traffic from `ports` (a `ports:`
/// line, or nothing for all traffic).
pub fn policy(
    rng: &mut Rng,
    index: usize,
    selector: fn(&mut Rng) -> String,
    ports: fn(&mut Rng) -> String,
) -> String {
    let mode = if rng.below(5) == 0 {
        "Audit"
    } else {
        "Enforce"
    };
    let priority = rng.below(5) * 100;
    let mut text = format!(
        "---\napiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{ name: p{index} }}\nspec:\n  priority: {priority}\n  mode: {mode}\n  rules:\n"
    );
    for r in 0..=rng.below(3) {
        let action = *rng.pick(&["Allow", "Allow", "Allow", "Deny", "Deny", "Log"]);
        let (from, to, ports) = (selector(rng), selector(rng), ports(rng));
        text.push_str(&format!(
            "  - name: r{r}\n    action: {action}\n    from: [{from}]\n    to: [{to}]{ports}\n"
        ));
    }
    text
}
