//! What an A2A agent answers, built up result by result the way an A2A
//! server's task store builds a task (a2a-sdk's `TaskManager`): an artifact
//! update appends to (`append: true`) or replaces the artifact with its
//! `artifactId`, a status update replaces the status (the old status message
//! moving into the history), a message joins the history, a task event
//! replaces all of it. The answer's text is its artifacts' text (all of
//! them, in order), else the final status message's text, else the last
//! agent message of the history; a direct message answers with its own text.
//!
//! A whole answer is one result; a stream is many. Both go through
//! [`Answer::apply`], which hands out text only once it is certain to stay
//! where it is in the answer: an artifact's text while it is the last one
//! with text out (later artifacts wait until it is closed by `lastChunk`, or
//! the task ends), the status and history texts once the task ends. So the
//! text a stream hands out piece by piece is the text the same answer gives
//! whole — unless the agent takes back text that is out already (a
//! replacement that does not extend it, a task event that drops or reorders
//! it), which a chat completion stream cannot follow: that ends the answer
//! with `agent_answer_rewritten`.
//!
//! Memory: a whole answer is in memory already; a stream holds no artifact
//! text that is out, only a digest of it (to check a replacement against),
//! and at most `max_held` bytes of what waits.

use serde_json::Value;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

use crate::reply::LocalReply;

/// A task state, the same in both generations (`TASK_STATE_INPUT_REQUIRED`
/// and `input-required` alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Completed,
    Failed,
    Canceled,
    Rejected,
    InputRequired,
    AuthRequired,
    /// Submitted, working, unknown, or a state this filter does not know:
    /// not an end.
    Running,
}

impl State {
    pub fn parse(s: &str) -> State {
        let s = s.strip_prefix("TASK_STATE_").unwrap_or(s);
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "completed" => State::Completed,
            "failed" => State::Failed,
            "canceled" | "cancelled" => State::Canceled,
            "rejected" => State::Rejected,
            "input-required" => State::InputRequired,
            "auth-required" => State::AuthRequired,
            _ => State::Running,
        }
    }

    /// The OpenAI error for a task that ended without an answer, with the
    /// agent's own words.
    fn error(self, message: &str) -> Option<LocalReply> {
        let (status, kind, code, what) = match self {
            State::Completed | State::Running => return None,
            State::Failed => (
                502,
                "server_error",
                "agent_task_failed",
                "the agent failed the task",
            ),
            State::Canceled => (
                502,
                "server_error",
                "agent_task_canceled",
                "the agent canceled the task",
            ),
            State::Rejected => (
                422,
                "invalid_request_error",
                "agent_task_rejected",
                "the agent rejected the task",
            ),
            State::InputRequired => (
                422,
                "invalid_request_error",
                "agent_input_required",
                "the agent needs more input, which a chat completion cannot continue",
            ),
            State::AuthRequired => (
                401,
                "authentication_error",
                "agent_auth_required",
                "the agent requires authentication",
            ),
        };
        Some(LocalReply::error(
            status,
            kind,
            Some(code),
            None,
            &with_words(what, message),
        ))
    }
}

fn with_words(what: &str, message: &str) -> String {
    if message.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {message}")
    }
}

/// One A2A result (a task, a message, or a stream event), whatever its
/// generation: 1.0 wraps it (`{"task": …}`, `{"statusUpdate": …}`), 0.3
/// tags it (`"kind": "task"`, `"kind": "status-update"`).
#[derive(Debug, Clone, Copy)]
pub enum Event<'v> {
    Task(&'v Value),
    Message(&'v Value),
    Status(&'v Value),
    Artifact(&'v Value),
}

pub fn event(result: &Value) -> Option<Event<'_>> {
    let wrapped = |key: &str| result.get(key).filter(|v| v.is_object());
    if let Some(v) = wrapped("task") {
        return Some(Event::Task(v));
    }
    if let Some(v) = wrapped("message") {
        return Some(Event::Message(v));
    }
    if let Some(v) = wrapped("statusUpdate") {
        return Some(Event::Status(v));
    }
    if let Some(v) = wrapped("artifactUpdate") {
        return Some(Event::Artifact(v));
    }
    match result.get("kind").and_then(Value::as_str)? {
        "task" => Some(Event::Task(result)),
        "message" => Some(Event::Message(result)),
        "status-update" => Some(Event::Status(result)),
        "artifact-update" => Some(Event::Artifact(result)),
        _ => None,
    }
}

/// Text parts of a message or artifact, joined.
fn parts_text(holder: &Value) -> String {
    holder
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

fn is_agent(message: &Value) -> bool {
    matches!(
        message.get("role").and_then(Value::as_str),
        Some("agent" | "ROLE_AGENT")
    )
}

fn flag(holder: &Value, name: &str) -> bool {
    holder.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// A task's status: its state and message.
#[derive(Debug)]
struct Status {
    state: State,
    message: Option<StatusMessage>,
}

#[derive(Debug)]
struct StatusMessage {
    text: String,
    /// Only an agent's message can become the history's answer.
    from_agent: bool,
}

impl Status {
    /// The status of a task or status update; none is not an end.
    fn of(holder: &Value) -> Status {
        let status = holder.get("status");
        let state = status
            .and_then(|s| s.get("state"))
            .and_then(Value::as_str)
            .map_or(State::Running, State::parse);
        let message = status
            .and_then(|s| s.get("message"))
            .filter(|m| m.is_object())
            .map(|m| StatusMessage {
                text: parts_text(m),
                from_agent: is_agent(m),
            });
        Status { state, message }
    }

    fn text(&self) -> &str {
        self.message.as_ref().map_or("", |m| m.text.as_str())
    }
}

/// What one artifact holds: a digest of the text that is out, and the text
/// that waits.
#[derive(Debug)]
struct Artifact {
    id: String,
    /// Bytes of its text handed out, and their digest.
    out: usize,
    digest: SipHasher13,
    /// When its text first went out (among the answer's artifacts), to see
    /// a task event reordering what is out.
    first_out: Option<u32>,
    /// Its text not handed out yet.
    waiting: String,
    /// `lastChunk`: nothing more comes, so later artifacts may follow it out.
    closed: bool,
}

/// What an artifact costs beyond its text, counted in [`Answer::held`] so
/// that many tiny artifacts are bounded too.
const ARTIFACT_OVERHEAD: usize = 256;

impl Artifact {
    fn new(id: String) -> Artifact {
        Artifact {
            id,
            out: 0,
            digest: SipHasher13::new(),
            first_out: None,
            waiting: String::new(),
            closed: false,
        }
    }

    /// Replaces the text; false when that takes back text that is out.
    fn replace(&mut self, text: String) -> bool {
        if self.out == 0 {
            self.waiting = text;
            return true;
        }
        let Some(sent) = text.get(..self.out) else {
            return false;
        };
        let mut digest = SipHasher13::new();
        digest.write(sent.as_bytes());
        if digest.finish128() != self.digest.finish128() {
            return false;
        }
        self.waiting = text.get(self.out..).unwrap_or_default().to_string();
        true
    }

    fn send(&mut self, order: &mut u32, text: &mut String) {
        if self.waiting.is_empty() {
            return;
        }
        self.digest.write(self.waiting.as_bytes());
        self.out += self.waiting.len();
        if self.first_out.is_none() {
            self.first_out = Some(*order);
            *order += 1;
        }
        text.push_str(&self.waiting);
        self.waiting = String::new();
    }

    fn held(&self) -> usize {
        ARTIFACT_OVERHEAD + self.id.capacity() + self.waiting.capacity()
    }
}

/// How an answer stands after a result.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// More is to come.
    Open,
    /// The answer is complete (`finish_reason: stop`).
    Stop,
    /// The answer ended in an error (the agent's, or one of translation).
    Fail(LocalReply),
}

/// An A2A answer as it builds up.
#[derive(Debug)]
pub struct Answer {
    /// Bound on the bytes held between results.
    max_held: usize,
    /// A task, or an update of one, was seen: a message is no longer the
    /// direct answer but joins the history.
    task_seen: bool,
    artifacts: Vec<Artifact>,
    status: Status,
    /// Text of the last agent message in the task's history.
    history_text: Option<String>,
    /// Artifacts whose text went out so far.
    artifacts_out: u32,
    /// Bytes of artifact text out so far.
    text_out: usize,
    ended: bool,
}

impl Answer {
    /// An answer that may hold `max_held` bytes of text and artifacts
    /// between results (`usize::MAX` for a whole answer, in memory anyway).
    pub fn new(max_held: usize) -> Answer {
        Answer {
            max_held,
            task_seen: false,
            artifacts: Vec::new(),
            status: Status {
                state: State::Running,
                message: None,
            },
            history_text: None,
            artifacts_out: 0,
            text_out: 0,
            ended: false,
        }
    }

    /// Bytes held now: text that waits, artifact ids, the status and
    /// history texts.
    pub fn held(&self) -> usize {
        let artifacts: usize = self.artifacts.iter().map(Artifact::held).sum();
        let status = self
            .status
            .message
            .as_ref()
            .map_or(0, |m| m.text.capacity());
        let history = self.history_text.as_ref().map_or(0, String::capacity);
        artifacts + status + history
    }

    /// Applies one result; the text that can go out now is appended to
    /// `text`. Results after the end are ignored.
    pub fn apply(&mut self, event: Event<'_>, text: &mut String) -> Outcome {
        if self.ended {
            return Outcome::Open;
        }
        let outcome = self.take(event, text);
        if outcome == Outcome::Open && self.held() > self.max_held {
            return self.end(Outcome::Fail(LocalReply::error(
                502,
                "server_error",
                Some("agent_answer_too_large"),
                None,
                &format!(
                    "the agent's answer holds more than {} bytes that cannot go out yet",
                    self.max_held
                ),
            )));
        }
        outcome
    }

    /// The agent's answer is over (its stream closed, or its whole answer
    /// was applied): an answer that has not ended is incomplete.
    pub fn close(&mut self) -> Outcome {
        if self.ended {
            return Outcome::Open;
        }
        let words = with_words(
            "the agent's answer ended before its task did (a chat completion cannot wait for it)",
            self.status.text(),
        );
        self.end(Outcome::Fail(LocalReply::error(
            502,
            "server_error",
            Some("agent_task_incomplete"),
            None,
            &words,
        )))
    }

    fn take(&mut self, event: Event<'_>, text: &mut String) -> Outcome {
        match event {
            Event::Message(message) if !self.task_seen => {
                // A direct answer ends the exchange.
                text.push_str(&parts_text(message));
                return self.end(Outcome::Stop);
            }
            Event::Message(message) => {
                self.status_to_history();
                if is_agent(message) {
                    self.history_text = Some(parts_text(message));
                }
            }
            Event::Status(update) => {
                self.task_seen = true;
                self.status_to_history();
                self.status = Status::of(update);
            }
            Event::Artifact(update) => {
                self.task_seen = true;
                if !self.update_artifact(update) {
                    return self.rewritten();
                }
            }
            Event::Task(task) => {
                self.task_seen = true;
                if !self.replace_task(task) {
                    return self.rewritten();
                }
            }
        }
        if !self.consistent() {
            return self.rewritten();
        }
        match self.status.state {
            State::Running => {
                self.send(false, text);
                Outcome::Open
            }
            State::Completed => {
                self.send(true, text);
                if self.text_out == 0 {
                    let fallback = match self.status.text() {
                        "" => self.history_text.as_deref().unwrap_or_default(),
                        status => status,
                    };
                    text.push_str(fallback);
                }
                self.end(Outcome::Stop)
            }
            state => {
                let error = state.error(self.status.text());
                self.end(error.map_or(Outcome::Stop, Outcome::Fail))
            }
        }
    }

    /// The status message moves into the history (as a2a-sdk does when the
    /// status changes or a message joins the task).
    fn status_to_history(&mut self) {
        if let Some(message) = self.status.message.take() {
            if message.from_agent {
                self.history_text = Some(message.text);
            }
        }
    }

    /// An artifact update: false when it takes back text that is out.
    fn update_artifact(&mut self, update: &Value) -> bool {
        let Some(artifact) = update.get("artifact").filter(|a| a.is_object()) else {
            return true;
        };
        let id = artifact_id(artifact);
        let text = parts_text(artifact);
        let index = match self.artifacts.iter().position(|a| a.id == id) {
            Some(index) => index,
            None => {
                // `append` to an artifact never seen (a protocol slip)
                // starts it, rather than losing its text.
                self.artifacts.push(Artifact::new(id.to_string()));
                self.artifacts.len() - 1
            }
        };
        let Some(known) = self.artifacts.get_mut(index) else {
            return true;
        };
        known.closed = flag(update, "lastChunk");
        if flag(update, "append") {
            known.waiting.push_str(&text);
            true
        } else {
            known.replace(text)
        }
    }

    /// A task event: the whole task as it stands. False when it takes back
    /// text that is out.
    fn replace_task(&mut self, task: &Value) -> bool {
        let mut before = std::mem::take(&mut self.artifacts);
        for artifact in task
            .get("artifacts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = artifact_id(artifact);
            let mut known = match before.iter().position(|a| a.id == id) {
                Some(index) => before.remove(index),
                None => Artifact::new(id.to_string()),
            };
            if !known.replace(parts_text(artifact)) {
                return false;
            }
            self.artifacts.push(known);
        }
        if before.iter().any(|a| a.out > 0) {
            return false;
        }
        self.status = Status::of(task);
        self.history_text = task
            .get("history")
            .and_then(Value::as_array)
            .and_then(|h| h.iter().rev().find(|m| is_agent(m)))
            .map(parts_text);
        true
    }

    /// The text that is out is still where it was: the artifacts with text
    /// out keep their order, and none before the last of them has text
    /// waiting (it would belong before text that is out).
    fn consistent(&self) -> bool {
        let Some(last_out) = self.artifacts.iter().rposition(|a| a.out > 0) else {
            return true;
        };
        let before = self.artifacts.get(..last_out).unwrap_or_default();
        let mut previous = None;
        for order in self
            .artifacts
            .get(..=last_out)
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.first_out)
        {
            if previous.is_some_and(|p| order < p) {
                return false;
            }
            previous = Some(order);
        }
        before.iter().all(|a| a.waiting.is_empty())
    }

    /// Hands out the text that can go: from the last artifact with text
    /// out, up to the first one not closed (`all`: every one, the task is
    /// complete).
    fn send(&mut self, all: bool, text: &mut String) {
        let from = self.artifacts.iter().rposition(|a| a.out > 0).unwrap_or(0);
        let before = text.len();
        for artifact in self.artifacts.iter_mut().skip(from) {
            artifact.send(&mut self.artifacts_out, text);
            if !all && !artifact.closed {
                break;
            }
        }
        self.text_out += text.len() - before;
    }

    fn rewritten(&mut self) -> Outcome {
        self.end(Outcome::Fail(LocalReply::error(
            502,
            "server_error",
            Some("agent_answer_rewritten"),
            None,
            "the agent replaced answer text it had already streamed, which a chat completion \
             stream cannot take back (ask without stream for the final text)",
        )))
    }

    /// The answer is over: it holds nothing more.
    fn end(&mut self, outcome: Outcome) -> Outcome {
        self.ended = true;
        self.artifacts = Vec::new();
        self.status.message = None;
        self.history_text = None;
        outcome
    }
}

/// An artifact's id; artifacts without one are one artifact.
fn artifact_id(artifact: &Value) -> &str {
    artifact
        .get("artifactId")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Applies results one by one: the text out after each, and the
    /// outcome of the last (or of the close when every one left it open).
    fn run(results: &[Value]) -> (Vec<String>, Outcome) {
        let mut answer = Answer::new(usize::MAX);
        let mut texts = Vec::new();
        for result in results {
            let mut text = String::new();
            let outcome = answer.apply(event(result).unwrap(), &mut text);
            texts.push(text);
            if outcome != Outcome::Open {
                return (texts, outcome);
            }
        }
        (texts, answer.close())
    }

    fn code(outcome: &Outcome) -> String {
        match outcome {
            Outcome::Fail(reply) => serde_json::from_str::<Value>(&reply.body).unwrap()["error"]
                ["code"]
                .as_str()
                .unwrap()
                .to_string(),
            other => format!("{other:?}"),
        }
    }

    fn update(id: &str, text: &str, append: bool, last: bool) -> Value {
        json!({"artifactUpdate": {"artifact": {"artifactId": id, "parts": [{"text": text}]},
               "append": append, "lastChunk": last}})
    }

    fn status(state: &str) -> Value {
        json!({"statusUpdate": {"status": {"state": state}}})
    }

    #[test]
    fn states_in_both_spellings() {
        for (s, state) in [
            ("TASK_STATE_COMPLETED", State::Completed),
            ("completed", State::Completed),
            ("TASK_STATE_INPUT_REQUIRED", State::InputRequired),
            ("input-required", State::InputRequired),
            ("cancelled", State::Canceled),
            ("TASK_STATE_SUBMITTED", State::Running),
            ("working", State::Running),
            ("unknown", State::Running),
            ("TASK_STATE_UNSPECIFIED", State::Running),
        ] {
            assert_eq!(State::parse(s), state, "{s}");
        }
    }

    #[test]
    fn appends_and_replacements_by_artifact_id() {
        let (texts, outcome) = run(&[
            update("a", "draft", false, false),
            // A replacement that extends what is out: only the rest goes.
            update("a", "draft, final", false, false),
            update("a", " answer", true, true),
            status("TASK_STATE_COMPLETED"),
        ]);
        assert_eq!(texts, ["draft", ", final", " answer", ""]);
        assert_eq!(outcome, Outcome::Stop);
    }

    #[test]
    fn a_replacement_taking_back_text_ends_the_answer() {
        let (texts, outcome) = run(&[
            update("a", "first try", false, false),
            update("a", "second try", false, false),
        ]);
        assert_eq!(texts, ["first try", ""]);
        assert_eq!(code(&outcome), "agent_answer_rewritten");
        // Text that never went out may change freely.
        let (texts, outcome) = run(&[
            update("a", "one", false, false),
            update("b", "draft", false, false),
            update("b", "final", false, true),
            update("a", "!", true, true),
            status("completed"),
        ]);
        assert_eq!(texts.concat(), "one!final");
        assert_eq!(outcome, Outcome::Stop);
    }

    #[test]
    fn later_artifacts_wait_for_earlier_ones_to_close() {
        let (texts, outcome) = run(&[
            update("a", "alpha ", false, false),
            update("b", "beta", false, true),
            update("a", "omega ", true, false),
            update("a", "", true, true),
            status("completed"),
        ]);
        assert_eq!(texts, ["alpha ", "", "omega ", "beta", ""]);
        assert_eq!(outcome, Outcome::Stop);
        // Without lastChunk everything after the first artifact waits for
        // the end.
        let (texts, _) = run(&[
            update("a", "alpha ", false, false),
            update("b", "beta", false, false),
            status("completed"),
        ]);
        assert_eq!(texts, ["alpha ", "", "beta"]);
        // Text for an artifact before one whose text is out cannot be
        // placed.
        let (_, outcome) = run(&[
            update("a", "alpha ", false, true),
            update("b", "beta", false, false),
            update("a", "more", true, false),
        ]);
        assert_eq!(code(&outcome), "agent_answer_rewritten");
    }

    #[test]
    fn task_events_carry_artifacts_history_and_status() {
        let task = json!({"task": {"status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"artifactId": "x", "parts": [{"text": "42"}]}]}});
        assert_eq!(run(&[task]), (vec!["42".to_string()], Outcome::Stop));
        let history = json!({"kind": "task", "status": {"state": "completed"},
            "history": [{"role": "agent", "parts": [{"kind": "text", "text": "from history"}]},
                        {"role": "user", "parts": [{"kind": "text", "text": "q"}]}]});
        assert_eq!(run(&[history]).0, ["from history"]);
        // A snapshot repeating what is out changes nothing; one dropping
        // it takes it back.
        let snapshot = |texts: &[(&str, &str)], state: &str| {
            let artifacts: Vec<Value> = texts
                .iter()
                .map(|(id, t)| json!({"artifactId": id, "parts": [{"text": t}]}))
                .collect();
            json!({"task": {"status": {"state": state}, "artifacts": artifacts}})
        };
        let (texts, outcome) = run(&[
            update("a", "one ", false, true),
            snapshot(&[("a", "one "), ("b", "two")], "TASK_STATE_WORKING"),
            snapshot(&[("a", "one "), ("b", "two three")], "TASK_STATE_COMPLETED"),
        ]);
        assert_eq!(texts.concat(), "one two three");
        assert_eq!(outcome, Outcome::Stop);
        let (_, outcome) = run(&[
            update("a", "one ", false, true),
            update("b", "two", false, false),
            snapshot(&[("b", "two"), ("a", "one ")], "TASK_STATE_WORKING"),
        ]);
        assert_eq!(code(&outcome), "agent_answer_rewritten");
        let (_, outcome) = run(&[
            update("a", "one ", false, true),
            snapshot(&[("b", "two")], "TASK_STATE_COMPLETED"),
        ]);
        assert_eq!(code(&outcome), "agent_answer_rewritten");
    }

    #[test]
    fn status_messages_move_into_the_history() {
        // A progress message is the answer of a task that completes with
        // neither artifacts nor a message of its own (as a2a-sdk stores it).
        let working = json!({"statusUpdate": {"status": {"state": "TASK_STATE_WORKING",
            "message": {"role": "ROLE_AGENT", "parts": [{"text": "42"}]}}}});
        let (texts, outcome) = run(&[working.clone(), status("TASK_STATE_COMPLETED")]);
        assert_eq!((texts.concat(), outcome), ("42".to_string(), Outcome::Stop));
        // The final status message wins over the history.
        let done = json!({"kind": "status-update", "status": {"state": "completed",
            "message": {"role": "agent", "parts": [{"kind": "text", "text": "done"}]}}});
        assert_eq!(run(&[working, done]).0.concat(), "done");
    }

    #[test]
    fn messages_answer_directly_or_join_the_task() {
        let message = json!({"message": {"role": "ROLE_AGENT", "parts": [{"text": "hi"}]}});
        assert_eq!(
            run(std::slice::from_ref(&message)),
            (vec!["hi".into()], Outcome::Stop)
        );
        let (texts, outcome) = run(&[
            status("TASK_STATE_SUBMITTED"),
            message,
            status("TASK_STATE_COMPLETED"),
        ]);
        assert_eq!((texts.concat(), outcome), ("hi".to_string(), Outcome::Stop));
    }

    #[test]
    fn unfinished_and_failed_tasks_are_errors() {
        for state in ["TASK_STATE_SUBMITTED", "working", "unknown", "nonsense"] {
            let (_, outcome) = run(&[status(state)]);
            assert_eq!(code(&outcome), "agent_task_incomplete", "{state}");
        }
        let failed = json!({"statusUpdate": {"status": {"state": "TASK_STATE_FAILED",
            "message": {"parts": [{"text": "failed on purpose"}]}}}});
        let (_, outcome) = run(&[update("a", "partial", false, false), failed]);
        let Outcome::Fail(reply) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(reply.status, 502);
        assert!(reply.body.contains("agent_task_failed"));
        assert!(reply.body.contains("failed on purpose"));
    }

    #[test]
    fn held_bytes_are_bounded_and_released() {
        let mut answer = Answer::new(4096);
        let mut text = String::new();
        let first = update("a", "out", false, false);
        answer.apply(event(&first).unwrap(), &mut text);
        assert_eq!(text, "out");
        // Text out is not held, only the artifact.
        assert!(answer.held() < 512, "{}", answer.held());
        let waiting = update("b", &"w".repeat(1000), false, false);
        answer.apply(event(&waiting).unwrap(), &mut text);
        assert!(answer.held() >= 1000);
        let more = update("b", &"w".repeat(4000), true, false);
        let outcome = answer.apply(event(&more).unwrap(), &mut text);
        assert_eq!(code(&outcome), "agent_answer_too_large");
        assert_eq!(answer.held(), 0, "an ended answer holds nothing");
        // Many small artifacts count too.
        let mut answer = Answer::new(64 * 1024);
        let mut outcome = Outcome::Open;
        for i in 0..1000 {
            let u = update(&format!("id-{i}"), "", false, false);
            outcome = answer.apply(event(&u).unwrap(), &mut String::new());
            if outcome != Outcome::Open {
                break;
            }
        }
        assert_eq!(code(&outcome), "agent_answer_too_large");
    }
}
