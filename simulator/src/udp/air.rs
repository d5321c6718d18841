//! The air around each gateway: frames in flight, and which of them collide. Two frames that a
//! gateway hears on the same channel at the same spreading factor, overlapping in time, are
//! both lost (no capture effect: the stronger one does not win). Frames on other channels or
//! at other spreading factors do not disturb each other, as LoRa's factors are nearly
//! orthogonal. A frame lands, to be forwarded or dropped, once it has ended and no frame still
//! to come can start before its end.

/// A frame on the air, carrying what the runner needs once it lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flight<T> {
    /// The gateway that hears it.
    pub gateway: usize,
    /// Its channel (index into the region's channels).
    pub channel: u8,
    /// Its spreading factor.
    pub sf: u8,
    /// When it starts, simulated µs since the Unix epoch.
    pub start_us: i64,
    /// When it ends, likewise.
    pub end_us: i64,
    /// Whether another frame overlapped it.
    pub collided: bool,
    /// The frame and what it came from.
    pub payload: T,
}

impl<T> Flight<T> {
    fn interferes(&self, other: &Flight<T>) -> bool {
        self.gateway == other.gateway
            && self.channel == other.channel
            && self.sf == other.sf
            && self.start_us < other.end_us
            && other.start_us < self.end_us
    }
}

/// Frames in flight.
#[derive(Debug, Clone)]
pub struct Air<T> {
    flying: Vec<Flight<T>>,
    collisions: bool,
}

impl<T> Air<T> {
    /// An empty air; `collisions` off makes every frame arrive whatever overlaps it.
    pub fn new(collisions: bool) -> Air<T> {
        Air {
            flying: Vec::new(),
            collisions,
        }
    }

    /// A frame takes the air: it and every frame it overlaps are marked collided.
    pub fn send(&mut self, mut flight: Flight<T>) {
        if self.collisions {
            for other in &mut self.flying {
                if other.interferes(&flight) {
                    other.collided = true;
                    flight.collided = true;
                }
            }
        }
        self.flying.push(flight);
    }

    /// When the earliest frame in flight ends.
    pub fn next_end(&self) -> Option<i64> {
        self.flying.iter().map(|f| f.end_us).min()
    }

    /// Frames in flight.
    pub fn len(&self) -> usize {
        self.flying.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.flying.is_empty()
    }

    /// The frames that ended by `horizon`, in the order they ended. The caller promises that
    /// every frame starting before `horizon` has been sent, so their fate is settled.
    pub fn land(&mut self, horizon: i64) -> Vec<Flight<T>> {
        let (mut landed, flying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flying)
            .into_iter()
            .partition(|f| f.end_us <= horizon);
        self.flying = flying;
        // Stable: frames that end together land in the order they were sent.
        landed.sort_by_key(|f| f.end_us);
        landed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flight(payload: u32, channel: u8, sf: u8, start_us: i64, len: i64) -> Flight<u32> {
        Flight {
            gateway: 0,
            channel,
            sf,
            start_us,
            end_us: start_us + len,
            collided: false,
            payload,
        }
    }

    fn fates(landed: &[Flight<u32>]) -> Vec<(u32, bool)> {
        landed.iter().map(|f| (f.payload, f.collided)).collect()
    }

    #[test]
    fn overlapping_frames_on_one_channel_and_factor_are_both_lost() {
        let mut air = Air::new(true);
        air.send(flight(1, 0, 7, 0, 60_000));
        air.send(flight(2, 0, 7, 50_000, 60_000));
        // Other channel, other factor, or just after: untouched.
        air.send(flight(3, 1, 7, 10_000, 60_000));
        air.send(flight(4, 0, 8, 10_000, 60_000));
        air.send(flight(5, 0, 7, 110_000, 60_000));
        let mut other_gateway = flight(6, 0, 7, 20_000, 60_000);
        other_gateway.gateway = 1;
        air.send(other_gateway);
        assert_eq!(air.next_end(), Some(60_000));
        assert!(air.land(59_999).is_empty());
        let landed = air.land(i64::MAX);
        assert_eq!(
            fates(&landed),
            [
                (1, true),
                (3, false),
                (4, false),
                (6, false),
                (2, true),
                (5, false)
            ]
        );
        assert!(air.is_empty());
    }

    #[test]
    fn only_frames_that_ended_land() {
        let mut air = Air::new(true);
        air.send(flight(1, 0, 7, 0, 100));
        air.send(flight(2, 2, 12, 0, 1_000));
        assert_eq!(fates(&air.land(500)), [(1, false)]);
        assert_eq!(air.len(), 1);
        // A frame sent later still collides with one in flight.
        air.send(flight(3, 2, 12, 900, 1_000));
        assert_eq!(fates(&air.land(2_000)), [(2, true), (3, true)]);
    }

    #[test]
    fn without_collisions_every_frame_arrives() {
        let mut air = Air::new(false);
        air.send(flight(1, 0, 7, 0, 100));
        air.send(flight(2, 0, 7, 0, 100));
        assert_eq!(fates(&air.land(100)), [(1, false), (2, false)]);
    }
}
