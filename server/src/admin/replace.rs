//! `meters replace`: the replacement of `POST /api/v1/supply-points/{id}/replace`, from the
//! command line.

use anyhow::{Context, Result};

use super::{announcer, cli_actor, meter_named, open_migrated, refusal};
use crate::cli::ReplaceArgs;
use crate::config::Settings;
use crate::registry::lifecycle::replace::{self, Ask, NewDevice, Newcomer};

/// The meter the flags put in.
async fn newcomer(store: &crate::storage::Store, args: &ReplaceArgs) -> Result<Newcomer> {
    match (&args.meter, &args.serial) {
        (Some(m), _) => Ok(Newcomer::Registered(Box::new(meter_named(store, m).await?))),
        (None, Some(serial)) => Ok(Newcomer::New(NewDevice {
            serial: serial.clone(),
            dev_eui: args.dev_eui.clone().context("--dev-eui is required")?,
            application_id: args.application_id.clone(),
            body_number: args.body_number.context("--body-number is required")?,
            production_date: args
                .production_date
                .clone()
                .context("--production-date is required")?,
            reporting_interval_minutes: args.reporting_interval_minutes,
        })),
        (None, None) => anyhow::bail!("give --meter (a meter in stock) or --serial (a new one)"),
    }
}

/// `meters replace`: replaces a meter at its supply point; the replacement as JSON.
pub async fn replace_meter(settings: &Settings, args: &ReplaceArgs) -> Result<String> {
    let who = cli_actor(settings, &args.reason)?;
    let store = open_migrated(settings).await?;
    let outcome = async {
        let old = meter_named(&store, &args.old_meter).await?;
        let installation = store
            .open_installation(old.id)
            .await
            .context("reading the meter's installation")?
            .with_context(|| {
                format!(
                    "meter {} is not installed at a supply point: there is nothing to replace",
                    args.old_meter
                )
            })?;
        let newcomer = newcomer(&store, args).await?;
        let ask = Ask {
            at: args.at.unwrap_or(who.at),
            final_register: args.final_register,
            opening_register: args.opening_register,
        };
        let replaced = replace::replace(
            &store,
            &announcer(&store),
            &old,
            &installation,
            newcomer,
            &ask,
            who,
        )
        .await
        .map_err(refusal)?;
        Ok::<_, anyhow::Error>(serde_json::to_string(
            &crate::api::views::ReplacedView::new(replaced),
        )?)
    }
    .await;
    store.close().await;
    outcome
}
