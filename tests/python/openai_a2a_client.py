"""The official `openai` package chatting with an A2A agent through the gateway.

Run by tests/tests/a2a.rs:

    openai_a2a_client.py BASE_URL --source body|metadata

The gateway serves the A2A test agent (a2a_agent.py) as four models: `prod/echo`
and `echo-v1` (a2a.version 1.0), `prod/echo03` and `echo-legacy` (0.3). Every
model is asked a plain and a streamed question, with and without a
conversation id; then failures: a failed task, a task that wants more input,
and a crash (a JSON-RPC error). With `--source body` the filter sets OpenAI
error statuses; with `metadata` (allow_on_headers_stop_iteration off, see the
README) a whole answer keeps the agent's status (200) and carries the error in
its body. Prints `openai a2a client: ok` when everything held."""

import argparse

from openai import (
    APIError,
    APIStatusError,
    InternalServerError,
    OpenAI,
    UnprocessableEntityError,
)

MODELS = ["prod/echo", "echo-v1", "prod/echo03", "echo-legacy"]


def ask(client, model, text, **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )


def streamed(client, model, text, **kw):
    """The content deltas and the last finish_reason of a streamed answer."""
    deltas, finish = [], None
    for chunk in ask(client, model, text, stream=True, **kw):
        assert chunk.object == "chat.completion.chunk", chunk
        assert chunk.model == model, chunk
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            finish = choice.finish_reason or finish
    return deltas, finish


def expect_status_error(source, call, cls, status, code):
    """Body mode: the OpenAI error class and status. Metadata mode: the agent's
    200 with the OpenAI error in the body."""
    if source == "body":
        try:
            call(client_raw=False)
        except cls as e:
            assert e.status_code == status, (e.status_code, e.body)
            assert e.code == code, e.body
            return e
        raise AssertionError(f"no {cls.__name__}")
    raw = call(client_raw=True)
    assert raw.http_response.status_code == 200, raw.http_response.status_code
    error = raw.http_response.json()["error"]
    assert error["code"] == code, error
    return error


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("--source", choices=["body", "metadata"], required=True)
    args = ap.parse_args()
    client = OpenAI(base_url=args.base_url, api_key="unused", max_retries=0, timeout=20)

    ids = {m.id for m in client.models.list()}
    assert set(MODELS) <= ids, ids

    for model in MODELS:
        answer = ask(client, model, "hello")
        assert answer.object == "chat.completion", answer
        assert answer.model == model, answer
        assert answer.choices[0].message.role == "assistant", answer
        assert answer.choices[0].message.content == "echo: hello", answer
        assert answer.choices[0].finish_reason == "stop", answer

        # The conversation header becomes the A2A contextId (the agent says so).
        conv = {"x-conversation-id": f"conv-{model}"}
        answer = ask(client, model, "hello", extra_headers=conv)
        assert answer.choices[0].message.content == f"echo: hello [context conv-{model}]", answer

        deltas, finish = streamed(client, model, "stream please")
        assert deltas == ["chunk 1 ", "chunk 2 ", "chunk 3"], deltas
        assert finish == "stop"
        deltas, _ = streamed(client, model, "stream please", extra_headers=conv)
        assert deltas == ["chunk 1 ", "chunk 2 ", f"chunk 3 [context conv-{model}]"], deltas

        # A direct message instead of a task.
        answer = ask(client, model, "message me")
        assert answer.choices[0].message.content == "echo: message me", answer
        deltas, finish = streamed(client, model, "message me")
        assert deltas == ["echo: message me"] and finish == "stop", (deltas, finish)

    def failing(text, model="prod/echo"):
        def call(client_raw):
            create = client.chat.completions
            if client_raw:
                create = create.with_raw_response
            return create.create(model=model, messages=[{"role": "user", "content": text}])

        return call

    for model in ["prod/echo", "prod/echo03"]:
        e = expect_status_error(
            args.source, failing("fail now", model), InternalServerError, 502, "agent_task_failed"
        )
        assert "failed on purpose" in str(e), e
        expect_status_error(
            args.source,
            failing("input please", model),
            UnprocessableEntityError,
            422,
            "agent_input_required",
        )
        e = expect_status_error(
            args.source, failing("crash now", model), InternalServerError, 502, "agent_error"
        )
        assert "crashed on purpose" in str(e), e

        # Streamed failures arrive as an error event, which the client raises.
        for text, code, partial in [
            ("fail now", "agent_task_failed", []),
            ("crash now", "agent_error", ["partial "]),
        ]:
            deltas = []
            try:
                for chunk in ask(client, model, text, stream=True):
                    deltas += [c.delta.content for c in chunk.choices if c.delta.content]
                raise AssertionError(f"streamed {text!r} did not fail")
            except APIStatusError as e:
                raise AssertionError(f"streamed failure as a status: {e}") from e
            except APIError as e:
                assert e.body["code"] == code, e.body
            assert deltas == partial, deltas

    print("openai a2a client: ok")


if __name__ == "__main__":
    main()
