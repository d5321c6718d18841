//! Faults on demand at the radio, for the gateway transport: which of the integration
//! transport's faults have a meaning on the air (and which are refused, each with its
//! reason), and the bookkeeping of frames that reach the network server more than once.
//!
//! The faults are drawn as on the integration transport (see [`crate::faults`]); what they do
//! here is what a real network shows:
//! - loss: the meter transmits (time on air, duty cycle) but no gateway hears it;
//! - garbled, bad serial: the firmware spoils the payload before encrypting it, so the frame
//!   is valid LoRaWAN and its payload does not decode (or fails its check digit);
//! - silence: the meter transmits nothing for a while, still measuring and counting frames;
//! - clock jumps, frame-counter resets: the meter's own;
//! - second path: a second gateway (the next one) hears the frame too and forwards the same
//!   PHYPayload with its own counter, RSSI and SNR: what every network with overlapping
//!   gateways sees, and what ChirpStack deduplicates;
//! - duplicates: the gateway's PUSH_DATA reaches the network server twice (a backhaul that
//!   duplicates a UDP datagram, its token unchanged). The Semtech packet forwarder never
//!   resends a PUSH_DATA that got no PUSH_ACK, so neither does this gateway;
//! - retransmissions: the meter sends the same frame again once its receive windows have
//!   passed and its duty cycle allows (LoRaWAN's repetitions, NbTrans).
//!
//! Refused: reordering (the air delivers each frame when it ends; the order in which
//! ChirpStack publishes its events is ChirpStack's own) and `--skip-f-cnt-check` (a setting
//! of ChirpStack's device profile, which the real ChirpStack applies).

use std::collections::HashMap;

use crate::faults::Faults;

/// Why the gateway transport refuses `faults` with `gateways` gateways, naming the flag; `Ok`
/// when it can play them all.
pub fn check(faults: &Faults, gateways: usize) -> Result<(), String> {
    if faults.reorder > 0.0 {
        return Err(
            "--reorder has no meaning on the air with --transport udp: each frame \
                    reaches its gateways when it ends, and the order in which ChirpStack \
                    publishes its events is ChirpStack's own; use --transport integration to \
                    play it"
                .into(),
        );
    }
    if faults.skip_f_cnt_check {
        return Err(
            "--skip-f-cnt-check plays a ChirpStack setting, which with --transport udp \
                    the real ChirpStack applies: disable frame-counter validation in its \
                    device profile instead"
                .into(),
        );
    }
    if faults.second_path > 0.0 && gateways < 2 {
        return Err(format!(
            "--second-path with --transport udp has a second gateway hear the frame: give \
             --gateways 2 or more (here {gateways})"
        ));
    }
    Ok(())
}

/// A frame with copies still on the air.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Copies that have not landed yet.
    left: u8,
    /// Whether a gateway has forwarded one of them.
    forwarded: bool,
}

/// What the network server makes of the copies of a frame and of each meter's frame
/// counter, as far as the expected readings go: one frame, however many copies a gateway
/// forwarded, is one uplink; a frame whose counter does not pass the last one forwarded in
/// its session is dropped by ChirpStack's frame-counter validation (on by default).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Frames sent as more than one copy, by frame id.
    pending: HashMap<u64, Pending>,
    /// Whether a meter's counter can go back at all (see [`Ledger::new`]).
    counters: bool,
    /// The last frame counter forwarded of each meter, with its session.
    last_f_cnt: HashMap<u32, (u32, u32)>,
}

/// What a landed copy means for the network server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    /// Not forwarded (it collided), or a later copy of a frame already forwarded.
    Nothing,
    /// The frame's first forwarded copy, with a counter past the last one: a new uplink.
    New,
    /// The frame's first forwarded copy, with a counter at or below the last one of its
    /// session: ChirpStack's frame-counter validation drops it.
    Behind,
}

impl Ledger {
    /// An empty ledger. `counters`: whether a meter's frame counter can go back in a session
    /// (frame-counter resets, or a retransmission forwarded after a later frame); without,
    /// no counter is kept, which spares a large fleet a map entry per meter.
    pub fn new(counters: bool) -> Ledger {
        Ledger {
            counters,
            ..Ledger::default()
        }
    }

    /// Frame `id` takes the air as `copies` copies (transmissions times gateways hearing it).
    pub fn sent(&mut self, id: u64, copies: u8) {
        if copies > 1 {
            self.pending.insert(
                id,
                Pending {
                    left: copies,
                    forwarded: false,
                },
            );
        }
    }

    /// A copy of frame `id` of `meter` (session `session`, counter `f_cnt`) landed at a
    /// gateway, which `forwarded` it unless it collided.
    pub fn landed(
        &mut self,
        id: u64,
        meter: u32,
        session: u32,
        f_cnt: u32,
        forwarded: bool,
    ) -> Landed {
        let first = match self.pending.get_mut(&id) {
            Some(p) => {
                p.left = p.left.saturating_sub(1);
                let first = forwarded && !p.forwarded;
                p.forwarded |= forwarded;
                if p.left == 0 {
                    self.pending.remove(&id);
                }
                first
            }
            None => forwarded,
        };
        if !first {
            return Landed::Nothing;
        }
        if !self.counters {
            return Landed::New;
        }
        match self.last_f_cnt.get(&meter) {
            Some(&(s, last)) if s == session && f_cnt <= last => Landed::Behind,
            _ => {
                self.last_f_cnt.insert(meter, (session, f_cnt));
                Landed::New
            }
        }
    }

    /// Frames with copies still on the air.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_without_a_radio_meaning_are_refused_by_name() {
        assert!(check(&Faults::default(), 1).is_ok());
        let radio = Faults {
            loss: 0.1,
            duplicate: 0.1,
            garble: 0.1,
            bad_serial_share: 0.1,
            silence: 0.1,
            clock_jump: 0.1,
            f_cnt_reset: 0.1,
            retransmission: 0.1,
            ..Faults::default()
        };
        assert!(check(&radio, 1).is_ok());
        let reorder = Faults {
            reorder: 0.1,
            ..radio.clone()
        };
        assert!(check(&reorder, 2).unwrap_err().starts_with("--reorder "));
        let skip = Faults {
            skip_f_cnt_check: true,
            ..radio.clone()
        };
        assert!(
            check(&skip, 2)
                .unwrap_err()
                .starts_with("--skip-f-cnt-check ")
        );
        let second = Faults {
            second_path: 0.1,
            ..radio
        };
        assert!(check(&second, 1).unwrap_err().contains("--gateways 2"));
        assert!(check(&second, 2).is_ok());
    }

    #[test]
    fn one_frame_heard_twice_is_one_uplink_whichever_copy_gets_through() {
        let mut ledger = Ledger::new(false);
        // Two gateways hear frame 1: the first copy collides, the second is forwarded.
        ledger.sent(1, 2);
        assert_eq!(ledger.landed(1, 0, 1, 0, false), Landed::Nothing);
        assert_eq!(ledger.landed(1, 0, 1, 0, true), Landed::New);
        assert_eq!(ledger.pending(), 0);
        // Frame 2 and its repetition both forwarded: one uplink.
        ledger.sent(2, 2);
        assert_eq!(ledger.landed(2, 0, 1, 1, true), Landed::New);
        assert_eq!(ledger.landed(2, 0, 1, 1, true), Landed::Nothing);
        // A single copy that collided.
        ledger.sent(3, 1);
        assert_eq!(ledger.landed(3, 0, 1, 2, false), Landed::Nothing);
        assert_eq!(ledger.pending(), 0);
    }

    #[test]
    fn a_counter_that_went_back_is_behind_until_it_passes_the_last_or_a_new_session() {
        let mut ledger = Ledger::new(true);
        for (id, f_cnt) in [(1, 0), (2, 1), (3, 2)] {
            assert_eq!(ledger.landed(id, 7, 1, f_cnt, true), Landed::New);
        }
        // The meter restarted its counter: 0 to 2 are behind, 3 is new again.
        assert_eq!(ledger.landed(4, 7, 1, 0, true), Landed::Behind);
        assert_eq!(ledger.landed(5, 7, 1, 2, true), Landed::Behind);
        assert_eq!(ledger.landed(6, 7, 1, 3, true), Landed::New);
        // Another meter, and a new session of this one, count from 0.
        assert_eq!(ledger.landed(7, 8, 1, 0, true), Landed::New);
        assert_eq!(ledger.landed(8, 7, 2, 0, true), Landed::New);
        // A ledger told that no counter goes back keeps none.
        let mut ledger = Ledger::new(false);
        assert_eq!(ledger.landed(1, 7, 1, 5, true), Landed::New);
        assert_eq!(ledger.landed(2, 7, 1, 0, true), Landed::New);
        assert!(ledger.last_f_cnt.is_empty());
    }
}
