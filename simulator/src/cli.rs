//! The command line of `meterhub-sim`: subcommands and their flags.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use meterhub_sim::faults::Faults;
use meterhub_sim::fleet::{self, FleetSpec};
use meterhub_sim::udp::FleetKeys;
use meterhub_sim::udp::keys::parse_hex;

/// A fleet of simulated LoRaWAN gas and electricity meters for meterhub.
#[derive(Debug, Parser)]
#[command(name = "meterhub-sim", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a fleet: against an MQTT broker, publishing what ChirpStack would for each uplink
    /// (`--transport integration`), or through simulated gateways to a ChirpStack
    /// (`--transport udp`).
    Run(Box<RunArgs>),
    /// Measure how fast the fleet generates uplinks (integration: events built and
    /// serialised, no network; udp: frames sent through a gateway to a counting server on
    /// 127.0.0.1), and the memory it takes.
    Bench {
        #[command(flatten)]
        fleet: FleetArgs,
        #[command(flatten)]
        faults: FaultArgs,
        /// Uplinks to generate (integration).
        #[arg(long, default_value_t = 2_000_000)]
        uplinks: u64,
        /// What to measure.
        #[arg(long, value_enum, default_value_t = Transport::Integration)]
        transport: Transport,
        /// Wall seconds to send for (udp).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Write the fleet's registry (CSV for `meterhub meters import`) and exit.
    Registry {
        #[command(flatten)]
        fleet: FleetArgs,
        #[command(flatten)]
        keys: KeyArgs,
        /// Also write the meters' OTAA keys here (`devEui,joinEui,appKey`, for provisioning
        /// ChirpStack when running with `--transport udp`).
        #[arg(long = "keys")]
        keys_csv: Option<std::path::PathBuf>,
    },
    /// Register the fleet in a real ChirpStack over its gRPC API (built with the `provision`
    /// feature): the gateways, the meters' device profile, an application and every meter as
    /// a device with the OTAA keys `run --transport udp` joins with. What exists is kept, so
    /// it can run again. Prints the ids meterhub and `run` need.
    #[cfg(feature = "provision")]
    Provision(Box<ProvisionArgs>),
    /// Print valid meter serial numbers (consecutive sequence numbers, check digit computed).
    Serials {
        /// How many serials.
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Manufacturer code, 0–99.
        #[arg(long, default_value_t = 12)]
        manufacturer: u8,
        /// Production year, last two digits.
        #[arg(long, default_value_t = 26)]
        year: u8,
        /// Medium digit: 1 gas, 2 electricity, 3 both.
        #[arg(long, default_value_t = 1)]
        medium: u8,
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        first: u32,
    },
}

/// The fleet's make-up.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Number of meters.
    #[arg(long, default_value_t = 1_000)]
    pub meters: u32,
    /// Seed of every random choice: the same seed gives the same run, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Minutes between readings.
    #[arg(long, default_value_t = 1_440)]
    pub reporting_interval: u16,
    /// Share of electricity meters (the rest are gas).
    #[arg(long, default_value_t = 0.5)]
    pub electricity_share: f64,
    /// Share of meters left out of the registry (their data is quarantined by the server).
    #[arg(long, default_value_t = 0.0)]
    pub unregistered_share: f64,
    /// The ChirpStack application the meters belong to (a UUID): in the registry and, with
    /// `--transport integration`, in the events' topics. Against a real ChirpStack, give the
    /// id ChirpStack assigned to the application the devices are in.
    #[arg(long, default_value = fleet::DEFAULT_APPLICATION_ID)]
    pub application_id: String,
}

/// Faults on demand: rates per uplink (0–1) unless named a share of the fleet. Both
/// transports play them, each as its network shows it: with `--transport udp` at the radio
/// (docs/simulator.md has the table).
#[derive(Debug, Clone, clap::Args)]
pub struct FaultArgs {
    /// Uplinks no gateway hears. udp: the meter transmits (time on air, duty cycle) and no
    /// gateway hears it.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// `up` events published twice with the same deduplicationId. udp: the gateway's
    /// PUSH_DATA reaches the network server twice, token and all, as over a backhaul that
    /// duplicates a datagram (a Semtech packet forwarder never resends one itself).
    #[arg(long, default_value_t = 0.0)]
    pub duplicates: f64,
    /// Uplinks that also arrive by a second path, under a new deduplicationId. udp: a second
    /// gateway hears the frame too and forwards the same PHYPayload with its own RSSI and SNR
    /// (needs --gateways 2 or more).
    #[arg(long, default_value_t = 0.0)]
    pub second_path: f64,
    /// Uplinks whose events are published after those of the next one to three uplinks.
    /// Integration only: the air delivers each frame when it ends, and with udp the order of
    /// the events is the real ChirpStack's (refused there).
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Uplinks whose payload is garbled (no longer decodes). udp: spoilt by the firmware
    /// before encryption, in a valid frame.
    #[arg(long, default_value_t = 0.0)]
    pub garbled: f64,
    /// Share of meters whose frames carry a serial with a wrong check digit.
    #[arg(long, default_value_t = 0.0)]
    pub bad_serial_share: f64,
    /// Uplinks that start a silent spell of the meter. udp: it transmits nothing meanwhile,
    /// still measuring and counting its frames.
    #[arg(long, default_value_t = 0.0)]
    pub silence: f64,
    /// Longest silent spell, simulated hours.
    #[arg(long, default_value_t = 72.0)]
    pub silence_max_hours: f64,
    /// Readings before which the meter's clock jumps.
    #[arg(long, default_value_t = 0.0)]
    pub clock_jumps: f64,
    /// Largest clock jump, seconds (kept below half the reporting interval).
    #[arg(long, default_value_t = 3_600)]
    pub clock_jump_max: i64,
    /// Uplinks with which the meter restarts its frame counter at 0. udp: the real
    /// ChirpStack decides; by default it drops the frames until the counter passes the last
    /// one it accepted.
    #[arg(long, default_value_t = 0.0)]
    pub f_cnt_resets: f64,
    /// Delivered uplinks the meter sends again with the same frame counter. udp: the same
    /// frame goes on the air again once its receive windows have passed, duty cycle
    /// permitting.
    #[arg(long, default_value_t = 0.0)]
    pub retransmissions: f64,
    /// Play a device profile with frame-counter validation disabled: ChirpStack accepts a
    /// counter that went back instead of logging UPLINK_F_CNT_RESET and dropping the uplink.
    /// Integration only: with udp, set it in the real ChirpStack's device profile.
    #[arg(long)]
    pub skip_f_cnt_check: bool,
}

impl FaultArgs {
    pub fn faults(&self) -> Result<Faults> {
        let faults = Faults {
            loss: self.loss,
            duplicate: self.duplicates,
            second_path: self.second_path,
            reorder: self.reorder,
            garble: self.garbled,
            bad_serial_share: self.bad_serial_share,
            silence: self.silence,
            silence_max_seconds: (self.silence_max_hours * 3_600.0) as i64,
            clock_jump: self.clock_jumps,
            clock_jump_max_seconds: self.clock_jump_max,
            f_cnt_reset: self.f_cnt_resets,
            retransmission: self.retransmissions,
            skip_f_cnt_check: self.skip_f_cnt_check,
        };
        faults.check().map_err(anyhow::Error::msg)?;
        Ok(faults)
    }
}

impl FleetArgs {
    /// The fleet these flags describe; a malformed application id is refused, naming the flag.
    pub fn spec(&self) -> Result<FleetSpec> {
        let application_id = uuid::Uuid::parse_str(&self.application_id)
            .map_err(|_| {
                anyhow::anyhow!(
                    "--application-id {:?} is not a UUID (ChirpStack's application ids are)",
                    self.application_id
                )
            })?
            .hyphenated()
            .to_string();
        Ok(FleetSpec {
            meters: self.meters,
            seed: self.seed,
            reporting_interval_minutes: self.reporting_interval,
            electricity_share: self.electricity_share,
            unregistered_share: self.unregistered_share,
            application_id,
            ..FleetSpec::default()
        })
    }
}

/// How the meters' frames leave the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Publish what ChirpStack's MQTT integration would (no ChirpStack needed).
    Integration,
    /// Real LoRaWAN 1.0.x frames through simulated gateways over the Semtech UDP protocol,
    /// to a ChirpStack MQTT Forwarder or Gateway Bridge in front of a real ChirpStack, in
    /// real time.
    Udp,
}

/// The meters' OTAA keys.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// One AppKey (32 hex digits) for every meter; by default each meter has its own,
    /// derived from the seed.
    #[arg(long)]
    pub app_key: Option<String>,
    /// JoinEUI (AppEUI) of every meter, 16 hex digits.
    #[arg(long, default_value = "0000000000000000")]
    pub join_eui: String,
}

impl KeyArgs {
    pub fn keys(&self, seed: u64) -> Result<FleetKeys> {
        Ok(FleetKeys {
            seed,
            app_key: self
                .app_key
                .as_deref()
                .map(parse_hex::<16>)
                .transpose()
                .context("--app-key")?,
            join_eui: parse_hex(&self.join_eui).context("--join-eui")?,
        })
    }
}

/// The gateway transport's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct UdpArgs {
    /// Where the gateways send their Semtech UDP datagrams. ChirpStack v4 has no UDP
    /// listener: the chain is simulator → Semtech UDP → ChirpStack MQTT Forwarder (one per
    /// gateway EUI) or Gateway Bridge (any number) → MQTT → ChirpStack. Give it once (every
    /// gateway to one Gateway Bridge) or once per gateway, in EUI order (a forwarder each).
    #[arg(long, default_value = "127.0.0.1:1700", num_args = 1)]
    pub gateway: Vec<String>,
    /// How many gateways to play; meters are spread over them.
    #[arg(long, default_value_t = 1)]
    pub gateways: u16,
    /// EUI of the first gateway (16 hex digits); the others count up from it.
    #[arg(long, default_value = "0016c001ff000001")]
    pub gateway_eui: String,
    /// JoinRequests per second, fleet-wide.
    #[arg(long, default_value_t = 50.0)]
    pub join_rate: f64,
    /// Seconds to wait for a JoinAccept before joining again (doubling at each attempt).
    #[arg(long, default_value_t = 10)]
    pub join_timeout: u64,
    /// DevNonce of every meter's first JoinRequest. By default it follows from the wall
    /// clock (minutes), so that a new run does not reuse the nonces of an earlier one, which
    /// ChirpStack would refuse.
    #[arg(long)]
    pub dev_nonce_start: Option<u16>,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Also write the meters' OTAA keys CSV here before starting.
    #[arg(long = "keys")]
    pub keys_csv: Option<std::path::PathBuf>,
    /// Run with an accelerated clock, or one set away from the wall clock, all the same. A
    /// real ChirpStack keeps real time and ignores a gateway time more than 30 s from its
    /// own, so the udp transport refuses such a clock unless this is given (for a network
    /// server of your own that follows the simulator's clock).
    #[arg(long)]
    pub allow_accelerated_clock: bool,
    /// Let meters transmit as often as they like: by default each keeps EU868's 1 % duty
    /// cycle, holding a frame back until its sub-band is free (time on air per Semtech's
    /// formula) and giving it up after a reporting interval.
    #[arg(long)]
    pub no_duty_cycle: bool,
    /// Deliver frames that overlap on the same channel and spreading factor at a gateway: by
    /// default both are lost, as on the air.
    #[arg(long)]
    pub no_collisions: bool,
    /// Send every downlink the gateways receive: by default a gateway refuses one that
    /// arrives after the meter's receive window it is for (TX_ACK `TOO_LATE`).
    #[arg(long)]
    pub no_rx_windows: bool,
}

/// `meterhub-sim run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub faults: FaultArgs,
    /// How frames leave the simulator.
    #[arg(long, value_enum, default_value_t = Transport::Integration)]
    pub transport: Transport,
    /// Per reading, the chance (0–1) that the meter detects tampering before its next one (a
    /// magnet, movement or a cut cable, alike likely) and raises the alarm at once; its next
    /// reading carries the tamper flag. Both transports.
    #[arg(long, default_value_t = 0.0)]
    pub tamper: f64,
    #[command(flatten)]
    pub udp: UdpArgs,
    /// MQTT broker (v5), as ChirpStack's integration would publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,
    /// Simulated days to run (forever when absent).
    #[arg(long)]
    pub days: Option<f64>,
    /// Simulated seconds per wall second; 86400 runs a day per second.
    #[arg(long, default_value_t = 1)]
    pub clock_speed: u32,
    /// RFC 3339 simulated instant at which the run starts (default: the anchor).
    #[arg(long)]
    pub clock_start: Option<String>,
    /// RFC 3339 wall instant at which the simulated clock reads --clock-start (default: now).
    /// Give the server the same speed, start and anchor so that the two agree on the time.
    #[arg(long)]
    pub clock_anchor: Option<String>,
    /// Also write the registry CSV here before starting.
    #[arg(long)]
    pub registry: Option<std::path::PathBuf>,
    /// At the end, write the summary as JSON here: totals, faults by kind, and the readings
    /// a server must have stored for each meter.
    #[arg(long)]
    pub summary_json: Option<std::path::PathBuf>,
}

/// `meterhub-sim provision`.
#[cfg(feature = "provision")]
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// ChirpStack's gRPC API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api_url: String,
    /// An API token (ChirpStack's UI: API keys; or `chirpstack create-api-key`).
    #[arg(long, env = "CHIRPSTACK_API_TOKEN", hide_env_values = true)]
    pub api_token: String,
    /// The tenant (UUID); by default ChirpStack's first.
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// The application's name: found, or created.
    #[arg(long, default_value = "meterhub-sim")]
    pub application: String,
    /// How many gateways `run --transport udp --gateways` will play.
    #[arg(long, default_value_t = 1)]
    pub gateways: u16,
    /// EUI of the first gateway (16 hex digits); the others count up from it.
    #[arg(long, default_value = "0016c001ff000001")]
    pub gateway_eui: String,
}
