//! Status conditions (`metav1.Condition`) as every meshguard writer keeps
//! them: a condition's `lastTransitionTime` moves only when its status flips,
//! so a status rewritten with the same verdict does not look like news.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// One condition as a writer decides it; the time is added by [`set`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: &'a str,
    pub observed_generation: Option<i64>,
}

/// Sets a condition, keeping its transition time when its status did not change.
pub fn set(conditions: &mut Vec<Condition>, verdict: Verdict<'_>, now: &Time) {
    let status = if verdict.status { "True" } else { "False" }.to_owned();
    match conditions.iter_mut().find(|c| c.type_ == verdict.type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status;
            c.reason = verdict.reason.to_owned();
            c.message = verdict.message.to_owned();
            c.observed_generation = verdict.observed_generation;
        }
        None => conditions.push(Condition {
            type_: verdict.type_.to_owned(),
            status,
            reason: verdict.reason.to_owned(),
            message: verdict.message.to_owned(),
            last_transition_time: now.clone(),
            observed_generation: verdict.observed_generation,
        }),
    }
}

pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Equal apart from transition times: nothing a reader would call a change.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn verdict(status: bool, message: &str) -> Verdict<'_> {
        Verdict {
            type_: "Ready",
            status,
            reason: "R",
            message,
            observed_generation: Some(1),
        }
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        set(&mut conditions, verdict(true, "a"), &at(10));
        set(&mut conditions, verdict(true, "b"), &at(20));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].message, "b");
        set(&mut conditions, verdict(false, "b"), &at(30));
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert!(!is_true(&conditions, "Ready"));
    }

    #[test]
    fn sameness_ignores_times_and_order() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        set(&mut a, verdict(true, "m"), &at(1));
        set(&mut b, verdict(true, "m"), &at(2));
        assert!(same(&a, &b));
        set(&mut b, verdict(true, "other"), &at(2));
        assert!(!same(&a, &b));
    }
}
