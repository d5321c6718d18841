//! The firmware's side of TS003 clock synchronisation, through the simulation: an AppTimeReq
//! at boot, then at the periodicity the server sets, and a series after ForceDeviceResyncReq
//! that an answer with the right token ends and corrects the clock.

use chrono::DateTime;
use firmware_protocol::chirpstack::{Bytes, DownlinkCommand, Event, EventType};
use firmware_protocol::{
    ClockSyncDown, ClockSyncDownlink, ClockSyncUp, GpsTime, Uplink, decode_uplink,
};
use meterhub_sim::fleet::FleetSpec;
use meterhub_sim::simulation::{Emitted, Simulation};

const START: i64 = 1_784_678_400;

fn one_meter() -> Simulation {
    Simulation::new(
        &FleetSpec {
            meters: 1,
            ..FleetSpec::default()
        },
        START,
    )
}

/// The uplink's time and decoded message.
fn decoded(e: &Emitted) -> (i64, Uplink) {
    let Ok(Event::Up(up)) = Event::from_json(EventType::Up, &e.up.payload) else {
        panic!("an up event")
    };
    let port = u8::try_from(up.f_port).expect("port");
    let message = decode_uplink(port, up.data.as_slice()).expect("decodes");
    (up.time.expect("time").0.timestamp(), message)
}

/// The AppTimeReq in a message, if it is one: (device time, token).
fn app_time_req(message: &Uplink) -> Option<(u32, u8)> {
    let Uplink::ClockSync(commands) = message else {
        return None;
    };
    commands.iter().find_map(|c| match *c {
        ClockSyncUp::AppTimeReq {
            device_time,
            token_req,
            ..
        } => Some((device_time, token_req)),
        _ => None,
    })
}

/// Queues a clock-sync downlink and opens the meter's RX window at `at`.
fn send(sim: &mut Simulation, command: ClockSyncDown, at: i64, id: u128) {
    let mut buf = [0u8; 16];
    let n = ClockSyncDownlink::single(command)
        .encode(&mut buf)
        .expect("encodes");
    let dev_eui = sim.meter(0).expect("meter").dev_eui_hex();
    sim.enqueue(&DownlinkCommand {
        id: Some(uuid::Uuid::from_u128(id)),
        dev_eui,
        f_port: 202,
        data: Bytes(buf[..n].to_vec()),
        ..DownlinkCommand::default()
    })
    .expect("queued");
    let now = DateTime::from_timestamp(at, 0).expect("time");
    sim.rx_window(0, now).expect("window");
}

/// The next AppTimeReq: its time, device time and token (readings in between pass).
fn next_request(sim: &mut Simulation) -> (i64, u32, u8) {
    loop {
        let e = sim.emit().expect("emits").expect("uplink");
        let (at, message) = decoded(&e);
        if let Some((device_time, token)) = app_time_req(&message) {
            return (at, device_time, token);
        }
    }
}

/// Times of the AppTimeReqs among the uplinks up to `until`.
fn requests_until(sim: &mut Simulation, until: i64) -> Vec<i64> {
    let mut out = Vec::new();
    while sim.next_due().is_some_and(|t| t <= until) {
        let e = sim.emit().expect("emits").expect("uplink");
        let (at, message) = decoded(&e);
        if app_time_req(&message).is_some() {
            out.push(at);
        }
    }
    out
}

#[test]
fn a_meter_asks_for_the_time_at_boot_then_at_the_period_the_server_sets() {
    let mut sim = one_meter();
    let boot = sim.emit().expect("emits").expect("uplink");
    let (booted_at, message) = decoded(&boot);
    assert!(
        app_time_req(&message).is_some(),
        "first uplink: {message:?}"
    );
    // Without a period, no further requests for days.
    let mut probe = one_meter();
    probe.emit().expect("emits");
    assert_eq!(
        requests_until(&mut probe, START + 5 * 86_400),
        Vec::<i64>::new()
    );

    // Period 4: every 128·2^4 = 2 048 s. The answer comes first.
    send(
        &mut sim,
        ClockSyncDown::DeviceAppTimePeriodicityReq { period: 4 },
        booted_at,
        1,
    );
    let answer = sim.emit().expect("emits").expect("uplink");
    let (_, message) = decoded(&answer);
    assert!(matches!(
        message,
        Uplink::ClockSync(ref c) if matches!(
            c.iter().next(),
            Some(ClockSyncUp::DeviceAppTimePeriodicityAns { not_supported: false, .. })
        )
    ));
    let got = requests_until(&mut sim, booted_at + 3 * 2_048);
    assert_eq!(
        got,
        [booted_at + 2_048, booted_at + 4_096, booted_at + 6_144]
    );

    // A new period replaces the old timer rather than adding to it.
    let changed_at = booted_at + 6_144;
    send(
        &mut sim,
        ClockSyncDown::DeviceAppTimePeriodicityReq { period: 2 },
        changed_at,
        2,
    );
    let got = requests_until(&mut sim, changed_at + 4 * 512);
    assert_eq!(
        got,
        [
            changed_at + 512,
            changed_at + 1_024,
            changed_at + 1_536,
            changed_at + 2_048
        ]
    );
}

#[test]
fn a_forced_resync_sends_its_requests_until_one_is_answered() {
    // Unanswered: all three requests, a minute apart.
    let mut sim = one_meter();
    let (booted_at, _) = decoded(&sim.emit().expect("emits").expect("uplink"));
    send(
        &mut sim,
        ClockSyncDown::ForceDeviceResyncReq {
            nb_transmissions: 3,
        },
        booted_at,
        1,
    );
    let got = requests_until(&mut sim, booted_at + 3_600);
    assert_eq!(got, [booted_at + 5, booted_at + 65, booted_at + 125]);

    // Answered after the first: the clock is set and the series stops.
    let mut sim = one_meter();
    let (booted_at, _) = decoded(&sim.emit().expect("emits").expect("uplink"));
    send(
        &mut sim,
        ClockSyncDown::ForceDeviceResyncReq {
            nb_transmissions: 3,
        },
        booted_at,
        1,
    );
    let (at, device_time, token) = next_request(&mut sim);
    assert_eq!(at, booted_at + 5);
    let reference = GpsTime::from_unix(at).expect("GPS range").0;
    let correction = i64::from(reference) - i64::from(device_time);
    // A wrong token first: ignored, the clock stays and the series goes on.
    let offset = sim.meter(0).expect("meter").clock_offset;
    send(
        &mut sim,
        ClockSyncDown::AppTimeAns {
            time_correction: correction as i32 + 1_000,
            token_ans: (token + 1) & 0x0F,
        },
        at,
        2,
    );
    assert_eq!(sim.meter(0).expect("meter").clock_offset, offset);
    let (at, device_time, token) = next_request(&mut sim);
    assert_eq!(at, booted_at + 65, "the series went on");
    let reference = GpsTime::from_unix(at).expect("GPS range").0;
    let correction = i64::from(reference) - i64::from(device_time);
    send(
        &mut sim,
        ClockSyncDown::AppTimeAns {
            time_correction: correction as i32,
            token_ans: token,
        },
        at,
        3,
    );
    assert_eq!(
        sim.meter(0).expect("meter").meter_time(at).0,
        reference,
        "the clock converged"
    );
    assert_eq!(requests_until(&mut sim, at + 3_600), Vec::<i64>::new());
}
