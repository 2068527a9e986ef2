//! Streaming: Split's push protocol. A thread authenticates, holds a server-sent event
//! stream open, and acts on what it says: a kill at once, an update inline when it applies
//! to the local version (else a fetch), a segment update as a fetch; while the stream is up
//! and has publishers, polling stops; while it is down, paused or without publishers, the
//! polling threads poll. It follows what Split's official SDKs do (javascript-commons
//! `sync/streaming`, python-client `splitio/push`):
//!
//! - `GET {auth}/v2/auth?s=1.3` with the SDK key: `pushEnabled` false means polling only; the
//!   token is a JWT whose `x-ably-capability` claim lists the channels; it is replaced 10
//!   minutes before it expires;
//! - `GET {streaming}/sse?channels=...&accessToken=...&v=1.1&heartbeats=true`, the control
//!   channels prefixed with `[?occupancy=metrics.publishers]`; a stream silent for longer
//!   than the keep-alive is taken for dead; reconnection backs off from 250 ms to 60 s;
//! - an `error` event with Ably code 40140 to 40149 (the token) authenticates again, another
//!   4xxxx stops streaming for good (polling goes on), anything else reconnects;
//! - `CONTROL`: `STREAMING_PAUSED` polls, `STREAMING_RESUMED` (also spelled
//!   `STREAMING_ENABLED`) stops polling, `STREAMING_DISABLED` stops streaming for good,
//!   `STREAMING_RESET` reconnects; occupancy of `control_pri` and `control_sec`: no
//!   publishers on both means polling until they return;
//! - a notification whose change number is not newer than the local one is ignored.

mod notification;
mod token;

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded, select};

use crate::backoff::Backoff;
use crate::definitions::{ChangesSection, FeatureFlag, RuleBasedSegment, SplitChanges};
use crate::storage::{Snapshot, Store};
use crate::text::duration;

use super::api::{FetchError, SdkApi};
use super::config::StreamingUrls;
use super::fetcher::drop_flags_outside;
use super::synchronizer::{pause, stopped};
use super::wake::{FlagsWanted, SegmentsWanted, Wake};
use notification::{Control, EventParser, Notification, StreamError, Update};
use token::{AuthResponse, Token, percent_encode};

/// Name of the thread that holds the stream.
pub(crate) const PUSH_THREAD: &str = "splitkit-push";

/// Reconnection backoff: from 250 ms (a dropped stream is back within a quarter second)
/// up to 60 s.
const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_CAP: Duration = Duration::from_secs(60);

/// Whether streaming is up: connected, resumed and with publishers. Shared with the polling
/// threads, which poll only while it is not.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    up: AtomicBool,
}

impl StreamState {
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// What the push thread needs.
pub(crate) struct Push {
    pub(crate) api: Arc<SdkApi>,
    pub(crate) urls: StreamingUrls,
    pub(crate) store: Arc<Store>,
    /// The flag sets filter (sanitized; empty for every flag).
    pub(crate) sets: Vec<String>,
    pub(crate) state: Arc<StreamState>,
    pub(crate) flags_wake: Arc<Wake<FlagsWanted>>,
    pub(crate) segments_wake: Arc<Wake<SegmentsWanted>>,
    pub(crate) stop: Receiver<()>,
    pub(crate) keepalive: Duration,
}

/// Why a stream ended.
enum Ended {
    /// The client is stopping.
    Stop,
    /// Authenticate again and reconnect at once (the token is due, or a reset).
    Renew,
    /// Reconnect after the backoff, or after the delay the server asked for (`Retry-After`
    /// of a refused request): `why` is logged.
    Retry(String, Option<Duration>),
    /// Streaming is over for good: poll.
    Final(String),
}

/// How the stream's control channels stand.
#[derive(Debug)]
struct Keeper {
    /// `(channel suffix, has publishers, latest occupancy time, latest control time)`.
    channels: [(&'static str, bool, i64, i64); 2],
    resumed: bool,
}

impl Default for Keeper {
    fn default() -> Self {
        Keeper {
            channels: [("control_pri", true, -1, -1), ("control_sec", true, -1, -1)],
            resumed: true,
        }
    }
}

impl Keeper {
    fn up(&self) -> bool {
        self.resumed && self.channels.iter().any(|c| c.1)
    }

    fn occupancy(&mut self, channel: &str, timestamp: i64, publishers: u64) {
        if let Some(c) = self.channels.iter_mut().find(|c| channel.ends_with(c.0))
            && timestamp > c.2
        {
            c.2 = timestamp;
            c.1 = publishers > 0;
        }
    }

    /// A pause or resume (newer than the last control message of its channel).
    fn control(&mut self, channel: &str, timestamp: i64, resumed: bool) {
        match self.channels.iter_mut().find(|c| channel.ends_with(c.0)) {
            Some(c) if timestamp > c.3 => {
                c.3 = timestamp;
                self.resumed = resumed;
            }
            Some(_) => {}
            None => self.resumed = resumed,
        }
    }
}

impl Push {
    /// The thread: authenticate, stream, and again, until stopped or streaming is over.
    pub(crate) fn run(self) {
        let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_CAP);
        loop {
            if stopped(&self.stop) {
                return;
            }
            let ended = match self.authenticate() {
                Ok(Some((token, delay))) => {
                    if !delay.is_zero() {
                        log::info!(
                            "streaming: connecting in {} (the service asks so)",
                            duration(delay)
                        );
                        if pause(&self.stop, delay) {
                            return;
                        }
                    }
                    self.stream(&token, &mut backoff)
                }
                Ok(None) => Ended::Final("streaming is not enabled for this environment".into()),
                Err(e) => e,
            };
            match ended {
                Ended::Stop => return,
                Ended::Renew => {}
                Ended::Final(why) => {
                    log::warn!("streaming off: {why}; definitions are polled");
                    self.set_up(false);
                    return;
                }
                Ended::Retry(why, retry_after) => {
                    self.set_up(false);
                    let delay = backoff.next_delay(retry_after);
                    log::warn!(
                        "streaming: {why}; polling meanwhile, reconnecting in {}",
                        duration(delay)
                    );
                    if pause(&self.stop, delay) {
                        return;
                    }
                }
            }
        }
    }

    /// The token and how long to wait before connecting; `None` when streaming is off.
    fn authenticate(&self) -> Result<Option<(Token, Duration)>, Ended> {
        let body = self.api.fetch_auth(&self.urls.auth).map_err(|e| match e {
            FetchError::Unauthorized { .. } | FetchError::Rejected { .. } => {
                Ended::Final(format!("authentication refused: {e}"))
            }
            e => Ended::Retry(format!("cannot authenticate: {e}"), e.retry_after()),
        })?;
        let auth: AuthResponse = serde_json::from_str(&body).map_err(|e| {
            Ended::Retry(format!("the authentication answer is not JSON: {e}"), None)
        })?;
        if !auth.push_enabled || auth.token.is_empty() {
            return Ok(None);
        }
        let token = Token::decode(&auth.token)
            .map_err(|e| Ended::Retry(format!("the streaming token is unusable: {e}"), None))?;
        Ok(Some((
            token,
            Duration::from_secs(auth.conn_delay.unwrap_or(0)),
        )))
    }

    /// Opens the stream and acts on it until it ends.
    fn stream(&self, token: &Token, backoff: &mut Backoff) -> Ended {
        let base = self.urls.streaming.trim().trim_end_matches('/');
        let query = format!(
            "channels={}&accessToken={}&v=1.1&heartbeats=true",
            token.channels_param(),
            percent_encode(&token.raw)
        );
        let url = format!("{base}/sse?{query}");
        // Errors name the URL without the token.
        let shown = format!("{base}/sse");
        let body = match self.api.open_stream(&url, &shown) {
            Ok(body) => body,
            Err(e @ (FetchError::Unauthorized { .. } | FetchError::Rejected { .. })) => {
                return Ended::Retry(format!("the stream was refused: {e}"), None);
            }
            Err(e) => return Ended::Retry(format!("cannot connect: {e}"), e.retry_after()),
        };
        let lines = read_lines(body);
        log::info!(
            "streaming: connected to {shown}; {} until a token refresh",
            duration(token.refresh_after())
        );
        backoff.reset();
        let mut keeper = Keeper::default();
        self.set_up(keeper.up());
        let refresh_at = Instant::now() + token.refresh_after();
        let mut parser = EventParser::default();
        loop {
            let timeout = self
                .keepalive
                .min(refresh_at.saturating_duration_since(Instant::now()));
            let line = select! {
                recv(self.stop) -> _ => return Ended::Stop,
                recv(lines) -> line => line,
                default(timeout) => {
                    if Instant::now() >= refresh_at {
                        return Ended::Renew;
                    }
                    return Ended::Retry(format!("the stream was silent for {}", duration(self.keepalive)), None);
                }
            };
            let line = match line {
                Ok(Ok(line)) => line,
                Ok(Err(e)) => return Ended::Retry(format!("the stream broke: {e}"), None),
                Err(_) => return Ended::Retry("the stream was closed".into(), None),
            };
            let Some(event) = parser.line(&line) else {
                continue;
            };
            match notification::parse(&event) {
                Err(why) => log::warn!("streaming: ignoring a message: {why}"),
                Ok(Err(e)) => return stream_error(&e),
                Ok(Ok(n)) => {
                    if let Some(ended) = self.handle(n, &mut keeper) {
                        return ended;
                    }
                }
            }
        }
    }

    /// Acts on one notification; `Some` when the stream must end.
    fn handle(&self, n: Notification, keeper: &mut Keeper) -> Option<Ended> {
        match n {
            Notification::Occupancy {
                channel,
                timestamp,
                publishers,
            } => {
                keeper.occupancy(&channel, timestamp, publishers);
                self.set_up(keeper.up());
            }
            Notification::Control {
                channel,
                timestamp,
                control,
            } => match control {
                Control::Disabled => {
                    return Some(Ended::Final("the service disabled streaming".into()));
                }
                Control::Reset => return Some(Ended::Renew),
                Control::Paused | Control::Resumed => {
                    keeper.control(&channel, timestamp, control == Control::Resumed);
                    self.set_up(keeper.up());
                }
            },
            // Updates while paused or without publishers: polling catches up.
            _ if !keeper.up() => {}
            Notification::SplitKill {
                change_number,
                name,
                default_treatment,
            } => self.kill(&name, &default_treatment, change_number),
            Notification::SplitUpdate(u) => self.update(Section::Flags, &u),
            Notification::RbSegmentUpdate(u) => self.update(Section::RuleBased, &u),
            Notification::SegmentUpdate {
                change_number,
                name,
            } => {
                let newer = self
                    .store
                    .load()
                    .segment_change_number(&name)
                    .is_none_or(|cn| change_number > cn);
                if newer {
                    self.segments_wake.until(&name, change_number);
                }
            }
            Notification::Other(kind) => log::debug!("streaming: ignoring {kind}"),
        }
        None
    }

    /// Up or down: polling stops or starts, and either way one fetch catches up.
    fn set_up(&self, up: bool) {
        if self.state.up.swap(up, Ordering::AcqRel) != up {
            log::info!(
                "streaming {}",
                if up {
                    "up: polling stops"
                } else {
                    "down: definitions are polled"
                }
            );
            self.flags_wake.poll();
            self.segments_wake.all();
        }
    }

    /// A kill: applied at once if the flag is older, then fetched if newer than the local
    /// version.
    fn kill(&self, name: &str, default_treatment: &str, change_number: i64) {
        let killed = self.store.update_if(|s| {
            s.kill(name, default_treatment, change_number)
                .map(|next| (next, ()))
        });
        if killed.is_some() {
            log::info!("streaming: {name} killed (change number {change_number})");
        }
        if change_number > self.store.load().change_number() {
            self.flags_wake.until(Some(change_number), None);
        }
    }

    /// A flag or rule-based segment update: applied at once when it is inline and follows
    /// the local version, else fetched.
    fn update(&self, section: Section, u: &Update) {
        let local = section.version(&self.store.load());
        if u.change_number <= local {
            return;
        }
        if u.previous == Some(local) {
            match section.changes(u, local) {
                Ok(Some(mut changes)) => {
                    if !self.sets.is_empty() {
                        drop_flags_outside(&mut changes, &self.sets);
                    }
                    if self.apply(section, local, &changes) {
                        return;
                    }
                }
                Ok(None) => {}
                Err(why) => log::warn!(
                    "streaming: an inline {} update is unusable ({why}); fetching it",
                    section.noun()
                ),
            }
        }
        match section {
            Section::Flags => self.flags_wake.until(Some(u.change_number), None),
            Section::RuleBased => self.flags_wake.until(None, Some(u.change_number)),
        }
    }

    /// Applies an inline update if the local version of its `section` is still `local`;
    /// then fetches the segments it brings. False when it did not apply.
    fn apply(&self, section: Section, local: i64, changes: &SplitChanges) -> bool {
        let applied = self
            .store
            .update_if(|s| (section.version(s) == local).then(|| s.apply_changes(changes)));
        let Some(problems) = applied else {
            return false;
        };
        for p in &problems {
            log::warn!("streaming: {p}");
        }
        log::debug!("streaming: applied an inline update");
        // The segments thread fetches those the update brings, if any.
        self.segments_wake.missing();
        true
    }
}

/// The part of the definitions an update notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Flags,
    RuleBased,
}

impl Section {
    /// The local version of this part.
    fn version(self, s: &Snapshot) -> i64 {
        match self {
            Section::Flags => s.change_number(),
            Section::RuleBased => s.rule_based_change_number(),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Section::Flags => "flag",
            Section::RuleBased => "rule-based segment",
        }
    }

    /// The changes an inline update brings, from version `local` (`None` without a payload).
    fn changes(self, u: &Update, local: i64) -> Result<Option<SplitChanges>, String> {
        fn unchanged<T>() -> ChangesSection<T> {
            ChangesSection {
                d: Vec::new(),
                s: -1,
                t: -1,
            }
        }
        let (s, t) = (local, u.change_number);
        Ok(match self {
            Section::Flags => u.definition::<FeatureFlag>()?.map(|f| SplitChanges {
                flags: ChangesSection { d: vec![f], s, t },
                rule_based_segments: unchanged(),
            }),
            Section::RuleBased => u.definition::<RuleBasedSegment>()?.map(|r| SplitChanges {
                flags: unchanged(),
                rule_based_segments: ChangesSection { d: vec![r], s, t },
            }),
        })
    }
}

/// What an `error` event of the service means for the stream.
fn stream_error(e: &StreamError) -> Ended {
    if e.is_token() {
        log::info!(
            "streaming: the token is refused ({}); authenticating again",
            e.message
        );
        Ended::Renew
    } else if e.is_final() {
        Ended::Final(format!(
            "the service refused the stream: {} ({:?})",
            e.message, e.code
        ))
    } else {
        Ended::Retry(
            format!(
                "the service reported an error: {} ({:?})",
                e.message, e.code
            ),
            None,
        )
    }
}

/// Reads the stream's lines on a thread of its own (a blocking read cannot be interrupted):
/// the thread ends when the stream does, or at the next line once nobody listens.
fn read_lines(body: impl std::io::Read + Send + 'static) -> Receiver<std::io::Result<String>> {
    let (tx, rx) = bounded(256);
    let spawned = std::thread::Builder::new()
        .name("splitkit-push-reader".into())
        .spawn(move || {
            let mut reader = BufReader::new(body);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        let text = line.trim_end_matches(['\r', '\n']).to_string();
                        if tx.send(Ok(text)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("streaming: cannot start the reader thread: {e}");
    }
    rx
}
