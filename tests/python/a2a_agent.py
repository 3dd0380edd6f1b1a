#!/usr/bin/env python3
"""A2A test agent built with the official a2a-sdk (1.x).

Serves A2A 1.0 JSON-RPC (SendMessage / SendStreamingMessage, header
`A2A-Version: 1.0`) and, through the SDK's v0.3 compatibility layer, A2A 0.3
JSON-RPC (message/send, message/stream) on the same endpoint.

Usage:
    a2a_agent.py --port PORT [--version both|1.0|0.3] [--base-url URL]
                 [--name NAME] [--rpc-path /] [--root PATH] [--signed]
                 [--grpc-url URL]
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
    task...     One Task event, already COMPLETED, carrying its artifact "42"
                (no updates: streamed, the Task is the only event).
    replace...  Task; WORKING; artifact "answer" as "The answer" (append
                false), replaced by "The answer is" (append false), then
                " 42" appended (lastChunk); COMPLETED: "The answer is 42".
    interleave... Task; WORKING; artifact "alpha" "alpha ", artifact "beta"
                " and beta" (lastChunk), then "omega" appended to "alpha"
                (lastChunk); COMPLETED: "alpha omega and beta".
    rewrite...  Task; WORKING; artifact "answer" "first draft", replaced by
                "second draft" (lastChunk); COMPLETED: "second draft", which
                takes back text a stream has sent.
    working...  Task; WORKING with agent message "still thinking"; execute()
                returns without a final state.
    otherwise   Task; artifact "echo: <text>" (name "echo"); COMPLETED.

Hand-made answers (not from the SDK: shapes it does not produce), in the
generation the JSON-RPC method names (SendMessage/SendStreamingMessage: 1.0
spellings; message/send, message/stream: 0.3 kinds and states):
    multiline...  Streamed: events whose JSON spans several `data:` lines,
                with CRLF, CR and LF line ends, comments, `event:`/`id:`
                fields, one line cut across two writes; the artifact says
                "multi-line " then appends "answer"; COMPLETED. Not streamed:
                the completed task with "multi-line answer".
    nullerror...  Every JSON-RPC answer carries `"error": null` next to its
                result; the artifact says "no error here"; COMPLETED.
    submitted...  The task stays SUBMITTED (status message "queued"): the
                whole answer is that task; the stream sends it and a
                status update to an unknown state, then ends.

contextId: when (and only when) the client's message carried a contextId,
" [context <id>]" is appended to the echo text (default and message cases)
and to the last stream chunk ("chunk 3 [context <id>]"). fail/input texts are
never changed.

--root PATH serves every route below PATH (`/tock/.well-known/...`,
`/tock<rpc-path>`), like an agent mounted below a path of its server.

--signed adds a `signatures` array (plausible JWS-shaped content, not a real
signature) to the card.

--grpc-url URL adds a GRPC interface at URL before the JSON-RPC one of each
advertised generation: the 0.3 fields then name it as the main interface
(`url`, `preferredTransport: GRPC`), the JSON-RPC one as additional.
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
from a2a.helpers import (
    new_task_from_user_message,
    new_text_artifact,
    new_text_message,
    new_text_part,
)
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
    TaskState,
)

CLIENT_CONTEXT_KEY = 'agentroute_client_context_id'
STREAM_CHUNKS = ['chunk 1 ', 'chunk 2 ', 'chunk 3']
STREAM_DELAY = 0.15  # overridden by --stream-delay
# Artifact updates by the first word of the user text:
# (artifactId, text, append, lastChunk).
ARTIFACT_SCRIPTS = {
    'replace': [
        ('answer', 'The answer', False, False),
        ('answer', 'The answer is', False, False),
        ('answer', ' 42', True, True),
    ],
    'interleave': [
        ('alpha', 'alpha ', False, False),
        ('beta', ' and beta', False, True),
        ('alpha', 'omega', True, True),
    ],
    'rewrite': [
        ('answer', 'first draft', False, False),
        ('answer', 'second draft', False, True),
    ],
}


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

        if text.startswith('task') and context.current_task is None:
            task = new_task_from_user_message(context.message)
            task.status.state = TaskState.TASK_STATE_COMPLETED
            task.artifacts.append(new_text_artifact('answer', '42', artifact_id='answer'))
            await event_queue.enqueue_event(task)
            return

        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)

        updates = ARTIFACT_SCRIPTS.get(text.split(' ', 1)[0])
        if updates is not None:
            await updater.start_work()
            for artifact_id, chunk, append, last in updates:
                await asyncio.sleep(self.stream_delay / 3)
                await updater.add_artifact(
                    [new_text_part(chunk)],
                    artifact_id=artifact_id,
                    name=artifact_id,
                    append=append,
                    last_chunk=last,
                )
            await updater.complete()
            return
        if text.startswith('working'):
            await updater.start_work(
                updater.new_agent_message([new_text_part('still thinking')])
            )
            return

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


def build_card(url: str, name: str, version: str, signed: bool, grpc_url: str | None = None) -> AgentCard:
    interfaces = []
    # A gRPC interface first makes it the 0.3 card's main one (url,
    # preferredTransport GRPC), as the SDK publishes such an agent.
    for v in ('1.0', '0.3'):
        if version in ('both', v):
            if grpc_url:
                interfaces.append(AgentInterface(url=grpc_url, protocol_binding='GRPC', protocol_version=v))
            interfaces.append(AgentInterface(url=url, protocol_binding='JSONRPC', protocol_version=v))
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


# ---------------------------------------------------------------- hand-made

V1_STATES = {'submitted': 'TASK_STATE_SUBMITTED', 'working': 'TASK_STATE_WORKING',
             'completed': 'TASK_STATE_COMPLETED', 'unknown': 'TASK_STATE_UNSPECIFIED'}


class Spelling:
    """A2A results in one generation's spelling: 1.0 wraps them, 0.3 tags them."""

    def __init__(self, v1: bool) -> None:
        self.v1 = v1

    def part(self, text):
        return {'text': text} if self.v1 else {'kind': 'text', 'text': text}

    def status(self, state, message=None):
        s = {'state': V1_STATES[state] if self.v1 else state}
        if message is not None:
            m = {'messageId': 'status-1', 'role': 'ROLE_AGENT' if self.v1 else 'agent',
                 'parts': [self.part(message)]}
            if not self.v1:
                m['kind'] = 'message'
            s['message'] = m
        return s

    def wrap(self, kind, body):
        if self.v1:
            key = {'task': 'task', 'status-update': 'statusUpdate',
                   'artifact-update': 'artifactUpdate'}[kind]
            return {key: body}
        return {'kind': kind, **body}

    def task(self, state, artifacts=(), message=None):
        return self.wrap('task', {
            'id': 'task-raw', 'contextId': 'ctx-raw', 'status': self.status(state, message),
            'artifacts': [{'artifactId': 'answer', 'parts': [self.part(t)]} for t in artifacts],
        })

    def artifact(self, text, append, last):
        return self.wrap('artifact-update', {
            'taskId': 'task-raw', 'contextId': 'ctx-raw',
            'artifact': {'artifactId': 'answer', 'parts': [self.part(text)]},
            'append': append, 'lastChunk': last,
        })

    def update(self, state, final):
        body = {'taskId': 'task-raw', 'contextId': 'ctx-raw', 'status': self.status(state)}
        if not self.v1:
            body['final'] = final
        return self.wrap('status-update', body)


def rpc(result, rpc_id, null_error=False):
    answer = {'jsonrpc': '2.0', 'id': rpc_id, 'result': result}
    if null_error:
        answer['error'] = None
    return answer


def data_lines(answer, end):
    """One SSE event whose JSON spans one `data:` line per line of it."""
    text = json.dumps(answer, indent=1)
    return ''.join(f'data: {line}{end}' for line in text.split('\n')) + end


def hand_made(request: dict):
    """(streamed, body pieces) for the hand-made cases, or None."""
    method = request.get('method', '')
    stream = method in ('SendStreamingMessage', 'message/stream')
    v1 = method in ('SendMessage', 'SendStreamingMessage')
    parts = request.get('params', {}).get('message', {}).get('parts', [])
    text = '\n'.join(p.get('text', '') for p in parts)
    rpc_id = request.get('id')
    a = Spelling(v1)
    if text.startswith('multiline'):
        if not stream:
            return False, [json.dumps(rpc(a.task('completed', ['multi-line answer']), rpc_id))]
        first = data_lines(rpc(a.artifact('multi-line ', False, False), rpc_id), '\r')
        cut = len(first) // 2
        return True, [
            ': hand-made\r\n' + data_lines(rpc(a.task('submitted'), rpc_id), '\r\n'),
            first[:cut],
            first[cut:],
            'event: message\nid: 3\n: keep-alive\n'
            + data_lines(rpc(a.artifact('answer', True, True), rpc_id), '\n'),
            data_lines(rpc(a.update('completed', True), rpc_id), '\r\n'),
        ]
    if text.startswith('nullerror'):
        if not stream:
            return False, [json.dumps(rpc(a.task('completed', ['no error here']), rpc_id, True))]
        return True, [
            f'data: {json.dumps(rpc(r, rpc_id, True))}\n\n'
            for r in (a.task('submitted'), a.artifact('no error here', False, True),
                      a.update('completed', True))
        ]
    if text.startswith('submitted'):
        if not stream:
            return False, [json.dumps(rpc(a.task('submitted', message='queued'), rpc_id))]
        return True, [
            f'data: {json.dumps(rpc(r, rpc_id))}\n\n'
            for r in (a.task('submitted', message='queued'), a.update('unknown', False))
        ]
    return None


class HandMade:
    """Answers the hand-made cases on the JSON-RPC path itself; everything
    else goes to the SDK's app with the body it was sent."""

    def __init__(self, app, rpc_path: str, delay: float) -> None:
        self.app = app
        self.rpc_path = rpc_path
        self.delay = delay

    async def __call__(self, scope, receive, send):
        path = scope.get('path', '')
        root = scope.get('root_path', '')
        if root and path.startswith(root):
            path = path[len(root):]
        if scope['type'] != 'http' or scope['method'] != 'POST' or path != self.rpc_path:
            return await self.app(scope, receive, send)
        body = b''
        while True:
            message = await receive()
            body += message.get('body', b'')
            if not message.get('more_body'):
                break
        try:
            answer = hand_made(json.loads(body))
        except (ValueError, AttributeError):
            answer = None
        if answer is None:
            sent = False

            async def replay():
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {'type': 'http.request', 'body': body, 'more_body': False}

            return await self.app(scope, replay, send)
        streamed, pieces = answer
        content_type = b'text/event-stream' if streamed else b'application/json'
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', content_type)]})
        for piece in pieces:
            await send({'type': 'http.response.body', 'body': piece.encode(), 'more_body': True})
            if streamed:
                await asyncio.sleep(self.delay / 3)
        await send({'type': 'http.response.body', 'body': b'', 'more_body': False})


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
    ap.add_argument('--grpc-url', help='also advertise a GRPC interface at this URL, first '
                    '(no gRPC server listens there)')
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

    card = build_card(url, args.name, args.version, args.signed, args.grpc_url)
    app = build_app(card, rpc_path, args.version, args.stream_delay)
    app = HandMade(app, rpc_path, args.stream_delay)
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
