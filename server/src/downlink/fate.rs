//! What becomes of a command in ChirpStack's hands when ChirpStack goes silent about it.
//!
//! ChirpStack reports a queue item's transmission (`txack`), a confirmed item's outcome
//! (`ack`) and a few drops (`log`), but not everything: a rejoin flushes the device queue
//! (`flush_queue_on_activate`) and a command it refused (another application's topic, a
//! duplicate id) leaves no trace on MQTT. Without a rule such a command would stay `queued` or
//! `sent` until it expires, holding back the meter's later commands. These are the rules, pure:
//! the callers load the commands and write the decisions.

use chrono::{DateTime, Utc};

/// The stored kind of the clock answers the dispatcher publishes: only useful in the receive
/// window of the uplink that asked.
pub const CLOCK_ANSWER: &str = "appTimeAns";

/// A command ChirpStack may hold, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    /// Stored kind (`valveClose`, `appTimeAns` …).
    pub kind: &'a str,
    /// `pending`, `queued` or `sent`.
    pub state: &'a str,
    /// Whether the meter must acknowledge it.
    pub confirmed: bool,
    /// Hand-overs to ChirpStack so far.
    pub attempts: i32,
    /// The meter's uplinks since it was handed over (or, once sent, since its `txack`).
    pub uplinks_waited: i32,
    /// Its last change: when it was handed over, or its `txack`.
    pub changed_at: DateTime<Utc>,
}

/// How patient to be with ChirpStack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// A handed-over command with no `txack` (or a confirmed one with no `ack`) after this
    /// many uplinks of its meter is lost. At least 2: a command released after an uplink
    /// usually goes out with the next one, and its report follows that uplink.
    pub lost_after_uplinks: i32,
    /// Hand-overs before a lost command fails instead of going back to the queue.
    pub max_attempts: i32,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            lost_after_uplinks: 3,
            max_attempts: 3,
        }
    }
}

/// The decision about one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Nothing to do.
    Keep,
    /// Back to `pending`, to go out again after the meter's next uplink under the same id;
    /// the reason is recorded.
    Requeue(String),
    /// `failed`, with the reason.
    Fail(String),
}

/// Whether a command is in ChirpStack's hands and awaited from it: handed over and not yet
/// transmitted, or transmitted, confirmed and not yet acknowledged. Such a command holds the
/// meter's later commands back (ChirpStack sends one item per uplink, in order); clock
/// answers never do.
pub fn in_flight(kind: &str, state: &str, confirmed: bool) -> bool {
    kind != CLOCK_ANSWER && awaited(state, confirmed)
}

fn awaited(state: &str, confirmed: bool) -> bool {
    state == "queued" || (state == "sent" && confirmed)
}

/// Whether this command's wait counts the meter's uplinks.
pub fn counts_uplinks(held: &Held<'_>) -> bool {
    awaited(held.state, held.confirmed)
}

/// After an uplink of the meter, once counted in `held.uplinks_waited`.
pub fn after_uplink(held: &Held<'_>, patience: Patience) -> Fate {
    if !counts_uplinks(held) || held.uplinks_waited < patience.lost_after_uplinks.max(1) {
        return Fate::Keep;
    }
    let missing = if held.state == "queued" {
        "txack"
    } else {
        "ack"
    };
    let why = format!(
        "no {missing} from ChirpStack after {} uplinks of the meter",
        held.uplinks_waited
    );
    retry_or_fail(held, why, patience)
}

/// After the meter joined (again) at `joined_at`: ChirpStack flushed what it held for it
/// (`flush_queue_on_activate`) and will report nothing about those items. What was handed
/// over before the join goes back to the queue, except a clock answer, which answered a
/// request of the meter's previous session and is obsolete.
pub fn after_rejoin(held: &Held<'_>, joined_at: DateTime<Utc>, patience: Patience) -> Fate {
    if !counts_uplinks(held) || held.changed_at > joined_at {
        return Fate::Keep;
    }
    if held.kind == CLOCK_ANSWER {
        return if held.state == "queued" {
            Fate::Fail("obsolete: the meter rejoined before the clock answer went out".into())
        } else {
            Fate::Keep
        };
    }
    let why = if held.state == "queued" {
        "the meter rejoined before ChirpStack sent it (a rejoin flushes ChirpStack's queue)"
    } else {
        "the meter rejoined before acknowledging it (a rejoin flushes ChirpStack's queue)"
    };
    retry_or_fail(held, why.into(), patience)
}

fn retry_or_fail(held: &Held<'_>, why: String, patience: Patience) -> Fate {
    if held.kind == CLOCK_ANSWER {
        // The meter asks again; a late answer would set its clock wrong.
        Fate::Fail(format!("{why}; a clock answer is not re-sent"))
    } else if held.attempts >= patience.max_attempts {
        Fate::Fail(format!("{why}; given up after {} attempts", held.attempts))
    } else {
        Fate::Requeue(format!("{why}; re-sent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn held(kind: &'static str, state: &'static str, confirmed: bool) -> Held<'static> {
        Held {
            kind,
            state,
            confirmed,
            attempts: 1,
            uplinks_waited: 0,
            changed_at: at(0),
        }
    }

    #[test]
    fn a_queued_command_without_txack_is_lost_after_the_set_number_of_uplinks() {
        let p = Patience::default();
        let mut c = held("valveClose", "queued", true);
        for n in 0..p.lost_after_uplinks {
            c.uplinks_waited = n;
            assert_eq!(after_uplink(&c, p), Fate::Keep, "{n} uplinks");
        }
        c.uplinks_waited = p.lost_after_uplinks;
        let Fate::Requeue(why) = after_uplink(&c, p) else {
            panic!("re-sent")
        };
        assert!(why.contains("no txack"), "{why}");
    }

    #[test]
    fn a_confirmed_command_without_ack_is_lost_too_and_fails_after_its_attempts() {
        let p = Patience {
            lost_after_uplinks: 2,
            max_attempts: 2,
        };
        let mut c = held("valveOpen", "sent", true);
        c.uplinks_waited = 2;
        assert!(matches!(after_uplink(&c, p), Fate::Requeue(w) if w.contains("no ack")));
        c.attempts = 2;
        assert!(matches!(after_uplink(&c, p), Fate::Fail(w) if w.contains("2 attempts")));
    }

    #[test]
    fn sent_unconfirmed_and_pending_commands_are_not_counted() {
        let p = Patience::default();
        for c in [
            held("readNow", "sent", false),
            held("readNow", "pending", false),
        ] {
            let c = Held {
                uplinks_waited: 100,
                ..c
            };
            assert!(!counts_uplinks(&c));
            assert_eq!(after_uplink(&c, p), Fate::Keep);
        }
    }

    #[test]
    fn a_lost_clock_answer_fails_rather_than_going_out_late() {
        let mut c = held(CLOCK_ANSWER, "queued", false);
        c.uplinks_waited = 3;
        assert!(matches!(
            after_uplink(&c, Patience::default()),
            Fate::Fail(_)
        ));
    }

    #[test]
    fn a_rejoin_requeues_valve_commands_and_fails_clock_answers() {
        let p = Patience::default();
        let joined = at(10);
        for state in ["queued", "sent"] {
            let valve = held("valveClose", state, true);
            assert!(
                matches!(after_rejoin(&valve, joined, p), Fate::Requeue(w) if w.contains("rejoined")),
                "{state}"
            );
        }
        assert!(matches!(
            after_rejoin(&held(CLOCK_ANSWER, "queued", false), joined, p),
            Fate::Fail(w) if w.contains("obsolete")
        ));
        // Transmitted: nothing more to expect from ChirpStack.
        assert_eq!(
            after_rejoin(&held(CLOCK_ANSWER, "sent", false), joined, p),
            Fate::Keep
        );
        assert_eq!(
            after_rejoin(&held("readNow", "sent", false), joined, p),
            Fate::Keep,
            "an unconfirmed command awaits its answer until its deadline"
        );
        assert_eq!(
            after_rejoin(&held("readNow", "pending", false), joined, p),
            Fate::Keep
        );
    }

    #[test]
    fn a_command_handed_over_after_the_join_is_not_touched() {
        let c = Held {
            changed_at: at(11),
            ..held("valveClose", "queued", true)
        };
        assert_eq!(after_rejoin(&c, at(10), Patience::default()), Fate::Keep);
    }

    #[test]
    fn a_rejoin_loop_ends_in_failure() {
        let c = Held {
            attempts: 3,
            ..held("valveClose", "queued", true)
        };
        assert!(matches!(
            after_rejoin(&c, at(10), Patience::default()),
            Fate::Fail(_)
        ));
    }

    #[test]
    fn only_commands_awaited_from_chirpstack_hold_the_queue() {
        assert!(in_flight("valveClose", "queued", true));
        assert!(in_flight("valveClose", "sent", true));
        assert!(in_flight("readNow", "queued", false));
        assert!(!in_flight("readNow", "sent", false));
        assert!(!in_flight(CLOCK_ANSWER, "queued", false));
        assert!(!in_flight("valveClose", "pending", true));
    }
}
