//! Properties over the whole input space: every valid message survives encode → decode, and
//! no byte string on any fPort makes a decoder panic.

use firmware_protocol::*;
use proptest::prelude::*;

fn serial() -> impl Strategy<Value = Serial> {
    (0u8..=99, 0u8..=99, 0u8..=9, 0u32..=99_999_999)
        .prop_map(|(m, y, t, n)| Serial::new(m, y, t, n).expect("parts in range"))
}

fn valve() -> impl Strategy<Value = ValveState> {
    prop_oneof![
        Just(ValveState::NotFitted),
        Just(ValveState::Open),
        Just(ValveState::Closed),
        Just(ValveState::Fault)
    ]
}

fn door() -> impl Strategy<Value = DoorState> {
    prop_oneof![
        Just(DoorState::NotFitted),
        Just(DoorState::Closed),
        Just(DoorState::Open)
    ]
}

fn tests_set() -> impl Strategy<Value = Tests> {
    (0u8..64).prop_map(|b| Tests::from_bits(b).expect("defined bits"))
}

prop_compose! {
    fn reading()(
        serial in serial(),
        meter_time in any::<u32>(),
        valve in valve(),
        door in door(),
        battery_millivolts in any::<u16>(),
        battery_percent in 0u8..=100,
        flags in 0u16..512,
        gas_volume_litres in any::<Option<u32>>(),
        energy_wh in any::<Option<u32>>(),
        voltage_decivolts in any::<Option<u16>>(),
        current_milliamps in any::<Option<u32>>(),
        gas_temperature_centi_celsius in any::<Option<i16>>(),
        gas_pressure_pa in any::<Option<u32>>(),
    ) -> Reading {
        Reading {
            serial,
            meter_time: GpsTime(meter_time),
            valve,
            door,
            battery_millivolts,
            battery_percent,
            flags: StatusFlags::from_bits(flags).expect("defined bits"),
            gas_volume_litres,
            energy_wh,
            voltage_decivolts,
            current_milliamps,
            gas_temperature_centi_celsius,
            gas_pressure_pa,
        }
    }
}

fn alarm_kind() -> impl Strategy<Value = AlarmKind> {
    use AlarmKind::*;
    prop::sample::select(vec![
        MagneticTamper,
        Movement,
        CableCut,
        DoorOpen,
        LowBattery,
        OverConsumption,
        ValveOpened,
        ValveClosed,
        Leak,
        ReverseFlow,
        ClockLost,
    ])
}

prop_compose! {
    fn alarm()(kind in alarm_kind(), raised in any::<bool>(), t in any::<u32>(), value in any::<u32>()) -> Alarm {
        Alarm { kind, raised, meter_time: GpsTime(t), value }
    }
}

prop_compose! {
    fn self_test()(
        run in tests_set(),
        failed_mask in 0u8..64,
        t in any::<u32>(),
        a in any::<u16>(), b in any::<u16>(), c in any::<u16>(), d in any::<i16>(), e in any::<i16>(),
    ) -> SelfTestResult {
        SelfTestResult {
            tests_run: run,
            tests_failed: Tests::from_bits(run.bits() & failed_mask).expect("subset"),
            meter_time: GpsTime(t),
            battery_loaded_millivolts: a,
            battery_rest_millivolts: b,
            valve_travel_ms: c,
            metrology_deviation_centi_percent: d,
            internal_temperature_centi_celsius: e,
        }
    }
}

prop_compose! {
    fn device_info()(
        serial in serial(),
        body_number in any::<u32>(),
        fw in any::<(u8, u8, u8)>(),
        (year, month, day) in (0u16..=9999, 1u8..=12, 1u8..=28),
        usage in prop::sample::select(vec![UsageType::Residential, UsageType::Commercial, UsageType::Industrial, UsageType::Public]),
        caps in 0u8..64,
        interval in MIN_REPORTING_INTERVAL_MINUTES..=MAX_REPORTING_INTERVAL_MINUTES,
    ) -> DeviceInfo {
        DeviceInfo {
            serial,
            body_number,
            firmware_version: FirmwareVersion { major: fw.0, minor: fw.1, patch: fw.2 },
            production_date: Date::new(year, month, day).expect("day ≤ 28 exists"),
            usage_type: usage,
            capabilities: Capabilities::from_bits(caps).expect("defined bits"),
            reporting_interval_minutes: interval,
        }
    }
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::ValveOpen),
        Just(Command::ValveClose),
        (1u8..64).prop_map(|b| Command::RunSelfTest {
            tests: Tests::from_bits(b).expect("defined bits")
        }),
        Just(Command::ReadNow),
        Just(Command::SendInfo),
        (MIN_REPORTING_INTERVAL_MINUTES..=MAX_REPORTING_INTERVAL_MINUTES)
            .prop_map(|minutes| Command::SetReportingInterval { minutes }),
        Just(Command::Disconnect),
    ]
}

fn clock_sync_up() -> impl Strategy<Value = ClockSyncUp> {
    prop_oneof![
        any::<(u8, u8)>().prop_map(|(a, b)| ClockSyncUp::PackageVersionAns {
            package_identifier: a,
            package_version: b
        }),
        (any::<u32>(), 0u8..16, any::<bool>()).prop_map(|(t, token, ans)| {
            ClockSyncUp::AppTimeReq {
                device_time: t,
                token_req: token,
                ans_required: ans,
            }
        }),
        (any::<bool>(), any::<u32>()).prop_map(|(ns, t)| {
            ClockSyncUp::DeviceAppTimePeriodicityAns {
                not_supported: ns,
                device_time: t,
            }
        }),
    ]
}

fn clock_sync_down() -> impl Strategy<Value = ClockSyncDown> {
    prop_oneof![
        Just(ClockSyncDown::PackageVersionReq),
        (any::<i32>(), 0u8..16).prop_map(|(c, t)| ClockSyncDown::AppTimeAns {
            time_correction: c,
            token_ans: t
        }),
        (0u8..16).prop_map(|period| ClockSyncDown::DeviceAppTimePeriodicityReq { period }),
        (0u8..8).prop_map(|n| ClockSyncDown::ForceDeviceResyncReq {
            nb_transmissions: n
        }),
    ]
}

fn list<T: Copy + std::fmt::Debug>(
    item: impl Strategy<Value = T>,
) -> impl Strategy<Value = ClockSync<T>> {
    prop::collection::vec(item, 1..=MAX_CLOCK_SYNC_COMMANDS).prop_map(|items| {
        let mut l = ClockSync::new();
        for i in items {
            l.push(i).expect("within capacity");
        }
        l
    })
}

fn uplink() -> impl Strategy<Value = Uplink> {
    prop_oneof![
        reading().prop_map(Uplink::Reading),
        alarm().prop_map(Uplink::Alarm),
        self_test().prop_map(Uplink::SelfTest),
        device_info().prop_map(Uplink::DeviceInfo),
        list(clock_sync_up()).prop_map(Uplink::ClockSync),
    ]
}

fn downlink() -> impl Strategy<Value = Downlink> {
    prop_oneof![
        command().prop_map(Downlink::Command),
        list(clock_sync_down()).prop_map(Downlink::ClockSync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_valid_uplink_round_trips_through_bytes(m in uplink()) {
        let mut buf = [0u8; 64];
        let n = m.encode(&mut buf).expect("valid messages encode");
        prop_assert_eq!(n, m.encoded_len());
        prop_assert!(n <= MAX_FRAME_LEN || matches!(m, Uplink::ClockSync(_)));
        prop_assert_eq!(decode_uplink(m.fport(), &buf[..n]), Ok(m));
    }

    #[test]
    fn every_valid_downlink_round_trips_through_bytes(m in downlink()) {
        let mut buf = [0u8; 64];
        let n = m.encode(&mut buf).expect("valid messages encode");
        prop_assert_eq!(n, m.encoded_len());
        prop_assert_eq!(decode_downlink(m.fport(), &buf[..n]), Ok(m));
    }

    #[test]
    fn every_valid_uplink_round_trips_through_json(m in uplink()) {
        let json = serde_json::to_string(&m).expect("serialise");
        let back: Uplink = serde_json::from_str(&json).expect("deserialise");
        prop_assert_eq!(back, m);
    }

    #[test]
    fn every_valid_downlink_round_trips_through_json(m in downlink()) {
        let json = serde_json::to_string(&m).expect("serialise");
        let back: Downlink = serde_json::from_str(&json).expect("deserialise");
        prop_assert_eq!(back, m);
    }

    #[test]
    fn arbitrary_bytes_on_any_port_never_panic(port in any::<u8>(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let up = decode_uplink(port, &bytes);
        let down = decode_downlink(port, &bytes);
        // Whatever decodes must encode back to exactly the same frame (TS003 aside, whose
        // RFU bits are ignored on receipt).
        let mut buf = [0u8; 64];
        if let (Ok(m), false) = (up, port == PORT_CLOCK_SYNC) {
            let n = m.encode(&mut buf).expect("decoded messages encode");
            prop_assert_eq!(&buf[..n], &bytes[..]);
        }
        if let (Ok(m), false) = (down, port == PORT_CLOCK_SYNC) {
            let n = m.encode(&mut buf).expect("decoded messages encode");
            prop_assert_eq!(&buf[..n], &bytes[..]);
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(m in uplink(), index in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut buf = [0u8; 64];
        let n = m.encode(&mut buf).expect("valid messages encode");
        buf[index.index(n)] = byte;
        let _ = decode_uplink(m.fport(), &buf[..n]);
        let _ = decode_uplink(m.fport(), &buf[..cut.index(n + 1)]);
    }

    #[test]
    fn too_small_buffers_are_refused_not_overrun(m in uplink(), size in 0usize..64) {
        let mut buf = vec![0u8; size];
        match m.encode(&mut buf) {
            Ok(n) => prop_assert!(n <= size),
            Err(e) => prop_assert_eq!(e, Error::BufferTooSmall { needed: m.encoded_len(), available: size }),
        }
    }

    #[test]
    fn serial_text_round_trips(s in serial()) {
        prop_assert_eq!(Serial::parse(&s.to_string()), Ok(s));
        prop_assert_eq!(Serial::from_u64(s.as_u64()), Ok(s));
    }

    #[test]
    fn gps_text_round_trips(t in any::<u32>()) {
        let t = GpsTime(t);
        prop_assert_eq!(t.to_string().parse::<GpsTime>(), Ok(t));
    }
}
