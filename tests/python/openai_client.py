"""The official `openai` package pointed at the gateway: lists models, gets a
chat completion, an embedding and a streamed completion from the right
backends. Run by tests/tests/openai.rs with the gateway's base URL."""

import sys

from openai import NotFoundError, OpenAI


def main(base_url: str) -> None:
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=20)

    ids = sorted(m.id for m in client.models.list())
    assert ids == ["embed-demo", "gpt-demo", "prod/coordinator"], ids

    chat = client.chat.completions.with_raw_response.create(
        model="gpt-demo", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.headers["x-served-by"] == "llm", chat.headers
    completion = chat.parse()
    assert completion.model == "gpt-demo"
    assert completion.choices[0].message.content == "hello from llm"

    agent = client.chat.completions.create(
        model="prod/coordinator", messages=[{"role": "user", "content": "hi"}]
    )
    assert agent.choices[0].message.content == "hello from coordinator"

    emb = client.embeddings.with_raw_response.create(model="embed-demo", input="hello")
    assert emb.headers["x-served-by"] == "embedder", emb.headers
    assert emb.parse().data[0].embedding == [0.1, 0.2, 0.3]

    stream = client.chat.completions.create(
        model="gpt-demo", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    tokens = [c.choices[0].delta.content for c in stream if c.choices]
    assert tokens == ["tok0", "tok1", "tok2", "tok3", "tok4"], tokens

    try:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("unknown model was served")
    except NotFoundError as e:
        assert e.code == "model_not_found", e.body

    print("openai client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
