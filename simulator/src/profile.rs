//! Consumption profiles: how much gas or energy a household draws at a given hour and day.

/// Relative draw per hour of the day (sums to 24: a flat day would be all ones). Gas peaks for
/// heating and hot water in the morning and evening; electricity has a smaller morning peak
/// and an evening one.
const GAS_HOURLY: [f64; 24] = [
    0.4, 0.3, 0.3, 0.3, 0.4, 0.8, 2.0, 2.0, 1.8, 1.2, 0.9, 0.8, 0.9, 0.8, 0.8, 0.9, 1.1, 1.3, 1.7,
    1.7, 1.6, 1.1, 0.5, 0.4,
];
const ELECTRICITY_HOURLY: [f64; 24] = [
    0.5, 0.4, 0.4, 0.4, 0.4, 0.5, 0.8, 1.2, 1.1, 0.9, 0.9, 1.0, 1.1, 1.0, 0.9, 0.9, 1.0, 1.4, 1.9,
    2.0, 1.8, 1.5, 1.1, 0.9,
];

/// What a meter measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// Gas volume, litres.
    Gas,
    /// Active energy, Wh.
    Electricity,
}

impl Medium {
    /// Average draw per hour of a typical household: about 3.3 m³ of gas or 10 kWh a day.
    pub fn hourly_mean(self) -> f64 {
        match self {
            Medium::Gas => 140.0,
            Medium::Electricity => 420.0,
        }
    }

    fn hourly(self) -> &'static [f64; 24] {
        match self {
            Medium::Gas => &GAS_HOURLY,
            Medium::Electricity => &ELECTRICITY_HOURLY,
        }
    }
}

/// Relative draw on a day of the week (0 = Monday): more at home at weekends.
fn weekday_factor(weekday: u32) -> f64 {
    if weekday >= 5 { 1.2 } else { 0.95 }
}

/// Consumption between two Unix times for a household of `scale` (1.0 = typical), in whole
/// units, integrating the profile hour by hour.
pub fn consumption(medium: Medium, scale: f64, from: i64, to: i64) -> f64 {
    if to <= from {
        return 0.0;
    }
    let mut total = 0.0;
    let mut t = from;
    while t < to {
        let hour_end = (t.div_euclid(3_600) + 1) * 3_600;
        let end = hour_end.min(to);
        let hour = (t.rem_euclid(86_400) / 3_600) as usize;
        // 1970-01-01 was a Thursday (weekday 3).
        let weekday = ((t.div_euclid(86_400) + 3).rem_euclid(7)) as u32;
        let fraction = (end - t) as f64 / 3_600.0;
        total += medium.hourly_mean() * medium.hourly()[hour] * weekday_factor(weekday) * fraction;
        t = end;
    }
    total * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_average_to_one() {
        for p in [GAS_HOURLY, ELECTRICITY_HOURLY] {
            let sum: f64 = p.iter().sum();
            assert!((sum - 24.0).abs() < 1e-9, "{sum}");
        }
    }

    #[test]
    fn a_weekday_of_gas_is_about_three_cubic_metres() {
        // 2026-07-22 was a Wednesday.
        let day = 1_784_678_400;
        let litres = consumption(Medium::Gas, 1.0, day, day + 86_400);
        assert!((litres - 140.0 * 24.0 * 0.95).abs() < 1e-6, "{litres}");
        // Consumption adds up across split intervals.
        let split = consumption(Medium::Gas, 1.0, day, day + 5_000)
            + consumption(Medium::Gas, 1.0, day + 5_000, day + 86_400);
        assert!((split - litres).abs() < 1e-6);
    }

    #[test]
    fn evenings_draw_more_than_nights() {
        let night = 1_784_678_400 + 3 * 3_600;
        let evening = 1_784_678_400 + 19 * 3_600;
        assert!(
            consumption(Medium::Electricity, 1.0, evening, evening + 3_600)
                > 3.0 * consumption(Medium::Electricity, 1.0, night, night + 3_600)
        );
    }
}
