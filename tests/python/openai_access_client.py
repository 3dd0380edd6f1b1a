"""The official `openai` package as one caller of the gateway's OpenAI
surface, its token as the client's `api_key` (the SDK sends it as
`Authorization: Bearer <api_key>`, which Envoy's jwt_authn verifies).

Usage: openai_access_client.py BASE_URL TOKEN

TOKEN is an intern's (groups ["interns"]), whose rule grants only
gpt-4o-mini: the script checks what that caller sees, then what a client
without a token gets. Prints "openai access client: ok" and exits 0, or
fails on the first assertion.
"""

import sys

from openai import AuthenticationError, Omit, OpenAI, PermissionDeniedError


def hi(client: OpenAI, model: str, **options):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **options)


def main(base_url: str, token: str) -> None:
    intern = OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=20)

    ids = [m.id for m in intern.models.list()]
    assert ids == ["gpt-4o-mini"], ids

    try:
        hi(intern, "gpt-4o")
        raise AssertionError("gpt-4o was served to an intern")
    except PermissionDeniedError as e:
        assert e.status_code == 403, e.status_code
        assert e.code == "model_not_allowed", e.body

    completion = hi(intern, "gpt-4o-mini")
    assert completion.model == "gpt-4o-mini", completion
    assert completion.choices[0].message.content == "hello from llm", completion

    # No token at all: the SDK sends no request without credentials unless
    # the request omits the Authorization header on purpose.
    try:
        hi(intern, "gpt-4o-mini", extra_headers={"Authorization": Omit()})
        raise AssertionError("a caller without a token was served")
    except AuthenticationError as e:
        assert e.status_code == 401, e.status_code
        assert e.type == "authentication_error", e.body
        assert e.response.headers.get("www-authenticate") == "Bearer", e.response.headers

    print("openai access client: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
