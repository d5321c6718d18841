//! Encode and decode throughput of the largest and the most frequent frames.
//!
//! Run with `cargo bench -p firmware-protocol --bench codec`; figures go to BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use firmware_protocol::{
    ClockSyncUp, ClockSyncUplink, DoorState, GpsTime, Reading, Serial, StatusFlags, Uplink,
    ValveState, decode_uplink,
};

fn full_reading() -> Uplink {
    Uplink::Reading(Reading {
        serial: Serial::new(12, 26, 3, 1234).expect("valid parts"),
        meter_time: GpsTime(1_468_800_018),
        valve: ValveState::Open,
        door: DoorState::Closed,
        battery_millivolts: 3600,
        battery_percent: 87,
        flags: StatusFlags::TAMPER,
        gas_volume_litres: Some(1_234_567),
        energy_wh: Some(7_654_321),
        voltage_decivolts: Some(2301),
        current_milliamps: Some(15_230),
        gas_temperature_centi_celsius: Some(-512),
        gas_pressure_pa: Some(101_325),
    })
}

fn app_time_req() -> Uplink {
    Uplink::ClockSync(ClockSyncUplink::single(ClockSyncUp::AppTimeReq {
        device_time: 1_468_800_018,
        token_req: 5,
        ans_required: false,
    }))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    for (name, message) in [
        ("reading_41B", full_reading()),
        ("app_time_req_6B", app_time_req()),
    ] {
        let mut buf = [0u8; 64];
        let n = message.encode(&mut buf).expect("valid");
        let frame = buf[..n].to_vec();
        group.bench_function(format!("encode/{name}"), |b| {
            let mut out = [0u8; 64];
            b.iter(|| black_box(&message).encode(black_box(&mut out)))
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_uplink(black_box(message.fport()), black_box(&frame)))
        });
        group.bench_function(format!("decode_to_json/{name}"), |b| {
            b.iter(|| {
                let m = decode_uplink(message.fport(), black_box(&frame)).expect("valid");
                serde_json::to_vec(&m).expect("serialise")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
