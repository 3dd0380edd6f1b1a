#!/usr/bin/env python3
"""A2A test client built with the official a2a-sdk (1.x).

Usage:
    a2a_client.py --gateway URL_PREFIX --text TEXT [--stream]
                  [--version 1.0|0.3] [--context-id ID] [--task-id ID]
                  [--timeout SECONDS]

1. GETs URL_PREFIX + /.well-known/agent-card.json with the SDK's
   A2ACardResolver (the card as the gateway rewrote it).
2. Keeps only the card's JSONRPC interfaces of the wanted protocol version
   (--version 1.0 -> protocolVersion 1.x; 0.3 -> 0.x; default 1.0). A pure
   0.3 card (top-level url, no supportedInterfaces) is mapped by the SDK to an
   interface with protocolVersion "0.3.0".
3. Sends the message with the SDK client to THAT interface's URL (never to
   URL_PREFIX itself): 1.0 -> SendMessage / SendStreamingMessage with
   `A2A-Version: 1.0`; 0.3 -> message/send / message/stream with
   `A2A-Version: 0.3`.

Prints one JSON line and exits 0:
    {"card_url": <interface url used>, "text": <answer text>,
     "events": <number of SSE events received; 0 without --stream>,
     "state": <final task state, e.g. "TASK_STATE_COMPLETED", or "message"
               when the agent answered with a direct Message>,
     "task_id": <task id or null>, "context_id": <context id or null>}
"text" is the concatenation (no separator) of, in arrival order: the text
parts of artifact(-update)s, of a direct Message, and of status messages
(e.g. "failed on purpose"). For a non-streamed Task: its artifacts' text then
its status message text. User history is never included.
On any error prints `error: ...` (stderr and a JSON line {"error": ...} on
stdout) and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid

import httpx
from packaging.version import InvalidVersion, Version

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    AgentCard,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)


def _texts(parts) -> str:
    return ''.join(p.text for p in parts if p.HasField('text'))


def _major(v: str) -> int | None:
    if not v:
        return 0  # no version in the card means a legacy (0.3) interface
    try:
        return Version(v).major
    except InvalidVersion:
        return None


def pick_interfaces(card: AgentCard, version: str) -> AgentCard:
    want = 1 if version.startswith('1') else 0
    keep = [
        i for i in card.supported_interfaces
        if i.protocol_binding == 'JSONRPC' and _major(i.protocol_version) == want
    ]
    if not keep:
        have = [(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces]
        raise RuntimeError(f'card has no JSONRPC interface for version {version}; interfaces: {have}')
    filtered = AgentCard()
    filtered.CopyFrom(card)
    del filtered.supported_interfaces[:]
    filtered.supported_interfaces.extend(keep)
    return filtered


async def run(args) -> dict:
    async with httpx.AsyncClient(timeout=args.timeout) as http:
        card = await A2ACardResolver(http, args.gateway).get_agent_card()
        card = pick_interfaces(card, args.version)
        card_url = card.supported_interfaces[0].url

        config = ClientConfig(streaming=args.stream, httpx_client=http)
        client = ClientFactory(config).create(card)

        msg = Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text=args.text)],
        )
        if args.context_id:
            msg.context_id = args.context_id
        if args.task_id:
            msg.task_id = args.task_id

        text: list[str] = []
        events = 0
        state = None
        task_id = None
        context_id = None
        async for ev in client.send_message(SendMessageRequest(message=msg)):
            ev: StreamResponse
            if args.stream:
                events += 1
            if ev.HasField('message'):
                text.append(_texts(ev.message.parts))
                state = 'message'
                task_id = ev.message.task_id or None
                context_id = ev.message.context_id or None
            elif ev.HasField('task'):
                t = ev.task
                task_id, context_id = t.id, t.context_id
                state = TaskState.Name(t.status.state)
                if not args.stream:
                    for a in t.artifacts:
                        text.append(_texts(a.parts))
                    if t.status.HasField('message'):
                        text.append(_texts(t.status.message.parts))
            elif ev.HasField('status_update'):
                su = ev.status_update
                task_id, context_id = su.task_id, su.context_id
                state = TaskState.Name(su.status.state)
                if su.status.HasField('message'):
                    text.append(_texts(su.status.message.parts))
            elif ev.HasField('artifact_update'):
                au = ev.artifact_update
                task_id, context_id = au.task_id, au.context_id
                text.append(_texts(au.artifact.parts))
        await client.close()

    return {
        'card_url': card_url,
        'text': ''.join(text),
        'events': events,
        'state': state,
        'task_id': task_id,
        'context_id': context_id,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--gateway', required=True, help='URL prefix; card is fetched from PREFIX/.well-known/agent-card.json')
    ap.add_argument('--text', required=True)
    ap.add_argument('--stream', action='store_true', help='use SendStreamingMessage / message/stream')
    ap.add_argument('--version', choices=['1.0', '0.3'], default='1.0')
    ap.add_argument('--context-id', help='send this contextId in the message')
    ap.add_argument('--task-id', help='send this taskId in the message (follow-up to input-required)')
    ap.add_argument('--timeout', type=float, default=30.0)
    args = ap.parse_args()
    try:
        out = asyncio.run(run(args))
    except Exception as e:  # noqa: BLE001
        err = f'{type(e).__name__}: {e}'
        print(f'error: {err}', file=sys.stderr, flush=True)
        print(json.dumps({'error': err}), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
