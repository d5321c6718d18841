//! ChirpStack's topic templates: the subscription filter built from `event_topic`, and the
//! parts (application, device, event) read back from a topic.
//!
//! Integrators customise the templates, so nothing assumes the default layout; a template is a
//! list of `/`-separated segments, each either literal text or exactly one `{{variable}}`.

use anyhow::{Result, bail};

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    ApplicationId,
    DevEui,
    /// `{{event}}` or `{{command}}`.
    Kind,
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// What a topic names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicParts<'a> {
    /// The application id, when the template has one.
    pub application_id: Option<&'a str>,
    /// The device's EUI as written in the topic.
    pub dev_eui: &'a str,
    /// The event (or command) type.
    pub kind: &'a str,
}

impl Template {
    /// Parses a template such as `application/{{application_id}}/device/{{dev_eui}}/event/{{event}}`.
    pub fn parse(template: &str) -> Result<Template> {
        let mut segments = Vec::new();
        for part in template.split('/') {
            let segment = match part {
                "{{application_id}}" => Segment::ApplicationId,
                "{{dev_eui}}" => Segment::DevEui,
                "{{event}}" | "{{command}}" => Segment::Kind,
                p if p.contains("{{") || p.contains('+') || p.contains('#') => {
                    bail!(
                        "topic template segment {p:?} must be literal text or one whole {{{{variable}}}}"
                    )
                }
                p => Segment::Literal(p.to_owned()),
            };
            segments.push(segment);
        }
        for needed in [Segment::DevEui, Segment::Kind] {
            if !segments.contains(&needed) {
                bail!("topic template {template:?} needs {{{{dev_eui}}}} and {{{{event}}}}");
            }
        }
        Ok(Template { segments })
    }

    /// The MQTT filter for every device of `application` (all applications when `None`), every
    /// event type; prefixed with `$share/GROUP/` for a shared subscription.
    pub fn filter(&self, application: Option<&str>, shared_group: Option<&str>) -> String {
        let body: Vec<&str> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::ApplicationId => application.unwrap_or("+"),
                Segment::DevEui | Segment::Kind => "+",
            })
            .collect();
        match shared_group {
            Some(group) => format!("$share/{group}/{}", body.join("/")),
            None => body.join("/"),
        }
    }

    /// Renders the topic for one device and kind (e.g. `down` for commands).
    pub fn render(&self, application_id: &str, dev_eui: &str, kind: &str) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::ApplicationId => application_id,
                Segment::DevEui => dev_eui,
                Segment::Kind => kind,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Reads the parts of a topic, or `None` when it does not fit the template.
    pub fn parse_topic<'a>(&self, topic: &'a str) -> Option<TopicParts<'a>> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let (mut application_id, mut dev_eui, mut kind) = (None, None, None);
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(l) if l != part => return None,
                Segment::Literal(_) => {}
                Segment::ApplicationId => application_id = Some(part),
                Segment::DevEui => dev_eui = Some(part),
                Segment::Kind => kind = Some(part),
            }
        }
        Some(TopicParts {
            application_id,
            dev_eui: dev_eui?,
            kind: kind?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "application/{{application_id}}/device/{{dev_eui}}/event/{{event}}";

    #[test]
    fn the_default_template_gives_chirpstacks_filter_and_parts() {
        let t = Template::parse(DEFAULT).expect("valid");
        assert_eq!(t.filter(None, None), "application/+/device/+/event/+");
        assert_eq!(
            t.filter(Some("app-1"), Some("meterhub")),
            "$share/meterhub/application/app-1/device/+/event/+"
        );
        let parts = t
            .parse_topic("application/a1/device/0102030405060708/event/up")
            .expect("fits");
        assert_eq!(
            parts,
            TopicParts {
                application_id: Some("a1"),
                dev_eui: "0102030405060708",
                kind: "up"
            }
        );
        assert!(t.parse_topic("application/a1/device/x/event").is_none());
        assert!(t.parse_topic("gateway/a1/device/x/event/up").is_none());
    }

    #[test]
    fn a_custom_template_without_application_works() {
        let t = Template::parse("meters/{{dev_eui}}/{{event}}").expect("valid");
        assert_eq!(t.filter(Some("ignored"), None), "meters/+/+");
        assert_eq!(t.render("a", "d", "down"), "meters/d/down");
        assert_eq!(t.parse_topic("meters/d/up").map(|p| p.kind), Some("up"));
    }

    #[test]
    fn templates_that_cannot_be_matched_are_refused() {
        assert!(Template::parse("application/{{application_id}}/event/{{event}}").is_err());
        assert!(Template::parse("app-{{application_id}}/{{dev_eui}}/{{event}}").is_err());
        assert!(Template::parse("a/+/{{dev_eui}}/{{event}}").is_err());
    }
}
