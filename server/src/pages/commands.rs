//! Commands from the pages: the buttons a meter page offers (valve, self-test, read now, clock
//! resync), the confirmation each asks for, and a command's own page, which reloads itself
//! until the command reaches a final state.
//!
//! A command is queued through [`crate::api::send_command`], the code behind
//! `POST /api/v1/meters/{meter}/commands`, and gated by that route's role.

use maud::{Markup, html};
use warp::http::StatusCode;

use super::home::urlencode;
use super::{Ctx, html, layout, redirect};
use crate::api::error::Problem;
use crate::api::requests::CommandBody;
use crate::api::routes::{Op, role_of};
use crate::downlink::kind::awaits_answer;
use crate::storage::Error as StorageError;
use crate::storage::commands::CommandRow;
use crate::storage::meters::Meter;

/// Seconds between reloads of a command's page while it is on its way.
pub const REFRESH_SECS: u32 = 2;

/// A command a meter page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Open the gas valve.
    ValveOpen,
    /// Close the gas valve.
    ValveClose,
    /// Run self-tests.
    SelfTest,
    /// Send a reading now.
    ReadNow,
    /// Resynchronise the meter's clock (TS003 ForceDeviceResyncReq).
    ClockResync,
}

impl Action {
    /// Every action, in the order the buttons show.
    pub(crate) const ALL: [Action; 5] = [
        Action::ReadNow,
        Action::SelfTest,
        Action::ClockResync,
        Action::ValveOpen,
        Action::ValveClose,
    ];

    /// The command kind, as the API names it (and as the path and form carry it).
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Action::ValveOpen => "valveOpen",
            Action::ValveClose => "valveClose",
            Action::SelfTest => "selfTest",
            Action::ReadNow => "readNow",
            Action::ClockResync => "forceResync",
        }
    }

    /// The action a kind names, or a 404 naming what is offered.
    pub(crate) fn parse(kind: &str) -> Result<Action, Problem> {
        Action::ALL
            .into_iter()
            .find(|a| a.kind() == kind)
            .ok_or_else(|| {
                Problem::bad_field(
                    "kind",
                    format!(
                        "{kind:?} is not a command of these pages ({})",
                        Action::ALL.map(Action::kind).join(", ")
                    ),
                )
            })
    }

    /// The button's words.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Action::ValveOpen => "Open valve",
            Action::ValveClose => "Close valve",
            Action::SelfTest => "Run self-test",
            Action::ReadNow => "Read now",
            Action::ClockResync => "Resync clock",
        }
    }

    /// What the confirmation says will happen.
    fn explain(self) -> &'static str {
        match self {
            Action::ValveOpen => {
                "The meter opens its gas valve. It must acknowledge the command; gas flows again."
            }
            Action::ValveClose => {
                "The meter closes its gas valve and the supply stops. It must acknowledge the command."
            }
            Action::SelfTest => "The meter runs the tests chosen below and reports their results.",
            Action::ReadNow => "The meter sends a reading at once instead of at its next report.",
            Action::ClockResync => {
                "The meter asks the network for the time again and sets its clock by the answer."
            }
        }
    }

    /// Whether only a gas meter takes it (an electricity meter has no valve).
    pub(crate) fn gas_only(self) -> bool {
        matches!(self, Action::ValveOpen | Action::ValveClose)
    }
}

/// A command form as sent: the action and, for a self-test, the tests ticked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CommandForm {
    /// What to do.
    pub action: Action,
    /// The tests ticked, by name (self-test only).
    pub tests: Vec<String>,
}

impl CommandForm {
    /// Reads a posted form: `csrf` (checked before), `kind` once, `tests` any number of times
    /// and only for a self-test. Anything else is a 400 naming the field.
    pub(crate) fn parse(body: &[u8]) -> Result<CommandForm, Problem> {
        let mut kind = None;
        let mut tests = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "csrf" => {}
                "kind" if kind.is_none() => kind = Some(v.into_owned()),
                "kind" => return Err(Problem::bad_field("kind", "given more than once")),
                "tests" => tests.push(v.into_owned()),
                other => {
                    return Err(Problem::bad_field(
                        other.to_owned(),
                        "is not a field of this form",
                    ));
                }
            }
        }
        let action =
            Action::parse(&kind.ok_or_else(|| Problem::bad_field("kind", "is required"))?)?;
        if action != Action::SelfTest && !tests.is_empty() {
            return Err(Problem::bad_field(
                "tests",
                format!("{} takes no tests", action.kind()),
            ));
        }
        Ok(CommandForm { action, tests })
    }

    /// The API's request for it.
    pub(crate) fn body(&self) -> CommandBody {
        CommandBody {
            kind: self.action.kind().to_owned(),
            tests: (self.action == Action::SelfTest).then(|| self.tests.clone()),
            minutes: None,
            transmissions: None,
            period: None,
            expires_in_minutes: None,
        }
    }
}

/// The states a command passes through on its way, in order: queued by meterhub, handed to
/// ChirpStack, transmitted; then acknowledged by the meter when it is confirmed, and completed
/// by the answering uplink when it waits for one.
pub(crate) fn steps(kind: &str, confirmed: bool) -> Vec<&'static str> {
    let mut s = vec!["pending", "queued", "sent"];
    if confirmed {
        s.push("acknowledged");
    }
    if awaits_answer(kind) {
        s.push("completed");
    }
    s
}

/// Whether a command in `state` will change no more.
pub(crate) fn is_final(kind: &str, confirmed: bool, state: &str) -> bool {
    matches!(state, "nacked" | "completed" | "failed" | "expired")
        || steps(kind, confirmed).last() == Some(&state)
}

/// Whether a gas meter: its newest reading carries a gas volume.
async fn is_gas(ctx: &Ctx<'_>, m: &Meter) -> Result<bool, Problem> {
    Ok(ctx
        .state
        .store
        .latest_reading(m.id)
        .await?
        .is_some_and(|r| r.gas_volume_litres.is_some()))
}

/// Whether the caller may send commands (the API route's role).
pub(crate) fn may_send(ctx: &Ctx<'_>) -> bool {
    layout::may(ctx, role_of(Op::SendCommand))
}

fn allowed(ctx: &Ctx<'_>) -> Result<(), Problem> {
    layout::require(ctx, Op::SendCommand, "to send a command")
}

async fn offered(ctx: &Ctx<'_>, m: &Meter, action: Action) -> Result<(), Problem> {
    if action.gas_only() && !is_gas(ctx, m).await? {
        return Err(Problem::conflict(format!(
            "meter {} has reported no gas volume; only a gas meter has a valve",
            m.dev_eui
        )));
    }
    Ok(())
}

/// The meter page's section of command buttons, for a caller who may send them.
pub(crate) async fn buttons(ctx: &Ctx<'_>, m: &Meter) -> Result<Markup, Problem> {
    if !may_send(ctx) {
        return Ok(html! {});
    }
    let gas = is_gas(ctx, m).await?;
    Ok(html! {
        h2 #send { "Send a command" }
        ul.actions #command-buttons {
            @for a in Action::ALL {
                @if !a.gas_only() || gas {
                    li { a.button data-kind=(a.kind()) href={ "/meters/" (m.dev_eui) "/commands/" (a.kind()) } { (a.label()) "…" } }
                }
            }
        }
        @if !gas {
            p.note { "Valve commands are offered once the meter has reported a gas volume." }
        }
    })
}

/// GET /meters/{meter}/commands/{kind}: what will happen, and the button that queues it.
pub async fn confirm(
    ctx: &Ctx<'_>,
    meter: &str,
    kind: &str,
) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let action = Action::parse(kind)?;
    let m = super::meter::find(ctx, meter).await?;
    offered(ctx, &m, action).await?;
    Ok(html(
        StatusCode::OK,
        confirm_page(ctx, &m, action, &all_tests(), None),
    ))
}

fn all_tests() -> Vec<String> {
    firmware_protocol::Tests::ALL
        .names()
        .map(str::to_owned)
        .collect()
}

fn confirm_page(
    ctx: &Ctx<'_>,
    m: &Meter,
    action: Action,
    ticked: &[String],
    error: Option<&Problem>,
) -> Markup {
    let title = format!("{} on meter {}?", action.label(), m.dev_eui);
    let back = format!("/meters/{}", m.dev_eui);
    let error_on = |field: &str| error.filter(|p| p.field.as_deref() == Some(field));
    let general = error.filter(|p| p.field.as_deref().is_none_or(|f| f != "tests"));
    let body = html! {
        dl.facts {
            dt { "Meter" } dd { (m.dev_eui) " (serial " (m.serial) ")" }
            dt { "Command" } dd { code { (action.kind()) } }
        }
        p { (action.explain()) }
        p.note { "It goes out after the meter's next uplink; this page then follows it." }
        @if let Some(p) = general {
            p.error role="alert" #command-error { (p.detail) }
        }
        form.stack method="post" action={ "/meters/" (m.dev_eui) "/commands" } {
            input type="hidden" name="csrf" value=(ctx.csrf);
            input type="hidden" name="kind" value=(action.kind());
            @if action == Action::SelfTest {
                fieldset aria-describedby=[error_on("tests").map(|_| "tests-error")] {
                    legend { "Tests to run" }
                    @for t in firmware_protocol::Tests::ALL.names() {
                        label.check {
                            input type="checkbox" name="tests" value=(t) checked[ticked.iter().any(|x| x == t)];
                            (t)
                        }
                    }
                    @if let Some(p) = error_on("tests") {
                        p.field-error #tests-error { (p.detail) }
                    }
                }
            }
            div.actions {
                button type="submit" #confirm { (action.label()) }
                a href=(back) { "Cancel" }
            }
        }
    };
    layout::page(Some(ctx), &title, body)
}

/// POST /meters/{meter}/commands (its CSRF token already checked): queued, then the
/// command's page; a refused form is shown again with the API's error.
pub async fn send(
    ctx: &Ctx<'_>,
    meter: &str,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    allowed(ctx)?;
    let form = CommandForm::parse(body)?;
    let m = super::meter::find(ctx, meter).await?;
    offered(ctx, &m, form.action).await?;
    match crate::api::send_command(ctx.state, &m, &form.body(), &ctx.caller.name).await {
        Ok(row) => Ok(redirect(&format!("/commands/{}", row.id))),
        Err(p) if p.status_code() == StatusCode::BAD_REQUEST => Ok(html(
            p.status_code(),
            confirm_page(ctx, &m, form.action, &form.tests, Some(&p)),
        )),
        Err(p) => Err(p),
    }
}

/// GET /commands/{id}: a command's way to the meter, reloading itself until it ends.
pub async fn page(ctx: &Ctx<'_>, id: &str) -> Result<warp::reply::Response, Problem> {
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| Problem::bad_field("command", format!("{id:?} is not a command id")))?;
    let c = match ctx.state.store.command(id).await {
        Ok(c) => c,
        Err(StorageError::NotFound) => return Err(Problem::not_found(format!("no command {id}"))),
        Err(e) => return Err(e.into()),
    };
    let m = ctx.state.store.meter_by_id(c.meter_id).await?;
    let done = is_final(&c.kind, c.confirmed, &c.state);
    let title = format!("Command {}", c.kind);
    let body = html! {
        (progress(&c))
        dl.facts #command {
            dt { "Meter" } dd {
                @if let Some(m) = &m { a href={ "/meters/" (urlencode(&m.dev_eui)) } { (m.dev_eui) } }
                @else { (c.meter_id) }
            }
            dt { "State" } dd #command-state { (layout::state(&c.state)) }
            dt { "Requested" } dd { (layout::time(c.created_at)) " by " (c.requested_by) }
            dt { "Sent" } dd { (layout::maybe_time(c.sent_at)) }
            dt { "Completed" } dd { (layout::maybe_time(c.completed_at)) }
            dt { "Last change" } dd { (layout::time(c.updated_at)) }
            dt { "Attempts" } dd { (c.attempts) }
            @if !done { dt { "Dropped unless sent by" } dd { (layout::time(c.expires_at)) } }
            @if let Some(e) = &c.error { dt { "Error" } dd.error { (e) } }
            @if let Some(r) = &c.result { dt { "Result" } dd { code { (r) } } }
            dt { "Id" } dd { code { (c.id) } }
        }
        @if done {
            p #command-final { "This command is " (c.state) "; it will change no more." }
        } @else {
            p.note #command-waiting role="status" {
                "On its way: this page reloads every " (REFRESH_SECS) " seconds until the command ends."
            }
        }
    };
    let page = if done {
        layout::page(Some(ctx), &title, body)
    } else {
        layout::refreshing(Some(ctx), &title, REFRESH_SECS, body)
    };
    Ok(html(StatusCode::OK, page))
}

/// The steps of a command as a list: each done, current or to come, said in words.
fn progress(c: &CommandRow) -> Markup {
    let steps = steps(&c.kind, c.confirmed);
    let at = steps.iter().position(|s| *s == c.state);
    html! {
        ol.progress #progress aria-label="Progress" {
            @for (i, s) in steps.iter().enumerate() {
                @let (class, word) = match at {
                    Some(a) if i < a => ("done", "done"),
                    Some(a) if i == a => ("current", "now"),
                    // A state off the way (failed, expired, nacked): the steps reached are
                    // not known apart from the times, so none is claimed.
                    _ => ("todo", "not reached"),
                };
                li class=(class) data-state=(s) aria-current=[(class == "current").then_some("step")] {
                    (s) span.step-note { " (" (word) ")" }
                }
            }
            @if at.is_none() {
                li.current data-state=(c.state) aria-current="step" {
                    (c.state) span.step-note { " (now)" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_form_is_read_field_by_field() {
        let f = CommandForm::parse(b"csrf=x&kind=valveClose").expect("parsed");
        assert_eq!(f.action, Action::ValveClose);
        assert_eq!(f.body().kind, "valveClose");
        assert_eq!(f.body().tests, None);
        let f =
            CommandForm::parse(b"csrf=x&kind=selfTest&tests=battery&tests=radio").expect("parsed");
        assert_eq!(f.body().tests, Some(vec!["battery".into(), "radio".into()]));
        // A self-test with nothing ticked goes to the API, which names `tests`.
        let f = CommandForm::parse(b"csrf=x&kind=selfTest").expect("parsed");
        assert_eq!(f.body().tests, Some(vec![]));
        assert_eq!(
            CommandForm::parse(b"csrf=x&kind=forceResync").map(|f| f.action),
            Ok(Action::ClockResync)
        );
        for (bad, field) in [
            (&b"csrf=x"[..], "kind"),
            (b"kind=disconnect", "kind"),
            (b"kind=readNow&kind=valveOpen", "kind"),
            (b"kind=readNow&tests=battery", "tests"),
            (b"kind=readNow&minutes=15", "minutes"),
        ] {
            let p = CommandForm::parse(bad).expect_err("refused");
            assert_eq!(p.status, 400, "{p:?}");
            assert_eq!(p.field.as_deref(), Some(field), "{p:?}");
        }
    }

    #[test]
    fn every_action_is_an_api_command_kind() {
        for a in Action::ALL {
            assert!(
                crate::api::requests::COMMAND_KINDS
                    .iter()
                    .any(|(k, _, _)| *k == a.kind()),
                "{a:?}"
            );
            assert_eq!(Action::parse(a.kind()), Ok(a));
        }
        assert!(Action::ValveOpen.gas_only() && !Action::ReadNow.gas_only());
    }

    #[test]
    fn a_command_ends_where_its_way_ends() {
        assert_eq!(
            steps("valveClose", true),
            ["pending", "queued", "sent", "acknowledged"]
        );
        assert_eq!(
            steps("readNow", false),
            ["pending", "queued", "sent", "completed"]
        );
        assert_eq!(
            steps("setReportingInterval", true),
            ["pending", "queued", "sent", "acknowledged", "completed"]
        );
        assert!(is_final("valveClose", true, "acknowledged"));
        assert!(!is_final("valveClose", true, "sent"));
        assert!(!is_final("setReportingInterval", true, "acknowledged"));
        assert!(!is_final("readNow", false, "queued"));
        for end in ["nacked", "completed", "failed", "expired"] {
            assert!(is_final("readNow", false, end), "{end}");
        }
    }

    #[test]
    fn the_pages_send_commands_with_the_apis_role() {
        assert_eq!(
            role_of(Op::SendCommand),
            Some(crate::api::auth::Role::Operator)
        );
    }
}
