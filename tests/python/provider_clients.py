#!/usr/bin/env python3
"""The official provider SDKs (`openai`, `anthropic`, `google-genai`) pointed at
the gateway (or straight at tests/python/provider_server.py): runs the CASEs
asked and prints ONE final JSON line {"case": result, ...} for
tests/tests/providers.rs to assert on.

    provider_clients.py openai    --base-url URL --model M --key K CASE...
        chat stream stream-no-usage tools stream-tools image
    provider_clients.py anthropic --base-url URL --model M --key K CASE...
        messages stream tools stream-tools count_tokens not-found
    provider_clients.py gemini    --base-url URL --model M --key K CASE...
        chat stream tools

--base-url: openai → the URL ending in /v1; anthropic → the root (the SDK
adds /v1/messages); gemini → the root (the SDK adds /v1beta/models/...).
A case that raises records {"error": {"status", "type", "message"}} instead
of its result. Exits non-zero only on a usage error.
"""

import argparse
import json
import sys

PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "the city"}},
    "required": ["city"],
}
QUESTION = "What is the weather in Paris?"
TOOL_RESULT = "sunny, 21C"


def error_record(e: Exception) -> dict:
    """{"status", "type", "message"} of an SDK exception."""
    status = getattr(e, "status_code", None) or getattr(e, "code", None)
    if not isinstance(status, int):
        status = None
    body = getattr(e, "body", None)
    if body is None:
        body = getattr(e, "details", None)
    inner = body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        inner = body["error"]
    etype = None
    message = str(e)
    if isinstance(inner, dict):
        etype = inner.get("type") or inner.get("status")
        message = inner.get("message") or message
    etype = etype or getattr(e, "type", None) or getattr(e, "status", None) or type(e).__name__
    return {"status": status, "type": etype, "message": message}


# -------------------------------------------------------------------- openai


def openai_cases(args) -> dict:
    from openai import OpenAI

    client = OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=20)
    model = args.model
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER_SCHEMA,
            },
        }
    ]

    def usage(u) -> dict | None:
        if u is None:
            return None
        return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}

    def chat():
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])
        return {
            "text": r.choices[0].message.content,
            "finish_reason": r.choices[0].finish_reason,
            "usage": usage(r.usage),
            "model": r.model,
            "id": r.id,
            "id_ok": r.id.startswith("chatcmpl"),
            "object": r.object,
        }

    def streamed(include_usage: bool):
        extra = {"stream_options": {"include_usage": True}} if include_usage else {}
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], stream=True, **extra
        )
        text, finish, chunks, got_usage, usage_choices, deltas = "", None, 0, None, None, 0
        for c in stream:
            chunks += 1
            if c.usage is not None:
                got_usage = usage(c.usage)
                usage_choices = len(c.choices)
            for ch in c.choices:
                if ch.delta and ch.delta.content:
                    text += ch.delta.content
                    deltas += 1
                if ch.finish_reason:
                    finish = ch.finish_reason
        return {
            "text": text,
            "finish_reason": finish,
            "chunks": chunks,
            "content_deltas": deltas,
            "usage": got_usage,
            "usage_chunk_choices": usage_choices,
        }

    def tools_case():
        messages = [{"role": "user", "content": QUESTION}]
        r = client.chat.completions.create(model=model, messages=messages, tools=tools)
        msg = r.choices[0].message
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)}
            for c in msg.tool_calls or []
        ]
        out = {"tool_calls": calls, "finish_reason": r.choices[0].finish_reason, "usage": usage(r.usage)}
        messages.append(
            {
                "role": "assistant",
                "content": msg.content,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
                    for c in msg.tool_calls or []
                ],
            }
        )
        for c in msg.tool_calls or []:
            messages.append({"role": "tool", "tool_call_id": c.id, "content": TOOL_RESULT})
        r2 = client.chat.completions.create(model=model, messages=messages, tools=tools)
        out["final_text"] = r2.choices[0].message.content
        out["final_finish_reason"] = r2.choices[0].finish_reason
        return out

    def stream_tools():
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": QUESTION}], tools=tools, stream=True
        )
        calls: dict[int, dict] = {}
        finish, chunks = None, 0
        for c in stream:
            chunks += 1
            for ch in c.choices:
                for tc in ch.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function and tc.function.name:
                        slot["name"] += tc.function.name
                    if tc.function and tc.function.arguments:
                        slot["arguments"] += tc.function.arguments
                if ch.finish_reason:
                    finish = ch.finish_reason
        out = []
        for i in sorted(calls):
            slot = calls[i]
            out.append({"id": slot["id"], "name": slot["name"], "arguments": json.loads(slot["arguments"] or "null")})
        return {"tool_calls": out, "finish_reason": finish, "chunks": chunks}

    def image():
        r = client.chat.completions.create(
            model=model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1X1}"}},
                    ],
                }
            ],
        )
        return {"text": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason}

    return {
        "chat": chat,
        "stream": lambda: streamed(True),
        "stream-no-usage": lambda: streamed(False),
        "tools": tools_case,
        "stream-tools": stream_tools,
        "image": image,
    }


# ----------------------------------------------------------------- anthropic


def anthropic_cases(args) -> dict:
    from anthropic import Anthropic

    client = Anthropic(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=20)
    model = args.model
    tools = [{"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER_SCHEMA}]

    def usage(u) -> dict:
        return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}

    def text_of(msg) -> str:
        return "".join(b.text for b in msg.content if b.type == "text")

    def tool_uses(msg) -> list:
        return [{"id": b.id, "name": b.name, "input": b.input} for b in msg.content if b.type == "tool_use"]

    def messages():
        r = client.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hello"}])
        return {
            "text": text_of(r),
            "stop_reason": r.stop_reason,
            "usage": usage(r.usage),
            "model": r.model,
            "id": r.id,
            "id_ok": r.id.startswith("msg_"),
            "role": r.role,
            "type": r.type,
        }

    def stream():
        events, text_events = [], 0
        with client.messages.stream(
            model=model, max_tokens=64, messages=[{"role": "user", "content": "hello"}]
        ) as s:
            for ev in s:
                events.append(ev.type)
                if ev.type == "text":
                    text_events += 1
            final = s.get_final_message()
        return {
            "text": text_of(final),
            "stop_reason": final.stop_reason,
            "usage": usage(final.usage),
            "model": final.model,
            "id_ok": final.id.startswith("msg_"),
            "text_events": text_events,
            "events": sorted(set(events)),
        }

    def tools_case():
        msgs = [{"role": "user", "content": QUESTION}]
        r = client.messages.create(model=model, max_tokens=64, messages=msgs, tools=tools)
        uses = tool_uses(r)
        out = {"tool_use": uses[0] if uses else None, "tool_uses": len(uses), "stop_reason": r.stop_reason}
        msgs.append({"role": "assistant", "content": [{"type": "tool_use", **u} for u in uses]})
        msgs.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": u["id"], "content": TOOL_RESULT} for u in uses],
            }
        )
        r2 = client.messages.create(model=model, max_tokens=64, messages=msgs, tools=tools)
        out["final_text"] = text_of(r2)
        out["final_stop_reason"] = r2.stop_reason
        return out

    def stream_tools():
        json_events = 0
        with client.messages.stream(
            model=model, max_tokens=64, messages=[{"role": "user", "content": QUESTION}], tools=tools
        ) as s:
            for ev in s:
                if ev.type == "input_json":
                    json_events += 1
            final = s.get_final_message()
        uses = tool_uses(final)
        return {
            "tool_use": uses[0] if uses else None,
            "tool_uses": len(uses),
            "stop_reason": final.stop_reason,
            "usage": usage(final.usage),
            "input_json_events": json_events,
        }

    def count_tokens():
        r = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hello"}])
        return {"input_tokens": r.input_tokens}

    def not_found():
        r = client.messages.create(
            model="no-such-model-anywhere", max_tokens=16, messages=[{"role": "user", "content": "hello"}]
        )
        return {"unexpected": text_of(r)}

    return {
        "messages": messages,
        "stream": stream,
        "tools": tools_case,
        "stream-tools": stream_tools,
        "count_tokens": count_tokens,
        "not-found": not_found,
    }


# -------------------------------------------------------------------- gemini


def gemini_cases(args) -> dict:
    from google import genai
    from google.genai import types

    client = genai.Client(
        vertexai=False,
        api_key=args.key,
        http_options=types.HttpOptions(base_url=args.base_url, api_version="v1beta", timeout=20_000),
    )
    model = args.model
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather", description="The weather in a city", parameters_json_schema=WEATHER_SCHEMA
            )
        ]
    )
    no_afc = types.AutomaticFunctionCallingConfig(disable=True)

    def usage(u) -> dict | None:
        if u is None:
            return None
        return {
            "prompt_token_count": u.prompt_token_count,
            "candidates_token_count": u.candidates_token_count,
            "total_token_count": u.total_token_count,
        }

    def finish(r):
        c = r.candidates[0] if r.candidates else None
        return c.finish_reason.value if c is not None and c.finish_reason is not None else None

    def chat():
        r = client.models.generate_content(model=model, contents="hello")
        return {"text": r.text, "finish_reason": finish(r), "usage": usage(r.usage_metadata), "model_version": r.model_version}

    def stream():
        text, chunks, last_finish, last_usage = "", 0, None, None
        for r in client.models.generate_content_stream(model=model, contents="hello"):
            chunks += 1
            text += r.text or ""
            last_finish = finish(r) or last_finish
            last_usage = usage(r.usage_metadata) or last_usage
        return {"text": text, "chunks": chunks, "finish_reason": last_finish, "usage": last_usage}

    def tools_case():
        config = types.GenerateContentConfig(tools=[tool], automatic_function_calling=no_afc)
        contents = [types.Content(role="user", parts=[types.Part(text=QUESTION)])]
        r = client.models.generate_content(model=model, contents=contents, config=config)
        calls = [{"name": c.name, "args": c.args} for c in r.function_calls or []]
        out = {"function_calls": calls, "finish_reason": finish(r), "usage": usage(r.usage_metadata)}
        contents.append(r.candidates[0].content)
        contents.append(
            types.Content(
                role="user",
                parts=[types.Part.from_function_response(name=c["name"], response={"result": TOOL_RESULT}) for c in calls],
            )
        )
        r2 = client.models.generate_content(model=model, contents=contents, config=config)
        out["final_text"] = r2.text
        out["final_finish_reason"] = finish(r2)
        return out

    return {"chat": chat, "stream": stream, "tools": tools_case}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdk", choices=("openai", "anthropic", "gemini"))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--key", default="test-key")
    parser.add_argument("cases", nargs="+", metavar="CASE")
    args = parser.parse_args()

    cases = {"openai": openai_cases, "anthropic": anthropic_cases, "gemini": gemini_cases}[args.sdk](args)
    unknown = [c for c in args.cases if c not in cases]
    if unknown:
        parser.error(f"unknown case(s) for {args.sdk}: {', '.join(unknown)} (known: {', '.join(cases)})")

    results = {}
    for case in args.cases:
        try:
            results[case] = cases[case]()
        except Exception as e:  # noqa: BLE001 — every failure is a result
            results[case] = {"error": error_record(e)}
    print(json.dumps(results, default=str), flush=True)


if __name__ == "__main__":
    sys.exit(main())
