//! What the stream says: server-sent events, and the notifications they carry.

use std::io::Read;

use base64::Engine;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::remote::api::read_bounded;

/// One server-sent event: its type (`message` unless named) and its data lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// Assembles events from the lines of a `text/event-stream` (the WHATWG rules: `field:
/// value` lines, a blank line ends an event, `:` starts a comment).
#[derive(Debug, Default)]
pub(crate) struct EventParser {
    name: Option<String>,
    data: Vec<String>,
}

impl EventParser {
    /// Takes one line (without its line ending); an event when the line ends one.
    pub(crate) fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let name = self.name.take().unwrap_or_else(|| "message".into());
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(Event { name, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
        None
    }
}

/// A control message of the streaming service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Updates stop for a while: poll meanwhile.
    Paused,
    /// Updates come again (`STREAMING_RESUMED`, also spelled `STREAMING_ENABLED`).
    Resumed,
    /// Streaming is off for this environment: poll from now on.
    Disabled,
    /// Connect again (a new token).
    Reset,
}

/// A notification, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Notification {
    /// Flags changed (`d` holds the new definition when `pcn` is the previous version).
    SplitUpdate(Update),
    /// A flag was killed.
    SplitKill {
        change_number: i64,
        name: String,
        default_treatment: String,
    },
    /// A segment changed.
    SegmentUpdate { change_number: i64, name: String },
    /// Rule-based segments changed.
    RbSegmentUpdate(Update),
    /// Control of the stream itself.
    Control {
        channel: String,
        timestamp: i64,
        control: Control,
    },
    /// How many publishers a control channel has.
    Occupancy {
        channel: String,
        timestamp: i64,
        publishers: u64,
    },
    /// A type this SDK does not act on (client-side memberships and the like).
    Other(String),
}

/// A definition update: the new change number, and optionally the definition inline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Update {
    pub(crate) change_number: i64,
    /// The change number the inline definition applies on top of.
    pub(crate) previous: Option<i64>,
    /// Compression of `data`: 0 none, 1 gzip, 2 zlib.
    pub(crate) compression: Option<u8>,
    /// The definition, base64-encoded (and compressed as `compression` says).
    pub(crate) data: Option<String>,
}

impl Update {
    /// The inline definition, decoded: `None` when there is none; an error naming the
    /// problem when it cannot be decoded (then the update is fetched instead).
    pub(crate) fn definition<T: DeserializeOwned>(&self) -> Result<Option<T>, String> {
        let Some(data) = &self.data else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("the payload is not base64: {e}"))?;
        let json = match self.compression.unwrap_or(0) {
            0 => bytes,
            1 => inflate(flate2::read::GzDecoder::new(bytes.as_slice()), "gzip")?,
            2 => inflate(flate2::read::ZlibDecoder::new(bytes.as_slice()), "zlib")?,
            c => return Err(format!("unknown compression {c}")),
        };
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| format!("the payload is not a definition: {e}"))
    }
}

/// Largest inline definition accepted, decompressed.
const MAX_INLINE_BYTES: u64 = 16 * 1024 * 1024;

fn inflate(mut reader: impl Read, what: &str) -> Result<Vec<u8>, String> {
    read_bounded(&mut reader, MAX_INLINE_BYTES, None)
        .map_err(|e| format!("the {what} payload does not decompress: {e}"))?
        .ok_or_else(|| format!("the {what} payload is larger than {MAX_INLINE_BYTES} bytes"))
}

/// An `error` event of the streaming service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamError {
    /// The service's error code (Ably's 40140 to 40149: the token; other 4xxxx: final).
    pub(crate) code: Option<i64>,
    pub(crate) message: String,
}

impl StreamError {
    /// A token problem: authenticate again and reconnect.
    pub(crate) fn is_token(&self) -> bool {
        self.code.is_some_and(|c| (40140..=40149).contains(&c))
    }

    /// Final: stop streaming, poll (other 4xxxx codes). Anything else is retried.
    pub(crate) fn is_final(&self) -> bool {
        !self.is_token() && self.code.is_some_and(|c| (40000..=49999).contains(&c))
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    data: String,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "changeNumber", default)]
    change_number: i64,
    #[serde(default)]
    pcn: Option<i64>,
    #[serde(default)]
    c: Option<u8>,
    #[serde(default)]
    d: Option<String>,
    #[serde(rename = "splitName", default)]
    split_name: String,
    #[serde(rename = "defaultTreatment", default)]
    default_treatment: String,
    #[serde(rename = "segmentName", default)]
    segment_name: String,
    #[serde(rename = "controlType", default)]
    control_type: String,
    #[serde(default)]
    metrics: Option<Metrics>,
}

#[derive(Deserialize)]
struct Metrics {
    #[serde(default)]
    publishers: u64,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// What one event means: a notification, or an error of the service. `Err` names what
/// could not be parsed.
pub(crate) fn parse(event: &Event) -> Result<Result<Notification, StreamError>, String> {
    if event.name == "error" {
        let e: ErrorData = serde_json::from_str(&event.data).unwrap_or(ErrorData {
            code: None,
            message: Some(event.data.clone()),
        });
        return Ok(Err(StreamError {
            code: e.code,
            message: e.message.unwrap_or_default(),
        }));
    }
    let envelope: Envelope = serde_json::from_str(&event.data)
        .map_err(|e| format!("not a streaming message ({e}): {}", event.data))?;
    let inner: Inner = serde_json::from_str(&envelope.data)
        .map_err(|e| format!("not a notification ({e}): {}", envelope.data))?;
    if envelope.name.as_deref() == Some("[meta]occupancy") {
        return Ok(Ok(Notification::Occupancy {
            channel: envelope.channel,
            timestamp: envelope.timestamp,
            publishers: inner.metrics.map_or(0, |m| m.publishers),
        }));
    }
    let update = || Update {
        change_number: inner.change_number,
        previous: inner.pcn,
        compression: inner.c,
        data: inner.d.clone(),
    };
    Ok(Ok(match inner.kind.as_str() {
        "SPLIT_UPDATE" => Notification::SplitUpdate(update()),
        "RB_SEGMENT_UPDATE" => Notification::RbSegmentUpdate(update()),
        "SPLIT_KILL" => Notification::SplitKill {
            change_number: inner.change_number,
            name: inner.split_name,
            default_treatment: inner.default_treatment,
        },
        "SEGMENT_UPDATE" => Notification::SegmentUpdate {
            change_number: inner.change_number,
            name: inner.segment_name,
        },
        "CONTROL" => {
            let control = match inner.control_type.as_str() {
                "STREAMING_PAUSED" => Control::Paused,
                "STREAMING_RESUMED" | "STREAMING_ENABLED" => Control::Resumed,
                "STREAMING_DISABLED" => Control::Disabled,
                "STREAMING_RESET" => Control::Reset,
                other => return Ok(Ok(Notification::Other(format!("CONTROL {other}")))),
            };
            Notification::Control {
                channel: envelope.channel,
                timestamp: envelope.timestamp,
                control,
            }
        }
        other => Notification::Other(other.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::FeatureFlag;
    use std::io::Write;

    fn events(text: &str) -> Vec<Event> {
        let mut p = EventParser::default();
        text.lines().filter_map(|l| p.line(l)).collect()
    }

    #[test]
    fn server_sent_events_are_assembled_by_the_rules() {
        let got = events(
            "id: 1\nevent: message\ndata: {\"a\":\ndata: 1}\n\n:keepalive\n\ndata:x\n\nevent: error\ndata: {}\n\n",
        );
        assert_eq!(
            got,
            [
                Event {
                    name: "message".into(),
                    data: "{\"a\":\n1}".into()
                },
                Event {
                    name: "message".into(),
                    data: "x".into()
                },
                Event {
                    name: "error".into(),
                    data: "{}".into()
                },
            ]
        );
    }

    fn message(channel: &str, name: Option<&str>, inner: serde_json::Value) -> Event {
        let mut env = serde_json::json!({"id": "x", "clientId": "y", "timestamp": 1_700_000_000_000i64,
            "encoding": "json", "channel": channel, "data": inner.to_string()});
        if let Some(n) = name {
            env["name"] = n.into();
        }
        Event {
            name: "message".into(),
            data: env.to_string(),
        }
    }

    #[test]
    fn every_notification_type_is_read() {
        let n = |e: Event| parse(&e).unwrap().unwrap();
        assert_eq!(
            n(message(
                "xx_splits",
                None,
                serde_json::json!({"type": "SPLIT_KILL", "changeNumber": 9, "splitName": "f", "defaultTreatment": "off"})
            )),
            Notification::SplitKill {
                change_number: 9,
                name: "f".into(),
                default_treatment: "off".into()
            }
        );
        assert_eq!(
            n(message(
                "xx_segments",
                None,
                serde_json::json!({"type": "SEGMENT_UPDATE", "changeNumber": 3, "segmentName": "beta"})
            )),
            Notification::SegmentUpdate {
                change_number: 3,
                name: "beta".into()
            }
        );
        assert!(matches!(
            n(message(
                "xx_splits",
                None,
                serde_json::json!({"type": "SPLIT_UPDATE", "changeNumber": 5, "pcn": 4, "c": 0, "d": "e30="})
            )),
            Notification::SplitUpdate(Update {
                change_number: 5,
                previous: Some(4),
                compression: Some(0),
                ..
            })
        ));
        assert!(matches!(
            n(message(
                "xx_splits",
                None,
                serde_json::json!({"type": "RB_SEGMENT_UPDATE", "changeNumber": 6})
            )),
            Notification::RbSegmentUpdate(Update {
                change_number: 6,
                previous: None,
                ..
            })
        ));
        for (spelling, control) in [
            ("STREAMING_PAUSED", Control::Paused),
            ("STREAMING_RESUMED", Control::Resumed),
            ("STREAMING_ENABLED", Control::Resumed),
            ("STREAMING_DISABLED", Control::Disabled),
            ("STREAMING_RESET", Control::Reset),
        ] {
            assert_eq!(
                n(message(
                    "control_pri",
                    None,
                    serde_json::json!({"type": "CONTROL", "controlType": spelling})
                )),
                Notification::Control {
                    channel: "control_pri".into(),
                    timestamp: 1_700_000_000_000,
                    control
                }
            );
        }
        assert_eq!(
            n(message(
                "[?occupancy=metrics.publishers]control_sec",
                Some("[meta]occupancy"),
                serde_json::json!({"metrics": {"publishers": 2}})
            )),
            Notification::Occupancy {
                channel: "[?occupancy=metrics.publishers]control_sec".into(),
                timestamp: 1_700_000_000_000,
                publishers: 2
            }
        );
        assert_eq!(
            n(message(
                "c",
                None,
                serde_json::json!({"type": "MEMBERSHIPS_MS_UPDATE"})
            )),
            Notification::Other("MEMBERSHIPS_MS_UPDATE".into())
        );
        assert!(
            parse(&Event {
                name: "message".into(),
                data: "nope".into()
            })
            .is_err()
        );
    }

    #[test]
    fn errors_tell_token_problems_from_final_ones() {
        let e = |code: i64| {
            parse(&Event {
                name: "error".into(),
                data: format!("{{\"message\":\"m\",\"code\":{code},\"statusCode\":401}}"),
            })
            .unwrap()
            .unwrap_err()
        };
        assert!(e(40142).is_token() && !e(40142).is_final());
        assert!(e(40000).is_final() && !e(40000).is_token());
        assert!(!e(50000).is_final() && !e(50000).is_token());
        assert_eq!(e(40142).message, "m");
    }

    #[test]
    fn inline_definitions_decode_in_every_encoding() {
        let flag = serde_json::json!({"name": "f", "changeNumber": 5, "defaultTreatment": "off"})
            .to_string();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(flag.as_bytes()).unwrap();
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(flag.as_bytes()).unwrap();
        for (c, data) in [
            (0, b64(flag.as_bytes())),
            (1, b64(&gz.finish().unwrap())),
            (2, b64(&zl.finish().unwrap())),
        ] {
            let u = Update {
                change_number: 5,
                previous: Some(4),
                compression: Some(c),
                data: Some(data),
            };
            let f: FeatureFlag = u.definition().unwrap().unwrap();
            assert_eq!(
                (f.name.as_str(), f.change_number),
                ("f", Some(5)),
                "c = {c}"
            );
        }
        let bad = Update {
            change_number: 5,
            previous: None,
            compression: Some(1),
            data: Some(b64(b"not gzip")),
        };
        assert!(
            bad.definition::<FeatureFlag>()
                .unwrap_err()
                .contains("gzip")
        );
        let none = Update {
            change_number: 5,
            previous: None,
            compression: None,
            data: None,
        };
        assert_eq!(none.definition::<FeatureFlag>().unwrap(), None);
    }

    #[test]
    fn an_inline_definition_is_decompressed_only_up_to_its_bound() {
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        zl.write_all(&vec![b' '; MAX_INLINE_BYTES as usize + 1])
            .unwrap();
        let u = Update {
            change_number: 5,
            previous: Some(4),
            compression: Some(2),
            data: Some(base64::engine::general_purpose::STANDARD.encode(zl.finish().unwrap())),
        };
        let e = u.definition::<FeatureFlag>().unwrap_err();
        assert_eq!(e, "the zlib payload is larger than 16777216 bytes");
    }
}
