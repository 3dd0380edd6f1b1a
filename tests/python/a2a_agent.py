#!/usr/bin/env python3
"""A2A test agent built with the official a2a-sdk (1.x).

Serves A2A 1.0 JSON-RPC (SendMessage / SendStreamingMessage, header
`A2A-Version: 1.0`) and, through the SDK's v0.3 compatibility layer, A2A 0.3
JSON-RPC (message/send, message/stream) on the same endpoint.

Usage:
    a2a_agent.py --port PORT [--version both|1.0|0.3] [--base-url URL]
                 [--name NAME] [--rpc-path /] [--root PATH] [--signed]
                 [--stream-delay S] [--verbose]

Prints exactly one line `listening on 127.0.0.1:PORT` on stdout once it
accepts connections (--port 0 picks a free port; the real one is printed).

Routes:
    GET  /.well-known/agent-card.json   agent card (SDK route)
    GET  /.well-known/agent.json        same card (legacy path, added here;
                                        the SDK does not serve it itself)
    POST <rpc-path>                     JSON-RPC endpoint

--version (what the card advertises; default both):
    both  supportedInterfaces = [{url, JSONRPC, 1.0}, {url, JSONRPC, 0.3}]; the
          SDK also adds the 0.3 top-level fields (url, preferredTransport,
          protocolVersion, ...) to the served JSON. Both method sets answer.
    1.0   supportedInterfaces = [{url, JSONRPC, 1.0}] only; the v0.3 compat
          layer is switched off, so message/send etc. answer -32601.
    0.3   card served in pure 0.3 shape (url, preferredTransport,
          protocolVersion "0.3", no supportedInterfaces). The server still
          answers 1.0 methods too (the SDK cannot switch them off).

Behaviour, chosen by the text of the user message (all text parts joined
with "\n"; the prefix test is on that joined text, case-sensitive):
    stream...   Task; status-update WORKING; 3 artifact-update events on one
                artifact ("chunk 1 ", "chunk 2 ", "chunk 3", append=false for
                the first and true after, lastChunk=true on the third), each
                after --stream-delay s (0.15); then status-update COMPLETED.
    fail...     Task; status-update FAILED with agent message
                "failed on purpose".
    input...    Task; status-update INPUT_REQUIRED with agent message
                "please provide more input". A follow-up message carrying the
                same taskId is then answered like the default case (the task
                completes).
    crash...    Task; one artifact-update "partial "; then execute() raises
                RuntimeError("crashed on purpose") (the SDK marks the task
                FAILED / reports an error, see the notes).
    message...  No task: one direct agent Message "echo: <text>".
    headers...  Task completed with an artifact whose text is the JSON
                (sorted keys) of the HTTP request headers the agent received.
    otherwise   Task; artifact "echo: <text>" (name "echo"); COMPLETED.

contextId: when (and only when) the client's message carried a contextId,
" [context <id>]" is appended to the echo text (default and message cases)
and to the last stream chunk ("chunk 3 [context <id>]"). fail/input texts are
never changed.

--root PATH serves every route below PATH (`/tock/.well-known/...`,
`/tock<rpc-path>`), like an agent mounted below a path of its server.

--signed adds a `signatures` array (plausible JWS-shaped content, not a real
signature) to the card.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from a2a.compat.v0_3.conversions import to_compat_agent_card
from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.agent_execution.simple_request_context_builder import (
    SimpleRequestContextBuilder,
)
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes.agent_card_routes import create_agent_card_routes
from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentCardSignature,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    Role,
)

CLIENT_CONTEXT_KEY = 'agentroute_client_context_id'
STREAM_CHUNKS = ['chunk 1 ', 'chunk 2 ', 'chunk 3']
STREAM_DELAY = 0.15  # overridden by --stream-delay


class RecordingContextBuilder(SimpleRequestContextBuilder):
    """Remembers whether the client sent a contextId.

    RequestContext fills in a generated contextId when the client sent none,
    so the executor cannot tell afterwards; `context_id` here is the raw value
    from the request (None when absent).
    """

    async def build(self, context, params=None, task_id=None, context_id=None, task=None):
        context.state[CLIENT_CONTEXT_KEY] = context_id
        return await super().build(
            context=context, params=params, task_id=task_id, context_id=context_id, task=task
        )


def _user_text(context: RequestContext) -> str:
    msg = context.message
    if msg is None:
        return ''
    return '\n'.join(p.text for p in msg.parts if p.HasField('text'))


class TestAgentExecutor(AgentExecutor):
    def __init__(self, stream_delay: float = STREAM_DELAY) -> None:
        self.stream_delay = stream_delay

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = _user_text(context)
        client_ctx = context.call_context.state.get(CLIENT_CONTEXT_KEY)
        suffix = f' [context {client_ctx}]' if client_ctx else ''

        if text.startswith('message'):
            await event_queue.enqueue_event(
                new_text_message(
                    f'echo: {text}{suffix}',
                    context_id=context.context_id,
                    role=Role.ROLE_AGENT,
                )
            )
            return

        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)

        if text.startswith('stream'):
            await updater.start_work()
            artifact_id = 'stream-artifact'
            for i, chunk in enumerate(STREAM_CHUNKS):
                await asyncio.sleep(self.stream_delay)
                last = i == len(STREAM_CHUNKS) - 1
                await updater.add_artifact(
                    [new_text_part(chunk + (suffix if last else ''))],
                    artifact_id=artifact_id,
                    name='stream',
                    append=i > 0,
                    last_chunk=last,
                )
            await updater.complete()
        elif text.startswith('crash'):
            await updater.add_artifact([new_text_part('partial ')], name='crash')
            raise RuntimeError('crashed on purpose')
        elif text.startswith('fail'):
            await updater.failed(
                updater.new_agent_message([new_text_part('failed on purpose')])
            )
        elif text.startswith('input') and context.current_task is None:
            await updater.requires_input(
                updater.new_agent_message([new_text_part('please provide more input')])
            )
        elif text.startswith('headers'):
            headers = context.call_context.state.get('headers', {})
            await updater.add_artifact(
                [new_text_part(json.dumps(headers, sort_keys=True))], name='headers'
            )
            await updater.complete()
        else:
            await updater.add_artifact([new_text_part(f'echo: {text}{suffix}')], name='echo')
            await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            return
        await TaskUpdater(event_queue, task.id, task.context_id).cancel()


def _b64url(obj: dict) -> str:
    raw = json.dumps(obj, separators=(',', ':')).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b'=').decode()


def build_card(url: str, name: str, version: str, signed: bool) -> AgentCard:
    interfaces = []
    if version in ('both', '1.0'):
        interfaces.append(AgentInterface(url=url, protocol_binding='JSONRPC', protocol_version='1.0'))
    if version in ('both', '0.3'):
        interfaces.append(AgentInterface(url=url, protocol_binding='JSONRPC', protocol_version='0.3'))
    card = AgentCard(
        name=name,
        description=f'agentroute test agent ({name}): echo / stream / fail / input',
        version='1.0.0',
        supported_interfaces=interfaces,
        provider=AgentProvider(organization='agentroute tests', url='https://example.invalid/agentroute'),
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(
                id='echo',
                name='Echo',
                description='Echoes the text back; prefixes stream/fail/input/message change behaviour.',
                tags=['test', 'echo'],
                examples=['hello', 'stream please', 'fail now', 'input?'],
            )
        ],
    )
    if signed:
        card.signatures.append(
            AgentCardSignature(
                protected=_b64url({'alg': 'ES256', 'kid': 'agentroute-test-key', 'typ': 'JOSE'}),
                signature='MEUCIQDQ0pZtX2Ut2b8oXk7l5pVtD1a8pQ3Yw1Z3k0Jv1m8lZAIgY2FudC12ZXJpZnktdGhpcy1pdC1pcy1mYWtl',
                header={'kid': 'agentroute-test-key'},
            )
        )
    return card


def build_app(card: AgentCard, rpc_path: str, version: str, stream_delay: float = STREAM_DELAY) -> Starlette:
    handler = DefaultRequestHandler(
        agent_executor=TestAgentExecutor(stream_delay),
        task_store=InMemoryTaskStore(),
        agent_card=card,
        request_context_builder=RecordingContextBuilder(),
    )
    card_routes = create_agent_card_routes(card)
    if version == '0.3':
        # Serve the card in the pure 0.3 shape (no supportedInterfaces).
        compat = to_compat_agent_card(card).model_dump(mode='json', by_alias=True, exclude_none=True)

        async def _v03_card(request):
            return JSONResponse(compat)

        card_routes = [Route('/.well-known/agent-card.json', _v03_card, methods=['GET'])]
    legacy = [Route('/.well-known/agent.json', r.endpoint, methods=['GET']) for r in card_routes]
    rpc_routes = create_jsonrpc_routes(
        handler, rpc_url=rpc_path, enable_v0_3_compat=(version != '1.0')
    )
    return Starlette(routes=card_routes + legacy + rpc_routes)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--port', type=int, required=True, help='TCP port on 127.0.0.1 (0 = pick a free one)')
    ap.add_argument('--version', choices=['both', '1.0', '0.3'], default='both',
                    help='protocol version(s) advertised in the card (default both)')
    ap.add_argument('--base-url', help='interface URL put in the card, verbatim '
                    '(default http://127.0.0.1:PORT<rpc-path>)')
    ap.add_argument('--name', default='echo', help='agent name in the card (default echo)')
    ap.add_argument('--rpc-path', default='/', help='path of the JSON-RPC endpoint (default /)')
    ap.add_argument('--root', default='', help='serve every route below this path (default: at /)')
    ap.add_argument('--signed', action='store_true', help='add a signatures array to the card')
    ap.add_argument('--stream-delay', type=float, default=STREAM_DELAY,
                    help='seconds before each stream chunk (default 0.15; >15 makes the '
                    'SSE keep-alive comment ": ping - <time>" appear)')
    ap.add_argument('--verbose', action='store_true', help='uvicorn access log on stderr')
    args = ap.parse_args()

    rpc_path = args.rpc_path if args.rpc_path.startswith('/') else '/' + args.rpc_path
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', args.port))
    port = sock.getsockname()[1]
    root = '/' + args.root.strip('/') if args.root.strip('/') else ''
    url = args.base_url or f'http://127.0.0.1:{port}{root}{rpc_path}'

    card = build_card(url, args.name, args.version, args.signed)
    app = build_app(card, rpc_path, args.version, args.stream_delay)
    if root:
        app = Starlette(routes=[Mount(root, app=app)])
    config = uvicorn.Config(
        app,
        log_level='info' if args.verbose else 'warning',
        access_log=args.verbose,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    serve = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serve.done():
            return serve.result() or 1
        await asyncio.sleep(0.02)
    print(f'listening on 127.0.0.1:{port}', flush=True)
    await serve
    return 0


if __name__ == '__main__':
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(0)
