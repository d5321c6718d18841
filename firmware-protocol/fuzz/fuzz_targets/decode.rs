//! Decoding any bytes on any fPort, in either direction, must not panic; whatever decodes must
//! encode again and serialise to JSON.
#![no_main]

use firmware_protocol::{decode_downlink, decode_uplink};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&port, frame)) = data.split_first() else {
        return;
    };
    let mut buf = [0u8; 64];
    if let Ok(m) = decode_uplink(port, frame) {
        let _ = m.encode(&mut buf);
        let _ = serde_json::to_string(&m);
    }
    if let Ok(m) = decode_downlink(port, frame) {
        let _ = m.encode(&mut buf);
    }
});
