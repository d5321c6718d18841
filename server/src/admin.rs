//! One-shot administrative commands: `migrate`, `meters import`, `update`, `retire`,
//! `delete-readings`, `delete-alarms` and `erase-customer`, `retention`, and `keys`.

mod replace;
pub use replace::replace_meter;

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::registry::import::{Event, ImportReport, import_file};
use crate::storage::{Dialect, Store};
use crate::time::now_utc;

async fn open(settings: &Settings) -> Result<Store> {
    Store::connect(
        settings.database.url.expose(),
        settings.database.max_connections,
    )
    .await
    .context("connecting to the database")
}

/// Applies the migrations (and, on PostgreSQL, creates the readings partitions).
pub async fn migrate(settings: &Settings) -> Result<String> {
    let store = open(settings).await?;
    let clock = settings.clock()?;
    let report = store
        .migrate(now_utc(&clock))
        .await
        .context("migrating the database")?;
    store.close().await;
    Ok(match (store.dialect(), report) {
        (Dialect::Postgres, Some(r)) => format!(
            "PostgreSQL database is up to date; {} readings partitions created, {} rows moved out of DEFAULT",
            r.created.len(),
            r.moved
        ),
        _ => "SQLite database is up to date".to_owned(),
    })
}

/// Imports meters from a CSV or JSON file, migrating the database first so that a fresh
/// machine needs one command. `on` hears every error of every refused row and the progress.
pub async fn import_meters(
    settings: &Settings,
    file: &Path,
    on: impl FnMut(Event<'_>),
) -> Result<ImportReport> {
    let store = open(settings).await?;
    let clock = settings.clock()?;
    store
        .migrate(now_utc(&clock))
        .await
        .context("migrating the database")?;
    let report = import_file(&store, file, now_utc(&clock), on).await;
    // Running `serve` instances cache meters: on PostgreSQL they are told, as after any
    // write (an import may touch every meter, so they drop everything).
    if report.as_ref().is_ok_and(|r| r.inserted + r.updated > 0) {
        crate::cache::Changes::new(
            crate::cache::ResponseCache::new(1, std::time::Duration::ZERO),
            store.clone(),
        )
        .everything_changed()
        .await;
    }
    store.close().await;
    report
}

/// The clock's time read at one wall instant, as one JSON line.
pub fn clock_report(clock: &firmware_protocol::clock::Clock) -> String {
    let wall = DateTime::<Utc>::from(std::time::SystemTime::now());
    let wall_micros = wall.timestamp_micros();
    let simulated_micros = clock.at_wall_unix_micros(wall_micros);
    let simulated = DateTime::from_timestamp_micros(simulated_micros).unwrap_or_default();
    serde_json::json!({
        "wallUnixMicros": wall_micros,
        "simulatedUnixMicros": simulated_micros,
        "simulated": simulated.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "speed": clock.speed(),
    })
    .to_string()
}

/// Opens and migrates the database named by the settings.
async fn open_migrated(settings: &Settings) -> Result<Store> {
    let store = open(settings).await?;
    store
        .migrate(now_utc(&settings.clock()?))
        .await
        .context("migrating the database")?;
    Ok(store)
}

/// Creates an API key; the output holds its secret, shown this once.
pub async fn create_key(settings: &Settings, name: &str, role: &str) -> Result<String> {
    let role = crate::api::auth::Role::parse(role)
        .with_context(|| format!("--role {role:?} is not one of viewer, operator, admin"))?;
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.len() <= 100,
        "--name must be 1 to 100 characters"
    );
    let store = open_migrated(settings).await?;
    let key = crate::api::auth::generate(name, role, now_utc(&settings.clock()?));
    let stored = store.insert_api_key(&key.row).await;
    store.close().await;
    stored.context("storing the key")?;
    Ok(format!(
        "id {}\nrole {}\nsecret {}\n(the secret is not stored and cannot be shown again)",
        key.row.id,
        role.as_str(),
        key.secret
    ))
}

/// Lists the API keys, one per line.
pub async fn list_keys(settings: &Settings) -> Result<String> {
    let store = open_migrated(settings).await?;
    let keys = store.api_keys().await;
    store.close().await;
    let mut out = String::from("id\tname\trole\tprefix\tcreated\trevoked\n");
    for k in keys.context("reading the keys")? {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            k.id,
            k.name,
            k.role,
            k.prefix,
            k.created_at.to_rfc3339(),
            k.revoked_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "-".into())
        ));
    }
    Ok(out)
}

/// Revokes an API key.
pub async fn revoke_key(settings: &Settings, id: &str) -> Result<String> {
    let id = uuid::Uuid::parse_str(id).with_context(|| format!("{id:?} is not a key id"))?;
    let store = open_migrated(settings).await?;
    let done = store.revoke_api_key(id, now_utc(&settings.clock()?)).await;
    store.close().await;
    match done {
        Ok(()) => Ok(format!("key {id} revoked")),
        Err(crate::storage::Error::NotFound) => anyhow::bail!("no key {id}"),
        Err(crate::storage::Error::Conflict(why)) => anyhow::bail!(
            "key {id} not revoked: {why} (meterhub keys create --name NAME --role admin)"
        ),
        Err(e) => Err(e).context("revoking the key"),
    }
}

/// The meter a command names by DevEUI or serial.
async fn meter_named(store: &Store, name: &str) -> Result<crate::storage::meters::Meter> {
    use crate::api::input::MeterRef;
    let found = match MeterRef::parse(name, "meter").map_err(|p| anyhow::anyhow!(p.detail))? {
        MeterRef::DevEui(d) => store.meter_by_dev_eui(&d).await,
        MeterRef::Serial(s) => store.meter_by_serial(&s).await,
    };
    found
        .context("reading the meter")?
        .with_context(|| format!("no meter {name}"))
}

/// Where a command announces its writes: running `serve` instances on PostgreSQL hear them
/// (on SQLite they see the database change).
fn announcer(store: &Store) -> crate::cache::Changes {
    crate::cache::Changes::new(
        crate::cache::ResponseCache::new(1, std::time::Duration::ZERO),
        store.clone(),
    )
}

/// A refusal as the command's error.
fn refusal(r: crate::registry::lifecycle::Refused) -> anyhow::Error {
    use crate::registry::lifecycle::Refused;
    match r {
        Refused::Invalid(errors) => anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(|e| format!("--{}: {}", flag(e.field), e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Refused::Conflict(why, _) => anyhow::anyhow!(why),
        Refused::Storage(crate::storage::Error::Conflict(why)) => anyhow::anyhow!(why),
        Refused::Storage(e) => anyhow::Error::new(e).context("writing the change"),
    }
}

/// The command-line flag of an API field: `userId` → `user-id`.
fn flag(field: &str) -> String {
    // A replacement's new meter is named by plain flags (`--serial`), not `install.serial`.
    let field = field.strip_prefix("install.").unwrap_or(field);
    let mut out = String::new();
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn cli_actor(settings: &Settings, reason: &str) -> Result<crate::storage::lifecycle::Actor> {
    let reason = reason.trim();
    anyhow::ensure!(
        !reason.is_empty() && reason.chars().count() <= crate::registry::record::MAX_REASON,
        "--reason must be 1 to {} characters",
        crate::registry::record::MAX_REASON
    );
    Ok(crate::storage::lifecycle::Actor {
        name: "cli".into(),
        at: now_utc(&settings.clock()?),
        reason: reason.to_owned(),
    })
}

/// `meters update`: changes a meter's details; the meter as JSON.
pub async fn update_meter(settings: &Settings, args: &crate::cli::UpdateArgs) -> Result<String> {
    let who = cli_actor(settings, &args.reason)?;
    let now = who.at;
    let store = open_migrated(settings).await?;
    let outcome = async {
        let meter = meter_named(&store, &args.meter).await?;
        crate::registry::lifecycle::change(&store, &announcer(&store), &meter, &args.patch(), who)
            .await
            .map_err(refusal)?;
        let meter = meter_named(&store, &args.meter).await?;
        Ok::<_, anyhow::Error>(serde_json::to_string(&crate::api::views::MeterView::new(
            meter, now,
        ))?)
    }
    .await;
    store.close().await;
    outcome
}

/// `meters retire`: takes a meter out of service; its final report as JSON.
pub async fn retire_meter(
    settings: &Settings,
    meter: &str,
    outcome: &str,
    reason: &str,
) -> Result<String> {
    use crate::storage::lifecycle::RetireOutcome;
    let outcome = match outcome {
        "renovation" => RetireOutcome::Renovation,
        "destruction" => RetireOutcome::Destruction,
        other => anyhow::bail!("--outcome {other:?} is not one of renovation, destruction"),
    };
    let who = cli_actor(settings, reason)?;
    let store = open_migrated(settings).await?;
    let report = async {
        let meter = meter_named(&store, meter).await?;
        let report =
            crate::registry::lifecycle::retire(&store, &announcer(&store), &meter, outcome, who)
                .await
                .map_err(refusal)?;
        Ok::<_, anyhow::Error>(serde_json::to_string(&report)?)
    }
    .await;
    store.close().await;
    report
}

/// An RFC 3339 time given as `--flag`.
fn time_flag(text: &str, flag: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.to_utc())
        .with_context(|| format!("--{flag} {text:?} is not an RFC 3339 time"))
}

/// `meters delete-readings` / `delete-alarms`: deletes (or, `--dry-run`, looks at) a
/// meter's readings or alarms in a range; what went as JSON, as the API answers it.
pub async fn delete_data(
    settings: &Settings,
    args: &crate::cli::DeleteArgs,
    data: crate::storage::deletion::Data,
    force: bool,
) -> Result<String> {
    use crate::registry::deletion::{self, Ask, Refused};
    let ask = Ask {
        data,
        from: time_flag(&args.from, "from")?,
        to: time_flag(&args.to, "to")?,
        dry_run: args.dry_run,
        force,
        reason: args.reason.trim().to_owned(),
    };
    let as_flags = |errors: &[crate::registry::record::FieldError]| {
        anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(|e| format!("--{}: {}", flag(e.field), e.message))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    deletion::check(&ask).map_err(|e| as_flags(&e))?;
    let calendar = crate::billing::Calendar::new(&settings.utility, &settings.billing)?;
    let who = crate::storage::lifecycle::Actor {
        name: "cli".into(),
        at: now_utc(&settings.clock()?),
        reason: ask.reason.clone(),
    };
    let store = open_migrated(settings).await?;
    let out = async {
        let meter = meter_named(&store, &args.meter).await?;
        let outcome = deletion::delete(&store, &announcer(&store), &calendar, &meter, ask, who)
            .await
            .map_err(|r| match r {
                Refused::Invalid(e) => as_flags(&e),
                Refused::Closed(_) => {
                    anyhow::anyhow!("{}", r.to_string().replace("force=true", "--force"))
                }
                Refused::Unknown(why) => anyhow::anyhow!(why),
                Refused::Storage(e) => anyhow::Error::new(e).context("deleting"),
            })?;
        let view = crate::api::deletion_view(&calendar, &meter, &outcome)
            .map_err(|p| anyhow::anyhow!(p.detail))?;
        Ok::<_, anyhow::Error>(serde_json::to_string(&view)?)
    }
    .await;
    store.close().await;
    out
}

/// `meters erase-customer`: erases (or, `--dry-run`, looks at) what names a customer; what
/// changed as JSON, as the API answers it.
pub async fn erase_customer(
    settings: &Settings,
    user_id: &str,
    reason: &str,
    dry_run: bool,
) -> Result<String> {
    use crate::registry::deletion::{self, Refused};
    let who = crate::storage::lifecycle::Actor {
        name: "cli".into(),
        at: now_utc(&settings.clock()?),
        reason: reason.trim().to_owned(),
    };
    let store = open_migrated(settings).await?;
    let out = async {
        let erased = deletion::erase_customer(&store, &announcer(&store), user_id, dry_run, who)
            .await
            .map_err(|r| match r {
                Refused::Invalid(e) => anyhow::anyhow!(
                    "{}",
                    e.iter()
                        .map(|e| match e.field {
                            "customer" => format!("the customer id: {}", e.message),
                            f => format!("--{}: {}", flag(f), e.message),
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                Refused::Closed(_) | Refused::Unknown(_) => anyhow::anyhow!("{r}"),
                Refused::Storage(e) => anyhow::Error::new(e).context("erasing"),
            })?;
        Ok::<_, anyhow::Error>(serde_json::to_string(
            &crate::api::views::ErasureView::new(&erased, dry_run),
        )?)
    }
    .await;
    store.close().await;
    out
}

/// `meterhub meters sync [--dry-run]`: one round of the ChirpStack sync, comparing keys too.
/// Returns the differences, one a line, then what was done, and whether everything asked for
/// was done (a refused change makes the command fail; on a dry run, differences do not).
pub async fn sync_meters(settings: &Settings, dry_run: bool) -> Result<(String, bool)> {
    #[cfg(feature = "chirpstack-sync")]
    {
        use std::fmt::Write as _;

        use crate::chirpstack::sync::{Options, round};
        let api = settings.chirpstack.api()?.context(
            "meters sync needs the [chirpstack] API settings: api_url, api_token (or \
             METERHUB_CHIRPSTACK__API_TOKEN), application_id and device_profile_id",
        )?;
        let store = open_migrated(settings).await?;
        let options = Options {
            apply: !dry_run,
            compare_keys: true,
        };
        let done = round(&store, &api, options).await;
        store.close().await;
        let r = done?;
        let mut out = String::new();
        for d in &r.differences {
            let _ = writeln!(out, "{d}");
        }
        if r.differences.is_empty() {
            let _ = writeln!(
                out,
                "ChirpStack application {} is in step with the registry",
                api.application_id
            );
        } else if dry_run {
            let _ = writeln!(
                out,
                "{} differences; nothing changed (dry run)",
                r.differences.len()
            );
        } else {
            for (dev_eui, error) in &r.failures {
                let _ = writeln!(out, "failed: {dev_eui}: {error}");
            }
            let _ = writeln!(
                out,
                "{} differences: {} devices created, {} deleted, {} given keys, {} failed, {} left as they are",
                r.differences.len(),
                r.created,
                r.deleted,
                r.keys_set,
                r.failures.len(),
                r.differences.iter().filter(|d| !d.is_applied()).count()
            );
        }
        Ok((out, r.failures.is_empty()))
    }
    #[cfg(not(feature = "chirpstack-sync"))]
    {
        let _ = (settings, dry_run);
        anyhow::bail!(
            "this meterhub was built without the chirpstack-sync feature \
             (cargo build --features chirpstack-sync)"
        )
    }
}

/// After a change from the command line (`meters import`, `meters retire`: another process than
/// the server, which would see it only at its next periodic round): one round of the ChirpStack
/// sync when `[chirpstack]` configures it; a line saying what it did, or why it failed. `None`
/// when the sync is not configured.
pub async fn sync_after_change(settings: &Settings) -> Option<String> {
    #[cfg(feature = "chirpstack-sync")]
    {
        use crate::chirpstack::sync::{Options, round};
        let api = match settings.chirpstack.api() {
            Ok(Some(api)) => api,
            Ok(None) => return None,
            Err(e) => return Some(format!("ChirpStack sync not run: {e:#}")),
        };
        let store = match open(settings).await {
            Ok(store) => store,
            Err(e) => return Some(format!("ChirpStack sync not run: {e:#}")),
        };
        let options = Options {
            apply: true,
            compare_keys: false,
        };
        let done = round(&store, &api, options).await;
        store.close().await;
        Some(match done {
            Ok(r) if r.failures.is_empty() => format!(
                "ChirpStack: {} devices created, {} deleted",
                r.created, r.deleted
            ),
            Ok(r) => format!(
                "ChirpStack: {} devices created, {} deleted, {} changes refused (the server's \
                 next round retries them; `meterhub meters sync --dry-run` lists them): {}",
                r.created,
                r.deleted,
                r.failures.len(),
                r.failures
                    .iter()
                    .map(|(dev_eui, e)| format!("{dev_eui}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Err(e) => format!("ChirpStack sync failed (the server's next round retries it): {e:#}"),
        })
    }
    #[cfg(not(feature = "chirpstack-sync"))]
    {
        let _ = settings;
        None
    }
}

/// `retention`: removes (or, `--dry-run`, counts) what is older than `[retention]` keeps;
/// per table the cutoff and what went, as JSON.
pub async fn retention(settings: &Settings, dry_run: bool) -> Result<String> {
    let now = now_utc(&settings.clock()?);
    let store = open_migrated(settings).await?;
    let out = async {
        let report = crate::retention::run(
            &store,
            Some(&announcer(&store)),
            &settings.retention,
            now,
            dry_run,
        )
        .await
        .context("removing old data")?;
        Ok::<_, anyhow::Error>(serde_json::to_string(&report)?)
    }
    .await;
    store.close().await;
    out
}
