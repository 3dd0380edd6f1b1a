#!/usr/bin/env python3
"""A stand-in LLM provider with three personalities: Anthropic Messages,
Gemini generateContent, or OpenAI chat completions (--kind).

Every request it gets is VALIDATED against the provider's own SDK types
(`anthropic`, `google-genai`, `openai`), so a wrong translation fails loudly:
a request that does not validate is answered 400 in the provider's error
shape, with the problems in the message.
- anthropic: `POST /v1/messages` and `/v1/messages/count_tokens`; header
  `anthropic-version` required; the body validated with a pydantic
  TypeAdapter of `MessageCreateParamsNonStreaming`/`Streaming` (or
  `MessageCountTokensParams`), lazily validated lists forced; plus: no key
  the TypedDicts don't know (recursively) but `temperature`/`top_p` (0..1)
  and `top_k` (which the API takes though the SDK types dropped them),
  `max_tokens` present, messages
  alternate user/assistant starting with user, every content block's `type`
  known.
- gemini: `POST /{version}/models/{model}:generateContent` and
  `:streamGenerateContent?alt=sse`; `contents[]`, `systemInstruction`
  (`types.Content`), `generationConfig` (`types.GenerationConfig`), `tools[]`
  (`types.Tool`), `toolConfig` (`types.ToolConfig`), `safetySettings[]`
  (`types.SafetySetting`): these models forbid extra keys; unknown top-level
  keys are refused too; roles user/model only, parts never empty.
- openai: `POST /v1/chat/completions`; a TypeAdapter of
  `CompletionCreateParamsNonStreaming`/`Streaming`, no unknown key
  (recursively), `stream_options` only with `stream: true`.

Credentials (--key): anthropic `x-api-key` (or `authorization: Bearer`, as
the anthropic SDK 2.x sends it), gemini `x-goog-api-key`, openai
`authorization: Bearer`; missing or wrong → 401 in the provider's shape.
--models A,B: a model not listed gets 404 (default: every model is served).
--fail STATUS answers every (authenticated, valid) request with STATUS and
the provider's error body (anthropic 529 overloaded_error, gemini 503
UNAVAILABLE, openai 503 server_error, ...).

Answers are deterministic, in each provider's wire format (JSON, or SSE for
anthropic `"stream": true`, gemini `:streamGenerateContent?alt=sse`, openai
`"stream": true`):
- tools offered and the last turn not a tool result → ONE call of the first
  tool with arguments {"city": "Paris"} (anthropic `tool_use` id `toolu_1`,
  gemini `functionCall`, openai `tool_calls` id `call_1`);
- else the text "NAME: " + the last text a user wrote (" [image]" appended
  when the last user turn holds an image), streamed in 3+ deltas.
Usage: 11 input tokens, 7 output tokens. count_tokens → {"input_tokens": 42}.
Every answer carries `x-served-by: NAME`.

GET /requests → [{"method", "path", "query", "headers" (lowercase names),
"body" (parsed JSON or null), "valid", "problems"}]; DELETE /requests forgets
them; GET /healthz → 200.

Prints exactly one line `listening on 127.0.0.1:PORT` on stdout once it
accepts connections.
"""

import argparse
import asyncio
import json
import socket
import sys
import types as pytypes
import typing
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote

import typing_extensions
import uvicorn
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

REQUESTS: list[dict] = []
OWN = ("/requests", "/healthz")
INPUT_TOKENS = 11
OUTPUT_TOKENS = 7
CITY_ARGS = {"city": "Paris"}


# ---------------------------------------------------------------- validation


def _force(value):
    """Walks a TypeAdapter result, consuming the lazy ValidatorIterators that
    pydantic makes for `Iterable[...]` fields, so every item is validated."""
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: _force(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [_force(v) for v in value]
    return value


def _errors(e: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for err in e.errors()[:8]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append(f"{prefix}{loc}: {err.get('msg')}")
    return out


def validate_typed(adapter: TypeAdapter, body) -> list[str]:
    try:
        _force(adapter.validate_python(body, strict=False))
    except ValidationError as e:
        return _errors(e)
    return []


def _strip(tp):
    """Removes Annotated/Required/NotRequired/ReadOnly wrappers."""
    while True:
        origin = typing_extensions.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Required, typing.NotRequired, typing_extensions.Required, typing_extensions.NotRequired, typing_extensions.ReadOnly):
            tp = typing.get_args(tp)[0]
        else:
            return tp


_HINTS: dict = {}


def _hints(td) -> dict:
    if td not in _HINTS:
        _HINTS[td] = typing_extensions.get_type_hints(td)
    return _HINTS[td]


def _literal_ok(td, value: dict) -> bool:
    """Whether the Literal-typed keys of TypedDict `td` (`type`, `role`, ...)
    match `value`: how a union member is picked for a dict."""
    for key, tp in _hints(td).items():
        tp = _strip(tp)
        if typing.get_origin(tp) is typing.Literal:
            if key in value and value[key] not in typing.get_args(tp):
                return False
            if key not in value and key in getattr(td, "__required_keys__", ()):
                return False
    return True


def unknown_keys(value, tp, path: str = "") -> list[str]:
    """The keys in `value` that the TypedDict type `tp` (recursively, through
    unions, lists and optionals) does not know: pydantic ignores them."""
    tp = _strip(tp)
    if tp is typing.Any or tp is object:
        return []
    if typing_extensions.is_typeddict(tp):
        if not isinstance(value, dict):
            return []
        hints = _hints(tp)
        out = [f"{path or 'body'}: unknown key {k!r}" for k in value if k not in hints]
        for k, v in value.items():
            if k in hints:
                out += unknown_keys(v, hints[k], f"{path}.{k}" if path else k)
        return out
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, pytypes.UnionType):
        if isinstance(value, dict):
            members = list(map(_strip, args))
            tds = [a for a in members if typing_extensions.is_typeddict(a)]
            fitting = [t for t in tds if _literal_ok(t, value)] or tds
            fitting += [a for a in members if a is typing.Any or a is object or typing.get_origin(a) in (dict, Mapping)]
            if not fitting:
                return []
            return min((unknown_keys(value, t, path) for t in fitting), key=len)
        if isinstance(value, list):
            seqs = [a for a in map(_strip, args) if typing.get_origin(a) in (list, Iterable, Sequence, typing.List)]
            return unknown_keys(value, seqs[0], path) if seqs else []
        return []
    if origin in (list, Iterable, Sequence, typing.List) and args:
        if not isinstance(value, list):
            return []
        out = []
        for i, item in enumerate(value):
            out += unknown_keys(item, args[0], f"{path}[{i}]")
        return out
    if origin in (dict, Mapping) and len(args) == 2 and isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += unknown_keys(v, args[1], f"{path}.{k}")
        return out
    return []


def _literal_values(tp) -> set:
    """Every value the Literal `type` key can take in the TypedDicts that
    `tp` names (through unions and lists)."""
    tp = _strip(tp)
    if typing_extensions.is_typeddict(tp):
        t = _strip(_hints(tp).get("type"))
        return set(typing.get_args(t)) if typing.get_origin(t) is typing.Literal else set()
    out = set()
    if typing.get_origin(tp) is not typing.Literal:
        for arg in typing.get_args(tp):
            out |= _literal_values(arg)
    return out


class Anthropic:
    def __init__(self) -> None:
        from anthropic.types import ContentBlockParam, ToolResultBlockParam
        from anthropic.types import message_count_tokens_params as count
        from anthropic.types import message_create_params as create

        self.nonstream = create.MessageCreateParamsNonStreaming
        self.stream = create.MessageCreateParamsStreaming
        self.count = count.MessageCountTokensParams
        self.adapters = {t: TypeAdapter(t) for t in (self.nonstream, self.stream, self.count)}
        self.block_types = _literal_values(ContentBlockParam)
        self.result_types = _literal_values(_hints(ToolResultBlockParam)["content"])

    def validate(self, body, count: bool) -> list[str]:
        if not isinstance(body, dict):
            return ["body: not a JSON object"]
        td = self.count if count else (self.stream if body.get("stream") is True else self.nonstream)
        # The sampling knobs the API still takes, though the 1.x+ SDK types
        # dropped them: checked here, and kept out of the TypedDict checks.
        problems = []
        legacy = {k: body[k] for k in ("temperature", "top_p", "top_k") if k in body and not count}
        for k, v in legacy.items():
            if k == "top_k":
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    problems.append(f"top_k: {v!r}, want a non-negative integer")
            elif not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                problems.append(f"{k}: {v!r}, want a number in 0..1")
        rest = {k: v for k, v in body.items() if k not in legacy}
        problems += validate_typed(self.adapters[td], rest)
        problems += unknown_keys(rest, td)
        if not count and "max_tokens" not in body:
            problems.append("max_tokens: missing")
        messages = body.get("messages")
        if isinstance(messages, list):
            for i, m in enumerate(messages):
                role = m.get("role") if isinstance(m, dict) else None
                want = "user" if i % 2 == 0 else "assistant"
                if role != want:
                    problems.append(f"messages[{i}].role: {role!r}, want {want!r} (user first, then alternating)")
                content = m.get("content") if isinstance(m, dict) else None
                if isinstance(content, list):
                    if not content:
                        problems.append(f"messages[{i}].content: empty")
                    for j, block in enumerate(content):
                        kind = block.get("type") if isinstance(block, dict) else None
                        if kind not in self.block_types:
                            problems.append(f"messages[{i}].content[{j}].type: unknown {kind!r}")
                        if kind == "tool_result" and isinstance(block.get("content"), list):
                            for k, inner in enumerate(block["content"]):
                                ik = inner.get("type") if isinstance(inner, dict) else None
                                if ik not in self.result_types:
                                    problems.append(f"messages[{i}].content[{j}].content[{k}].type: unknown {ik!r}")
                elif isinstance(content, str) and not content:
                    problems.append(f"messages[{i}].content: empty string")
        system = body.get("system")
        if isinstance(system, list):
            for j, block in enumerate(system):
                if not isinstance(block, dict) or block.get("type") != "text":
                    problems.append(f"system[{j}].type: want 'text'")
        return problems


class Gemini:
    TOP = {
        "contents",
        "systemInstruction",
        "generationConfig",
        "tools",
        "toolConfig",
        "safetySettings",
        "cachedContent",
    }

    def __init__(self) -> None:
        from google.genai import types

        self.t = types

    def _model(self, model, value, where: str) -> list[str]:
        try:
            model.model_validate(value, strict=False)
        except ValidationError as e:
            return _errors(e, where + ".")
        return []

    def validate(self, body) -> list[str]:
        t = self.t
        if not isinstance(body, dict):
            return ["body: not a JSON object"]
        problems = [f"body: unknown key {k!r}" for k in body if k not in self.TOP]
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            problems.append("contents: missing or empty")
            contents = []
        for i, c in enumerate(contents):
            problems += self._model(t.Content, c, f"contents[{i}]")
            if isinstance(c, dict):
                if c.get("role") not in ("user", "model"):
                    problems.append(f"contents[{i}].role: {c.get('role')!r}, want 'user' or 'model'")
                if not c.get("parts"):
                    problems.append(f"contents[{i}].parts: missing or empty")
        if "systemInstruction" in body:
            problems += self._model(t.Content, body["systemInstruction"], "systemInstruction")
        if "generationConfig" in body:
            problems += self._model(t.GenerationConfig, body["generationConfig"], "generationConfig")
        if "toolConfig" in body:
            problems += self._model(t.ToolConfig, body["toolConfig"], "toolConfig")
        for key, model in (("tools", t.Tool), ("safetySettings", t.SafetySetting)):
            if key in body:
                if not isinstance(body[key], list):
                    problems.append(f"{key}: not a list")
                    continue
                for i, item in enumerate(body[key]):
                    problems += self._model(model, item, f"{key}[{i}]")
        return problems


class OpenAI:
    def __init__(self) -> None:
        from openai.types.chat import completion_create_params as p

        self.nonstream = p.CompletionCreateParamsNonStreaming
        self.stream = p.CompletionCreateParamsStreaming
        self.adapters = {t: TypeAdapter(t) for t in (self.nonstream, self.stream)}

    def validate(self, body) -> list[str]:
        if not isinstance(body, dict):
            return ["body: not a JSON object"]
        td = self.stream if body.get("stream") is True else self.nonstream
        problems = validate_typed(self.adapters[td], body)
        problems += unknown_keys(body, td)
        if body.get("stream_options") is not None and body.get("stream") is not True:
            problems.append("stream_options: only allowed when stream is true")
        if not body.get("messages"):
            problems.append("messages: missing or empty")
        return problems


# ------------------------------------------------------------------ errors

ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
GEMINI_ERRORS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(kind: str, status: int, message: str) -> dict:
    if kind == "anthropic":
        etype = ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_stand_in"}
    if kind == "gemini":
        return {"error": {"code": status, "message": message, "status": GEMINI_ERRORS.get(status, "UNKNOWN")}}
    etype, code = OPENAI_ERRORS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


# ---------------------------------------------------------- reading turns


def _pieces(text: str, n: int = 3) -> list[str]:
    """`text` cut into `n` (or more) non-empty deltas."""
    if len(text) < n:
        return [text[:1], text[1:2] or " ", text[2:] or " "] if text else ["", "", ""]
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def anthropic_turn(body: dict) -> tuple[str | None, str]:
    """(first tool's name when one is to be called, the text to answer)."""
    messages = body.get("messages") or []
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    last = messages[-1] if messages else {}
    last_blocks = last.get("content") if isinstance(last.get("content"), list) else []
    is_result = any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last_blocks)
    if tools and not is_result:
        return tools[0]["name"], ""
    text, image = "", False
    for i, m in enumerate(reversed(messages)):
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            found = content
        else:
            found = "".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")
            if i == 0:
                image = any(isinstance(b, dict) and b.get("type") == "image" for b in content or [])
        if found:
            text = found
            break
    return None, text + (" [image]" if image else "")


def gemini_turn(body: dict) -> tuple[str | None, str]:
    contents = body.get("contents") or []
    decls = [d for t in body.get("tools") or [] for d in (t.get("functionDeclarations") or t.get("function_declarations") or [])]
    last = contents[-1] if contents else {}
    is_result = any("functionResponse" in p or "function_response" in p for p in last.get("parts") or [])
    if decls and not is_result:
        return decls[0].get("name"), ""
    text, image = "", False
    for i, c in enumerate(reversed(contents)):
        if c.get("role") != "user":
            continue
        parts = c.get("parts") or []
        found = "".join(p.get("text", "") for p in parts if "text" in p)
        if i == 0:
            image = any(k in p for p in parts for k in ("inlineData", "inline_data", "fileData", "file_data"))
        if found:
            text = found
            break
    return None, text + (" [image]" if image else "")


def openai_turn(body: dict) -> tuple[str | None, str]:
    messages = body.get("messages") or []
    tools = [t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    last = messages[-1] if messages else {}
    if tools and tools[0] and last.get("role") != "tool":
        return tools[0], ""
    text, image = "", False
    for i, m in enumerate(reversed(messages)):
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            found = content
        else:
            found = "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
            if i == 0:
                image = any(p.get("type") == "image_url" for p in content or [])
        if found:
            text = found
            break
    return None, text + (" [image]" if image else "")


# ------------------------------------------------------------------ answers


def sse(events) -> StreamingResponse:
    async def gen():
        for e in events:
            yield e.encode()

    return StreamingResponse(gen(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


def anthropic_answer(name: str, body: dict, stream: bool) -> Response:
    model = body.get("model", "")
    tool, text = anthropic_turn(body)
    text = f"{name}: {text}"
    msg_id = "msg_standin01"
    stop = "tool_use" if tool else "end_turn"
    if not stream:
        block = (
            {"type": "tool_use", "id": "toolu_1", "name": tool, "input": CITY_ARGS}
            if tool
            else {"type": "text", "text": text}
        )
        return JSONResponse(
            {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": INPUT_TOKENS,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": OUTPUT_TOKENS,
                    "service_tier": "standard",
                },
            }
        )

    def ev(kind: str, data: dict) -> str:
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n"

    events = [
        ev(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": INPUT_TOKENS,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                        "service_tier": "standard",
                    },
                },
            },
        )
    ]
    if tool:
        start = {"type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}
        args = json.dumps(CITY_ARGS)
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *_pieces(args)]]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(text)]
    events.append(ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}))
    events.append(ev("ping", {"type": "ping"}))
    for d in deltas:
        events.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}))
    events.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": OUTPUT_TOKENS},
            },
        )
    )
    events.append(ev("message_stop", {"type": "message_stop"}))
    return sse(events)


GEMINI_USAGE = {
    "promptTokenCount": INPUT_TOKENS,
    "candidatesTokenCount": OUTPUT_TOKENS,
    "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS,
}


def gemini_answer(name: str, model: str, body: dict, stream: bool) -> Response:
    tool, text = gemini_turn(body)
    text = f"{name}: {text}"

    def chunk(parts, finish: bool) -> dict:
        cand = {"content": {"parts": parts, "role": "model"}, "index": 0}
        out = {"candidates": [cand]}
        if finish:
            cand["finishReason"] = "STOP"
            out["usageMetadata"] = GEMINI_USAGE
        out["modelVersion"] = model
        out["responseId"] = "resp_standin01"
        return out

    if tool:
        parts_seq = [[{"functionCall": {"name": tool, "args": CITY_ARGS}}]]
    else:
        parts_seq = [[{"text": p}] for p in (_pieces(text) if stream else [text])]
    if not stream:
        return JSONResponse(chunk(parts_seq[0], True))
    events = [
        f"data: {json.dumps(chunk(parts, i == len(parts_seq) - 1))}\r\n\r\n" for i, parts in enumerate(parts_seq)
    ]
    return sse(events)


OPENAI_USAGE = {
    "prompt_tokens": INPUT_TOKENS,
    "completion_tokens": OUTPUT_TOKENS,
    "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
}


def openai_answer(name: str, body: dict, stream: bool) -> Response:
    model = body.get("model", "")
    tool, text = openai_turn(body)
    text = f"{name}: {text}"
    finish = "tool_calls" if tool else "stop"
    base = {"id": "chatcmpl-standin01", "created": 1700000000, "model": model, "system_fingerprint": None}
    if not stream:
        message = {"role": "assistant", "content": None if tool else text, "refusal": None}
        if tool:
            message["tool_calls"] = [
                {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": json.dumps(CITY_ARGS)}}
            ]
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": OPENAI_USAGE,
            }
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(choices, usage="absent") -> str:
        out = {**base, "object": "chat.completion.chunk", "choices": choices}
        if include_usage:
            out["usage"] = None if usage == "absent" else usage
        return f"data: {json.dumps(out)}\n\n"

    def choice(delta, finish_reason=None) -> list:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    if tool:
        first = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": tool, "arguments": ""}}
            ],
        }
        events = [chunk(choice(first))]
        for p in _pieces(json.dumps(CITY_ARGS)):
            events.append(chunk(choice({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})))
    else:
        events = [chunk(choice({"role": "assistant", "content": "", "refusal": None}))]
        events += [chunk(choice({"content": p})) for p in _pieces(text)]
    events.append(chunk(choice({}, finish)))
    if include_usage:
        events.append(chunk([], OPENAI_USAGE))
    events.append("data: [DONE]\n\n")
    return sse(events)


# -------------------------------------------------------------------- app


def build(kind: str, key: str, name: str, fail: int | None, models: set[str] | None = None) -> Starlette:
    validator = {"anthropic": Anthropic, "gemini": Gemini, "openai": OpenAI}[kind]()
    served = {"x-served-by": name}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse(error_body(kind, status, message), status_code=status, headers=served)

    def authorized(request: Request) -> bool:
        h = request.headers
        if kind == "anthropic":
            # The API takes the key as `x-api-key`; the anthropic SDK (2.x)
            # sends it as `authorization: Bearer`: both are accepted.
            return h.get("x-api-key") == key or h.get("authorization") == f"Bearer {key}"
        if kind == "gemini":
            return h.get("x-goog-api-key") == key
        return h.get("authorization") == f"Bearer {key}"

    async def requests_view(request: Request) -> Response:
        if request.method == "DELETE":
            REQUESTS.clear()
            return Response(status_code=204)
        return JSONResponse(REQUESTS)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "kind": kind, "name": name})

    async def handle(request: Request) -> Response:
        raw = await request.body()
        body = None
        parse_problem = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as e:
                parse_problem = f"body: not JSON ({e})"
        headers: dict[str, str] = {}
        for k, v in request.headers.items():
            headers[k.lower()] = f"{headers[k.lower()]}, {v}" if k.lower() in headers else v
        path = request.url.path
        record = {
            "method": request.method,
            "path": path,
            "query": request.url.query,
            "headers": headers,
            "body": body,
            "valid": True,
            "problems": [],
        }
        REQUESTS.append(record)

        # Which operation, and is it known?
        op = None
        model = ""
        stream = False
        if request.method == "POST":
            if kind == "anthropic" and path in ("/v1/messages", "/v1/messages/count_tokens"):
                op = "count" if path.endswith("count_tokens") else "messages"
            elif kind == "openai" and path == "/v1/chat/completions":
                op = "chat"
            elif kind == "gemini":
                parts = path.split("/")
                # '', version, 'models', 'model:method'
                if len(parts) == 4 and parts[2] == "models" and ":" in parts[3]:
                    model, _, method = unquote(parts[3]).rpartition(":")
                    if method == "generateContent":
                        op = "generate"
                    elif method == "streamGenerateContent":
                        op, stream = "generate", True
                        if request.query_params.get("alt") != "sse":
                            record["problems"].append("query: streamGenerateContent without alt=sse")
        if op is None:
            record["valid"] = False
            record["problems"].append(f"unknown endpoint {request.method} {path}")
            return error(404, f"unknown endpoint {request.method} {path}")

        problems = record["problems"]
        if not authorized(request):
            problems.append("credentials: missing or wrong")
        if parse_problem:
            problems.append(parse_problem)
        elif body is None:
            problems.append("body: missing")
        else:
            if kind == "anthropic":
                if "anthropic-version" not in headers:
                    problems.append("header anthropic-version: missing")
                problems += validator.validate(body, op == "count")
            else:
                problems += validator.validate(body)
        if "content-type" in headers and not headers["content-type"].startswith("application/json"):
            problems.append(f"header content-type: {headers['content-type']!r}, want application/json")
        record["valid"] = not problems

        if not authorized(request):
            msg = {
                "anthropic": "invalid x-api-key",
                "gemini": "API key not valid. Please pass a valid API key.",
                "openai": "Incorrect API key provided.",
            }[kind]
            return error(401, msg)
        if problems:
            return error(400, "stand-in validation failed: " + "; ".join(problems))
        wanted = model if kind == "gemini" else body.get("model")
        if models and wanted not in models:
            return error(404, f"model: {wanted}")
        if fail:
            msg = {
                "anthropic": "Overloaded",
                "gemini": "The model is overloaded. Please try again later.",
                "openai": "The server is overloaded. Please try again later.",
            }[kind]
            return error(fail, msg)

        if kind == "anthropic":
            if op == "count":
                resp = JSONResponse({"input_tokens": 42})
            else:
                resp = anthropic_answer(name, body, body.get("stream") is True)
            resp.headers["request-id"] = "req_standin01"
        elif kind == "gemini":
            resp = gemini_answer(name, model, body, stream)
        else:
            resp = openai_answer(name, body, body.get("stream") is True)
        resp.headers["x-served-by"] = name
        return resp

    routes = [
        Route("/requests", requests_view, methods=["GET", "DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/{path:path}", handle, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("anthropic", "gemini", "openai"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default="test-key", help="the credential the stand-in requires")
    parser.add_argument("--name", default=None, help="echoed in answers (default: the kind)")
    parser.add_argument("--fail", type=int, default=None, metavar="STATUS", help="answer every request with STATUS")
    parser.add_argument("--models", default="", help="comma-separated: other models get 404 (default: any)")
    args = parser.parse_args()

    models = {m for m in args.models.split(",") if m} or None
    app = build(args.kind, args.key, args.name or args.kind, args.fail, models)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.02)
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await task

    asyncio.run(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
