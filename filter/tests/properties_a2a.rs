//! Property tests of the A2A answer translation: a streamed answer and the
//! same answer given whole translate alike.
//!
//! An answer is generated as what an agent does (a direct message, or a
//! task: artifact updates appending or replacing, progress, messages, task
//! events, then an end or none, or a JSON-RPC error), in either A2A
//! generation's spelling. This file's own model of an A2A server (a2a-sdk's
//! task store, written out plainly) turns it into the whole answer a
//! `message/send` gets; the same steps as events, framed as SSE in every
//! way the standard allows and cut into chunks anywhere, are the stream a
//! `message/stream` gets. Then:
//!
//! - the streamed deltas, concatenated, are the whole answer's content, and
//!   both end alike (`stop`, or the same error);
//! - except where the agent takes back text a stream may have sent already
//!   (a replacement that does not extend an artifact, text for an artifact
//!   after its `lastChunk`): there the stream may end in
//!   `agent_answer_rewritten` instead, and only there.
#![cfg(not(target_arch = "wasm32"))]
// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agentroute::a2a::chat::{completion_from_a2a, ChunkStream, Completion};
use proptest::prelude::*;
use serde_json::{json, Value};

fn completion() -> Completion {
    Completion {
        id: "chatcmpl-prop".to_string(),
        model: "prod/echo".to_string(),
        created: 1,
    }
}

// ---------------------------------------------------------------------------
// What an agent does
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    V1_0,
    V0_3,
}

/// Task states, each with its spelling in both generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Submitted,
    Working,
    Unknown,
    Completed,
    Failed,
    Canceled,
    Rejected,
    InputRequired,
    AuthRequired,
}

const RUNNING: [TaskState; 3] = [TaskState::Submitted, TaskState::Working, TaskState::Unknown];
const ENDS: [TaskState; 6] = [
    TaskState::Completed,
    TaskState::Failed,
    TaskState::Canceled,
    TaskState::Rejected,
    TaskState::InputRequired,
    TaskState::AuthRequired,
];

impl TaskState {
    fn spelled(self, generation: Generation) -> &'static str {
        use TaskState::*;
        match generation {
            Generation::V1_0 => match self {
                Submitted => "TASK_STATE_SUBMITTED",
                Working => "TASK_STATE_WORKING",
                Unknown => "TASK_STATE_UNSPECIFIED",
                Completed => "TASK_STATE_COMPLETED",
                Failed => "TASK_STATE_FAILED",
                Canceled => "TASK_STATE_CANCELED",
                Rejected => "TASK_STATE_REJECTED",
                InputRequired => "TASK_STATE_INPUT_REQUIRED",
                AuthRequired => "TASK_STATE_AUTH_REQUIRED",
            },
            Generation::V0_3 => match self {
                Submitted => "submitted",
                Working => "working",
                Unknown => "unknown",
                Completed => "completed",
                Failed => "failed",
                Canceled => "canceled",
                Rejected => "rejected",
                InputRequired => "input-required",
                AuthRequired => "auth-required",
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    text: String,
    from_agent: bool,
}

#[derive(Debug, Clone)]
enum Step {
    /// An artifact update. `which` 3 is an artifact without `artifactId`.
    Artifact {
        which: usize,
        text: String,
        append: bool,
        /// A replacement (`append` false) of the artifact's text followed
        /// by `text`, rather than by `text` alone.
        extends: bool,
        last_chunk: bool,
    },
    /// A status update to a state that is not an end.
    Progress {
        state: TaskState,
        message: Option<Msg>,
    },
    /// The task as it stands, as a task event.
    Snapshot,
    /// A message of the agent's within the task.
    AgentMessage(String),
}

#[derive(Debug, Clone)]
enum Ending {
    /// A status update to an end state.
    Status {
        state: TaskState,
        message: Option<Msg>,
    },
    /// The task in an end state, as a task event.
    TaskEvent {
        state: TaskState,
        message: Option<Msg>,
    },
    /// The agent stops without an end (a stream that breaks off; a whole
    /// task that is still running).
    BreakOff,
    /// A JSON-RPC error.
    RpcError { code: i64, message: String },
}

#[derive(Debug, Clone)]
enum Shape {
    Direct(String),
    Task {
        /// The stream opens with the task (as a2a-sdk's do).
        opening_task: bool,
        steps: Vec<Step>,
        ending: Ending,
    },
    RpcError {
        code: i64,
        message: String,
    },
}

/// How one event is framed on the wire.
#[derive(Debug, Clone)]
struct Framing {
    /// The JSON pretty-printed: one `data:` line per line.
    multi_line: bool,
    /// 0: LF, 1: CR, 2: CRLF.
    line_end: usize,
    comment: bool,
    event_and_id: bool,
    /// No space after `data:`.
    tight: bool,
}

#[derive(Debug, Clone)]
struct Case {
    generation: Generation,
    shape: Shape,
    /// Every JSON-RPC answer carries `"error": null` next to its result.
    null_error: bool,
    framings: Vec<Framing>,
    cuts: Vec<prop::sample::Index>,
}

// ---------------------------------------------------------------------------
// A2A, spelled out
// ---------------------------------------------------------------------------

fn part(g: Generation, text: &str) -> Value {
    match g {
        Generation::V1_0 => json!({ "text": text }),
        Generation::V0_3 => json!({ "kind": "text", "text": text }),
    }
}

fn message(g: Generation, msg: &Msg) -> Value {
    let role = match (g, msg.from_agent) {
        (Generation::V1_0, true) => "ROLE_AGENT",
        (Generation::V1_0, false) => "ROLE_USER",
        (Generation::V0_3, true) => "agent",
        (Generation::V0_3, false) => "user",
    };
    let mut m = json!({ "messageId": "m", "role": role, "parts": [part(g, &msg.text)] });
    if g == Generation::V0_3 {
        m["kind"] = json!("message");
    }
    m
}

fn status(g: Generation, state: TaskState, msg: Option<&Msg>) -> Value {
    let mut s = json!({ "state": state.spelled(g) });
    if let Some(msg) = msg {
        s["message"] = message(g, msg);
    }
    s
}

/// A result as a stream event (or a whole answer's result): 1.0 wraps it,
/// 0.3 tags it.
fn wrap(g: Generation, kind: &str, mut body: Value) -> Value {
    match g {
        Generation::V1_0 => {
            let key = match kind {
                "task" => "task",
                "message" => "message",
                "status-update" => "statusUpdate",
                _ => "artifactUpdate",
            };
            json!({ key: body })
        }
        Generation::V0_3 => {
            body["kind"] = json!(kind);
            body
        }
    }
}

fn envelope(result: Value, null_error: bool) -> Value {
    let mut v = json!({ "jsonrpc": "2.0", "id": "req-1", "result": result });
    if null_error {
        v["error"] = Value::Null;
    }
    v
}

fn rpc_error(code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": "req-1", "error": { "code": code, "message": message } })
}

/// The agent's task, as an A2A server keeps it (a2a-sdk's `TaskManager`).
#[derive(Debug, Default)]
struct Task {
    /// (artifactId, text, a `lastChunk` was seen).
    artifacts: Vec<(Option<String>, String, bool)>,
    state: Option<TaskState>,
    status_message: Option<Msg>,
    history: Vec<Msg>,
    /// No text a stream may have sent was taken back.
    keeps_its_word: bool,
}

impl Task {
    fn new() -> Task {
        Task {
            state: Some(TaskState::Submitted),
            history: vec![Msg {
                text: "the question".into(),
                from_agent: false,
            }],
            keeps_its_word: true,
            ..Task::default()
        }
    }

    fn set_status(&mut self, state: TaskState, message: Option<Msg>) {
        if let Some(old) = self.status_message.take() {
            self.history.push(old);
        }
        self.state = Some(state);
        self.status_message = message;
    }

    fn artifact_update(
        &mut self,
        id: Option<String>,
        text: &str,
        append: bool,
        extends: bool,
        last: bool,
    ) -> String {
        let index = self.artifacts.iter().position(|(i, _, _)| *i == id);
        let (old, closed) = index
            .map(|i| (self.artifacts[i].1.clone(), self.artifacts[i].2))
            .unwrap_or_default();
        let new = if append || extends {
            format!("{old}{text}")
        } else {
            text.to_string()
        };
        if index.is_some() && (!new.starts_with(&old) || (closed && new != old)) {
            self.keeps_its_word = false;
        }
        match index {
            Some(i) => {
                self.artifacts[i].1 = new.clone();
                self.artifacts[i].2 |= last;
            }
            None => self.artifacts.push((id, new.clone(), last)),
        }
        // What the update carries: the appended part, or the whole text.
        if append {
            text.to_string()
        } else {
            new
        }
    }

    fn to_json(&self, g: Generation) -> Value {
        let artifacts: Vec<Value> = self
            .artifacts
            .iter()
            .map(|(id, text, _)| {
                let mut a = json!({ "parts": [part(g, text)] });
                if let Some(id) = id {
                    a["artifactId"] = json!(id);
                }
                a
            })
            .collect();
        let history: Vec<Value> = self.history.iter().map(|m| message(g, m)).collect();
        let body = json!({
            "id": "task-1",
            "contextId": "ctx-1",
            "status": status(g, self.state.unwrap_or(TaskState::Submitted), self.status_message.as_ref()),
            "artifacts": artifacts,
            "history": history,
        });
        wrap(g, "task", body)
    }
}

/// The stream's JSON-RPC answers, and the whole answer; and whether the
/// agent kept its word (took back no text a stream may have sent).
fn answers(case: &Case) -> (Vec<Value>, Value, bool) {
    let g = case.generation;
    let null = case.null_error;
    match &case.shape {
        Shape::Direct(text) => {
            let m = wrap(
                g,
                "message",
                message(
                    g,
                    &Msg {
                        text: text.clone(),
                        from_agent: true,
                    },
                ),
            );
            (vec![envelope(m.clone(), null)], envelope(m, null), true)
        }
        Shape::RpcError { code, message } => {
            let e = rpc_error(*code, message);
            (vec![e.clone()], e, true)
        }
        Shape::Task {
            opening_task,
            steps,
            ending,
        } => {
            let mut task = Task::new();
            let mut events = Vec::new();
            if *opening_task {
                events.push(task.to_json(g));
            }
            for step in steps {
                match step {
                    Step::Artifact {
                        which,
                        text,
                        append,
                        extends,
                        last_chunk,
                    } => {
                        let id = (*which < 3).then(|| format!("artifact-{which}"));
                        let carried =
                            task.artifact_update(id.clone(), text, *append, *extends, *last_chunk);
                        let mut artifact = json!({ "parts": [part(g, &carried)] });
                        if let Some(id) = id {
                            artifact["artifactId"] = json!(id);
                        }
                        let mut update = json!({ "taskId": "task-1", "contextId": "ctx-1", "artifact": artifact });
                        // 1.0 (proto JSON) leaves false flags out.
                        if *append || g == Generation::V0_3 {
                            update["append"] = json!(append);
                        }
                        if *last_chunk || g == Generation::V0_3 {
                            update["lastChunk"] = json!(last_chunk);
                        }
                        events.push(wrap(g, "artifact-update", update));
                    }
                    Step::Progress { state, message } => {
                        task.set_status(*state, message.clone());
                        let mut update = json!({ "taskId": "task-1", "contextId": "ctx-1",
                            "status": status(g, *state, message.as_ref()) });
                        if g == Generation::V0_3 {
                            update["final"] = json!(false);
                        }
                        events.push(wrap(g, "status-update", update));
                    }
                    Step::Snapshot => events.push(task.to_json(g)),
                    Step::AgentMessage(text) => {
                        let msg = Msg {
                            text: text.clone(),
                            from_agent: true,
                        };
                        if let Some(old) = task.status_message.take() {
                            task.history.push(old);
                        }
                        task.history.push(msg.clone());
                        events.push(wrap(g, "message", message(g, &msg)));
                    }
                }
            }
            let mut stream: Vec<Value> = events.into_iter().map(|e| envelope(e, null)).collect();
            let whole = match ending {
                Ending::Status { state, message } => {
                    task.set_status(*state, message.clone());
                    let mut update = json!({ "taskId": "task-1", "contextId": "ctx-1",
                        "status": status(g, *state, message.as_ref()) });
                    if g == Generation::V0_3 {
                        update["final"] = json!(true);
                    }
                    stream.push(envelope(wrap(g, "status-update", update), null));
                    envelope(task.to_json(g), null)
                }
                Ending::TaskEvent { state, message } => {
                    task.set_status(*state, message.clone());
                    stream.push(envelope(task.to_json(g), null));
                    envelope(task.to_json(g), null)
                }
                Ending::BreakOff => envelope(task.to_json(g), null),
                Ending::RpcError { code, message } => {
                    let e = rpc_error(*code, message);
                    stream.push(e.clone());
                    e
                }
            };
            (stream, whole, task.keeps_its_word)
        }
    }
}

/// The stream on the wire: every event framed its way.
fn sse(events: &[Value], framings: &[Framing]) -> Vec<u8> {
    let mut out = String::new();
    for (i, event) in events.iter().enumerate() {
        let f = &framings[i % framings.len()];
        let end = ["\n", "\r", "\r\n"][f.line_end];
        if f.comment {
            out.push_str(&format!(": ping{end}"));
        }
        if f.event_and_id {
            out.push_str(&format!("event: message{end}id: {i}{end}"));
        }
        let json = if f.multi_line {
            serde_json::to_string_pretty(event).unwrap()
        } else {
            event.to_string()
        };
        let prefix = if f.tight { "data:" } else { "data: " };
        for line in json.split('\n') {
            out.push_str(&format!("{prefix}{line}{end}"));
        }
        out.push_str(end);
    }
    out.into_bytes()
}

/// How a translated answer ended, and its content.
#[derive(Debug, PartialEq)]
enum Translated {
    Stop(String),
    Error(Value),
}

fn whole(body: &Value) -> Translated {
    let reply = completion_from_a2a(200, body.to_string().as_bytes(), &completion());
    let v: Value = serde_json::from_str(&reply.body).unwrap();
    if reply.status == 200 {
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        Translated::Stop(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    } else {
        Translated::Error(v)
    }
}

/// Feeds the stream in chunks cut at `cuts`, checks it is well-formed, and
/// reads how it ended.
fn streamed(bytes: &[u8], cuts: &[prop::sample::Index]) -> Translated {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut stream = ChunkStream::new(completion());
    let mut out = Vec::new();
    let mut from = 0;
    for cut in at.into_iter().chain([bytes.len()]) {
        out.extend(stream.feed(&bytes[from..cut]));
        from = cut;
    }
    out.extend(stream.finish());
    assert_eq!(stream.held(), 0, "an ended stream holds nothing");
    let text = String::from_utf8(out).unwrap();
    let events: Vec<&str> = text.strip_suffix("\n\n").unwrap().split("\n\n").collect();
    let (done, rest) = events.split_last().unwrap();
    assert_eq!(*done, "data: [DONE]", "{text}");
    let (last, deltas) = rest.split_last().expect("an end before [DONE]");
    let mut content = String::new();
    for (i, event) in deltas.iter().enumerate() {
        let v: Value = serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk", "{text}");
        assert_eq!(v["choices"][0]["finish_reason"], Value::Null, "{text}");
        let delta = &v["choices"][0]["delta"];
        assert_eq!(
            delta.get("role").is_some(),
            i == 0,
            "the first delta names the role: {text}"
        );
        content.push_str(delta["content"].as_str().unwrap());
    }
    let last: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    if last.get("error").is_some() {
        return Translated::Error(last);
    }
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{text}");
    assert_eq!(last["choices"][0]["delta"], json!({}), "{text}");
    assert!(!deltas.is_empty(), "a stop comes after the role: {text}");
    Translated::Stop(content)
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    // Multi-byte characters too: a replacement is checked byte for byte.
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', ' ', 'é', '🙂', '"', '\\', '\n']),
        0..6,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn msg() -> impl Strategy<Value = Option<Msg>> {
    prop::option::of(
        (text(), prop::bool::weighted(0.8)).prop_map(|(text, from_agent)| Msg { text, from_agent }),
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0usize..4, text(), any::<bool>(), prop::bool::weighted(0.7), prop::bool::weighted(0.3)).prop_map(
            |(which, text, append, extends, last_chunk)| Step::Artifact { which, text, append, extends, last_chunk }
        ),
        2 => (prop::sample::select(RUNNING.to_vec()), msg()).prop_map(|(state, message)| Step::Progress { state, message }),
        1 => Just(Step::Snapshot),
        1 => text().prop_map(Step::AgentMessage),
    ]
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        4 => (prop::sample::select(ENDS.to_vec()), msg()).prop_map(|(state, message)| Ending::Status { state, message }),
        2 => (prop::sample::select(ENDS.to_vec()), msg()).prop_map(|(state, message)| Ending::TaskEvent { state, message }),
        1 => Just(Ending::BreakOff),
        1 => (-32700i64..-32000, text()).prop_map(|(code, message)| Ending::RpcError { code, message }),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        1 => text().prop_map(Shape::Direct),
        8 => (any::<bool>(), prop::collection::vec(step(), 0..10), ending()).prop_map(
            |(opening_task, steps, ending)| {
                // A message first would be the direct answer, not part of a task.
                let opening_task = opening_task || matches!(steps.first(), Some(Step::AgentMessage(_)));
                Shape::Task { opening_task, steps, ending }
            }
        ),
        1 => (-32700i64..-32000, text()).prop_map(|(code, message)| Shape::RpcError { code, message }),
    ]
}

fn framing() -> impl Strategy<Value = Framing> {
    (
        any::<bool>(),
        0usize..3,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(multi_line, line_end, comment, event_and_id, tight)| Framing {
                multi_line,
                line_end,
                comment,
                event_and_id,
                tight,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Generation::V1_0), Just(Generation::V0_3)],
        shape(),
        any::<bool>(),
        prop::collection::vec(framing(), 1..4),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    )
        .prop_map(|(generation, shape, null_error, framings, cuts)| Case {
            generation,
            shape,
            null_error,
            framings,
            cuts,
        })
}

fn code(error: &Value) -> &str {
    error["error"]["code"].as_str().unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn streamed_and_whole_answers_translate_alike(case in case()) {
        let (events, whole_answer, keeps_its_word) = answers(&case);
        let bytes = sse(&events, &case.framings);
        let whole = whole(&whole_answer);
        let streamed = streamed(&bytes, &case.cuts);
        match (&streamed, &whole) {
            (Translated::Error(e), _) if code(e) == "agent_answer_rewritten" => {
                prop_assert!(!keeps_its_word, "rewritten, yet every replacement extended: {e}");
            }
            _ => prop_assert_eq!(
                &streamed,
                &whole,
                "stream:\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

/// The examples the property was written for, pinned.
#[test]
fn the_answers_of_the_issue_translate_alike() {
    let g = Generation::V1_0;
    let done = |steps: Vec<Step>| Case {
        generation: g,
        shape: Shape::Task {
            opening_task: true,
            steps,
            ending: Ending::TaskEvent {
                state: TaskState::Completed,
                message: None,
            },
        },
        null_error: true,
        framings: vec![Framing {
            multi_line: true,
            line_end: 1,
            comment: true,
            event_and_id: true,
            tight: false,
        }],
        cuts: vec![],
    };
    // A completed task carrying "42" in its artifacts, streamed.
    let case = done(vec![Step::Artifact {
        which: 0,
        text: "42".into(),
        append: false,
        extends: false,
        last_chunk: false,
    }]);
    let (events, whole_answer, _) = answers(&case);
    assert_eq!(whole(&whole_answer), Translated::Stop("42".into()));
    assert_eq!(
        streamed(&sse(&events, &case.framings), &[]),
        Translated::Stop("42".into())
    );
    // Replacements that extend: no text twice.
    let step = |text: &str, append, extends| Step::Artifact {
        which: 1,
        text: text.into(),
        append,
        extends,
        last_chunk: false,
    };
    let case = done(vec![
        step("4", false, false),
        step("2", false, true),
        step("!", true, false),
    ]);
    let (events, _, _) = answers(&case);
    assert_eq!(
        streamed(&sse(&events, &case.framings), &[]),
        Translated::Stop("42!".into())
    );
}
