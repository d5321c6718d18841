//! Faults on demand, through the public API: a seed gives the same bytes twice with every
//! fault switched on, each fault shows up at its configured rate, and what each fault
//! publishes is what ChirpStack would.
//!
//! The rate bounds are five standard deviations of a binomial draw either side of the
//! configured rate: with the fixed seeds the outcome never changes, and a rate doubled or
//! halved falls outside them (for the common faults, a rate off by a fifth already does).

use std::collections::HashMap;

use firmware_protocol::chirpstack::{Event, EventType, LogCode, LogLevel};
use firmware_protocol::{Uplink, decode_uplink};
use meterhub_sim::faults::Faults;
use meterhub_sim::fleet::FleetSpec;
use meterhub_sim::simulation::{Emitted, Fate, Simulation};

const START: i64 = 1_784_678_400;

fn faults() -> Faults {
    Faults {
        loss: 0.05,
        duplicate: 0.04,
        second_path: 0.03,
        reorder: 0.02,
        garble: 0.03,
        bad_serial_share: 0.05,
        silence: 0.002,
        silence_max_seconds: 12 * 3_600,
        clock_jump: 0.05,
        clock_jump_max_seconds: 600,
        f_cnt_reset: 0.002,
        retransmission: 0.03,
        skip_f_cnt_check: false,
    }
}

fn spec(seed: u64, faults: Faults) -> FleetSpec {
    FleetSpec {
        meters: 2_000,
        seed,
        // Hourly readings: 60 000 uplinks are 30 hours of this fleet.
        reporting_interval_minutes: 60,
        unregistered_share: 0.03,
        faults,
        ..FleetSpec::default()
    }
}

fn run(spec: &FleetSpec, uplinks: usize) -> (Simulation, Vec<Emitted>) {
    let mut sim = Simulation::new(spec, START);
    let out = (0..uplinks)
        .map(|_| sim.emit().expect("emits").expect("an uplink"))
        .collect();
    (sim, out)
}

/// Asserts `hits` of `trials` is within five binomial standard deviations of `rate`.
fn assert_rate(name: &str, hits: usize, trials: usize, rate: f64) {
    let n = trials as f64;
    let mean = n * rate;
    let sd = (n * rate * (1.0 - rate)).sqrt();
    let (low, high) = (mean - 5.0 * sd, mean + 5.0 * sd);
    assert!(
        (low..=high).contains(&(hits as f64)),
        "{name}: {hits} of {trials}, expected {mean:.0} ({low:.0}..{high:.0})"
    );
}

fn event(topic: &str, payload: &[u8]) -> Event {
    let kind = topic.rsplit('/').next().unwrap_or_default();
    let kind: EventType = kind.parse().expect("an event type");
    Event::from_json(kind, payload).expect("ChirpStack JSON")
}

#[test]
fn the_same_seed_gives_the_same_bytes_twice_with_every_fault_on() {
    let published = |seed| {
        let (mut sim, emitted) = run(&spec(seed, faults()), 20_000);
        let mut all: Vec<_> = emitted.into_iter().flat_map(|e| e.messages).collect();
        all.extend(sim.release_held());
        all
    };
    let a = published(11);
    assert_eq!(a, published(11));
    assert_ne!(a, published(12));
}

#[test]
fn faults_leave_the_readings_of_untouched_uplinks_unchanged() {
    // The fault streams are apart from the meters' own: switching faults on changes what
    // becomes of frames, not the frames the meters build.
    let (_, clean) = run(&spec(3, Faults::default()), 5_000);
    let (_, faulty) = run(
        &spec(
            3,
            Faults {
                loss: 0.2,
                duplicate: 0.2,
                ..Faults::default()
            },
        ),
        5_000,
    );
    for (c, f) in clean.iter().zip(&faulty) {
        assert_eq!(c.up, f.up);
    }
}

#[test]
fn each_fault_appears_at_its_configured_rate() {
    let f = faults();
    let spec = spec(5, f.clone());
    let (sim, emitted) = run(&spec, 60_000);
    let count = |p: &dyn Fn(&Emitted) -> bool| emitted.iter().filter(|e| p(e)).count();

    let all = emitted.len();
    let silent = count(&|e| e.fate == Fate::Silent);
    let spells = count(&|e| e.touched.silence_started);
    // A spell can begin at any uplink not already inside one.
    assert_rate("silence", spells, all - silent + spells, f.silence);
    let heard_or_lost = all - silent;
    let lost = count(&|e| e.fate == Fate::Lost);
    assert_rate("loss", lost, heard_or_lost, f.loss);
    let delivered = count(&|e| e.fate == Fate::Delivered);
    let discarded = count(&|e| e.fate == Fate::Discarded);
    assert_eq!(delivered + discarded + lost + silent, all);
    assert_rate(
        "duplicates",
        count(&|e| e.touched.duplicate),
        delivered,
        f.duplicate,
    );
    assert_rate(
        "second path",
        count(&|e| e.touched.second_path),
        delivered,
        f.second_path,
    );
    assert_rate(
        "retransmissions",
        count(&|e| e.touched.retransmission),
        delivered,
        f.retransmission,
    );
    assert_rate(
        "reorder",
        count(&|e| e.touched.reordered),
        delivered + discarded,
        f.reorder,
    );
    assert_rate("garbled", count(&|e| e.touched.garbled), all, f.garble);
    assert_rate(
        "frame-counter resets",
        count(&|e| e.touched.f_cnt_reset),
        all,
        f.f_cnt_reset,
    );
    let periodic = count(&|e| e.periodic);
    assert_rate(
        "clock jumps",
        count(&|e| e.touched.clock_jump),
        periodic,
        f.clock_jump,
    );
    let bad_serial_meters = (0..spec.meters)
        .filter(|i| sim.meter(*i).expect("meter").bad_serial)
        .count();
    assert_rate(
        "bad-serial meters",
        bad_serial_meters,
        spec.meters as usize,
        f.bad_serial_share,
    );
    // Every reading of a bad-serial meter carries the broken serial.
    for e in emitted.iter().filter(|e| e.reading) {
        let bad = sim.meter(e.meter).expect("meter").bad_serial;
        assert_eq!(e.touched.bad_serial, bad);
    }
    // A reset discards the meter's uplinks until its counter passes the last accepted one.
    assert!(discarded >= count(&|e| e.touched.f_cnt_reset && e.fate == Fate::Delivered));
    assert!(discarded > 0);
}

#[test]
fn what_each_fault_publishes_is_what_chirpstack_would() {
    let (mut sim, emitted) = run(&spec(9, faults()), 40_000);
    let mut published: Vec<_> = emitted.iter().flat_map(|e| e.messages.clone()).collect();
    published.extend(sim.release_held());
    // Count each uplink's `up` events by deduplication id and by (devEui, fCnt, data).
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut logs: HashMap<String, (LogLevel, LogCode)> = HashMap::new();
    for m in &published {
        match event(&m.topic, &m.payload) {
            Event::Up(up) => *by_id.entry(up.deduplication_id).or_default() += 1,
            Event::Log(log) => {
                let id = log.context["deduplication_id"].clone();
                assert!(log.context.contains_key("f_cnt_up"));
                logs.insert(id, (log.level, log.code));
            }
            other => panic!("unexpected {:?}", other.event_type()),
        }
    }
    let mut reordered_seen = false;
    let mut position: HashMap<String, usize> = HashMap::new();
    for (i, m) in published.iter().enumerate() {
        if let Event::Up(up) = event(&m.topic, &m.payload) {
            position.entry(up.deduplication_id).or_insert(i);
        }
    }
    let mut last_position = 0;
    for e in &emitted {
        let Event::Up(up) = event(&e.up.topic, &e.up.payload) else {
            panic!("up")
        };
        let id = up.deduplication_id.clone();
        match e.fate {
            Fate::Delivered => {
                let copies = 1 + usize::from(e.touched.duplicate);
                assert_eq!(by_id.get(&id), Some(&copies), "{:?}", e.touched);
                let p = position[&id];
                if p < last_position {
                    reordered_seen = true;
                }
                last_position = last_position.max(p);
            }
            Fate::Discarded => {
                assert!(!by_id.contains_key(&id));
                let (level, code) = &logs[&id];
                assert_eq!(*level, LogLevel::Warning);
                assert!(matches!(
                    code,
                    LogCode::UplinkFCntReset | LogCode::UplinkFCntRetransmission
                ));
            }
            Fate::Lost | Fate::Silent => assert!(!by_id.contains_key(&id)),
        }
        let port = u8::try_from(up.f_port).expect("port");
        let decoded = decode_uplink(port, up.data.as_slice());
        if e.touched.garbled {
            assert!(decoded.is_err(), "garbled but decodes");
        } else if e.touched.bad_serial {
            assert!(matches!(
                decoded,
                Err(firmware_protocol::Error::InvalidSerial(_))
            ));
        } else {
            let message = decoded.expect("an intact frame decodes");
            assert_eq!(e.reading, matches!(message, Uplink::Reading(_)));
        }
    }
    assert!(
        reordered_seen,
        "reordering moved an up event behind a later one"
    );
    let second_paths = emitted.iter().filter(|e| e.touched.second_path).count();
    let delivered_ups: usize = emitted
        .iter()
        .filter(|e| e.fate == Fate::Delivered)
        .map(|e| 1 + usize::from(e.touched.duplicate))
        .sum();
    let all_ups: usize = by_id.values().sum();
    assert_eq!(
        all_ups,
        delivered_ups + second_paths,
        "second paths come with ids of their own"
    );
}

#[test]
fn a_device_profile_without_frame_counter_checks_discards_nothing() {
    let f = Faults {
        f_cnt_reset: 0.01,
        skip_f_cnt_check: true,
        ..Faults::default()
    };
    let (_, emitted) = run(&spec(4, f), 20_000);
    assert!(emitted.iter().any(|e| e.touched.f_cnt_reset));
    assert!(emitted.iter().all(|e| e.fate == Fate::Delivered));
}

#[test]
fn a_silent_meter_comes_back_within_its_longest_spell() {
    let f = Faults {
        silence: 0.01,
        silence_max_seconds: 6 * 3_600,
        ..Faults::default()
    };
    let (_, emitted) = run(&spec(6, f), 40_000);
    let mut began: HashMap<u32, i64> = HashMap::new();
    let mut returns = 0;
    for e in &emitted {
        let Event::Up(up) = event(&e.up.topic, &e.up.payload) else {
            panic!("up")
        };
        let at = up.time.expect("time").0.timestamp();
        if e.touched.silence_started {
            began.insert(e.meter, at);
        } else if e.fate == Fate::Delivered
            && let Some(start) = began.remove(&e.meter)
        {
            // Back at the first uplink after the spell: never later than one interval past it.
            assert!(
                at - start <= 6 * 3_600 + 3_600,
                "silent for {} s",
                at - start
            );
            returns += 1;
        }
    }
    assert!(returns > 50, "{returns} meters came back");
}

#[test]
fn clock_jumps_never_repeat_a_meters_reading_time() {
    let f = Faults {
        clock_jump: 0.3,
        clock_jump_max_seconds: 86_400,
        ..Faults::default()
    };
    let (_, emitted) = run(&spec(8, f), 30_000);
    let mut last: HashMap<u32, u32> = HashMap::new();
    let mut jumps = 0;
    for e in emitted.iter().filter(|e| e.reading) {
        let Event::Up(up) = event(&e.up.topic, &e.up.payload) else {
            panic!("up")
        };
        let Ok(Uplink::Reading(r)) = decode_uplink(1, up.data.as_slice()) else {
            panic!("reading")
        };
        if let Some(previous) = last.insert(e.meter, r.meter_time.0) {
            assert!(r.meter_time.0 > previous, "meter {} went back", e.meter);
        }
        jumps += usize::from(e.touched.clock_jump);
    }
    assert!(jumps > 1_000, "{jumps}");
}
