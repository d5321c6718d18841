//! The real `meterhub serve` binary under the failures a deployment meets: crashes (SIGKILL),
//! a database that goes away or stays locked for a while, and a graceful stop (SIGTERM) in the
//! middle of a stream; and two instances splitting one stream through a shared subscription.
//! Each test publishes a stream of distinct readings as ChirpStack would,
//! at QoS 1, and checks at the end that every reading is stored exactly once.
//!
//! These run the binary, not `Application` in-process, because what they test lives at the
//! process boundary: the broker's persistent session after a crash, signal handling and the
//! exit status. They run on SQLite always and on PostgreSQL when `METERHUB_TEST_DATABASE_URL`
//! is set; the broker is Mosquitto when `METERHUB_TEST_MOSQUITTO` is set and the in-process
//! broker otherwise (see `test_support`).

// The bridge tests' helpers (meters, ChirpStack events, a QoS 1 publisher) serve here as they
// are; this binary does not use all of them.
#[allow(dead_code)]
#[path = "../bridge/support.rs"]
mod bridge;
mod crashes;
mod harness;
mod outage;
mod scale_out;
mod shutdown;
