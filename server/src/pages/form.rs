//! What the forms that write a meter (install, change) share: their errors by field, the
//! alert above the form, and a field with its label, hint and error, tied together for
//! screen readers.

use std::collections::BTreeMap;

use maud::{Markup, html};

use crate::registry::record::FieldError;

/// What went wrong, by field (the API's names), and what belongs to no field.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Errors {
    /// Messages beside their fields.
    pub fields: BTreeMap<String, String>,
    /// A message for the whole form.
    pub general: Option<String>,
}

impl Errors {
    /// One field's error.
    pub(crate) fn field(field: &str, message: impl Into<String>) -> Errors {
        let mut e = Errors::default();
        e.fields.insert(field.to_owned(), message.into());
        e
    }

    /// A validation's errors, those of one field joined.
    pub(crate) fn invalid(list: Vec<FieldError>) -> Errors {
        let mut out = Errors::default();
        for fe in list {
            out.fields
                .entry(fe.field.to_owned())
                .and_modify(|m| {
                    m.push_str("; ");
                    m.push_str(&fe.message);
                })
                .or_insert(fe.message);
        }
        out
    }
}

/// The alert above a refused form (`id` is the element's id): the message that belongs to no
/// field, or how many fields need correcting; `undone` says what did not happen ("The meter
/// was not installed").
pub(crate) fn alert(errors: &Errors, id: &str, undone: &str) -> Markup {
    let n = errors.fields.len();
    html! {
        @if let Some(g) = &errors.general {
            p.error role="alert" id=(id) { (g) }
        }
        @if n > 0 {
            p.error role="alert" id=(id) {
                (undone) ": " (n) @if n == 1 { " field needs" } @else { " fields need" }
                " correcting (marked below)."
            }
        }
    }
}

/// One field of a form.
pub(crate) struct Field<'a> {
    /// The API's name, also the element's id.
    pub name: &'a str,
    /// The label.
    pub label: &'a str,
    /// A hint below the label (empty: none).
    pub hint: &'a str,
    /// The value shown.
    pub value: &'a str,
    /// A choice among these instead of a text box.
    pub options: Option<&'a [&'a str]>,
    /// A date picker.
    pub date: bool,
    /// Digits: a numeric keyboard on phones.
    pub numeric: bool,
    /// Required.
    pub required: bool,
    /// The id of a `datalist` of suggestions.
    pub list: Option<&'a str>,
}

/// The field with its label, hint and error (if any), the error and hint named by
/// `aria-describedby` so that a screen reader says them with the field.
pub(crate) fn field(f: &Field<'_>, error: Option<&String>) -> Markup {
    let name = f.name;
    let described = match (f.hint.is_empty(), error.is_some()) {
        (true, false) => None,
        (false, false) => Some(format!("{name}-hint")),
        (true, true) => Some(format!("{name}-error")),
        (false, true) => Some(format!("{name}-hint {name}-error")),
    };
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (f.label) }
            @if !f.hint.is_empty() { span.hint id={ (name) "-hint" } { (f.hint) } }
            @if let Some(options) = f.options {
                select id=(name) name=(name) aria-invalid=[error.map(|_| "true")] aria-describedby=[described.as_deref()] {
                    @for o in options { option value=(o) selected[f.value == *o] { (o) } }
                }
            } @else {
                input id=(name) name=(name) type=(if f.date { "date" } else { "text" })
                    value=(f.value)
                    list=[f.list]
                    inputmode=[f.numeric.then_some("numeric")]
                    required[f.required]
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[described.as_deref()];
            }
            @if let Some(e) = error {
                p.field-error id={ (name) "-error" } { "Error: " (e) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fields_errors_are_joined_and_counted_in_the_alert() {
        let e = Errors::invalid(vec![
            FieldError {
                field: "serial",
                message: "too short".into(),
            },
            FieldError {
                field: "serial",
                message: "bad check digit".into(),
            },
        ]);
        assert_eq!(e.fields["serial"], "too short; bad check digit");
        let alert = alert(&e, "x-error", "Nothing happened").into_string();
        assert!(alert.contains("Nothing happened: 1 field needs"), "{alert}");
    }

    #[test]
    fn a_field_names_its_hint_and_error_for_screen_readers() {
        let f = Field {
            name: "serial",
            label: "Serial",
            hint: "14 digits",
            value: "1<2",
            options: None,
            date: false,
            numeric: true,
            required: true,
            list: None,
        };
        let html = field(&f, Some(&"too short".to_owned())).into_string();
        assert!(
            html.contains(r#"aria-describedby="serial-hint serial-error""#),
            "{html}"
        );
        assert!(html.contains(r#"value="1&lt;2""#), "escaped: {html}");
        assert!(html.contains(r#"inputmode="numeric""#));
        let plain = field(&Field { hint: "", ..f }, None).into_string();
        assert!(!plain.contains("aria-describedby"), "{plain}");
    }
}
