#!/usr/bin/env node
// A scriptable MCP client on the official TypeScript SDK (handshake era, Streamable HTTP or,
// with `--transport sse`, the 2024-11-05 HTTP+SSE transport), for Toolway's tests:
// `node clients/ts/client.mjs URL [--timeout SECONDS] [--transport streamable-http|sse] < script.json`.
// With `--transport sse`, URL is the GET stream (e.g. http://127.0.0.1:8080/sse).
//
// The script is a JSON array of steps; each step prints exactly one JSON line to stdout,
// `{"ok":true,"result":...}` or `{"ok":false,"error":{"code":...,"message":...,"data":...,"name":...}}`.
// Nothing else goes to stdout: diagnostics (and anything the SDK logs) go to stderr.
//
// Steps (see README.md beside this file for details):
//   {"op":"init","capabilities":{...},"clientInfo":{...},"elicitation":{...}|[...],
//    "sampling":{"text":"..."}|[...],"roots":[{"uri":...,"name":...}]}       first step only
//   {"op":"listTools"} {"op":"listPrompts"} {"op":"listResources"} {"op":"listResourceTemplates"}
//   {"op":"callTool","name":...,"arguments":{...},"progress":true}
//   {"op":"getPrompt","name":...,"arguments":{...}}   {"op":"readResource","uri":...}
//   {"op":"subscribe","uri":...}  {"op":"unsubscribe","uri":...}  {"op":"setLoggingLevel","level":...}
//   {"op":"complete","ref":{...},"argument":{...},"context":{...}}   {"op":"ping"}
//   {"op":"waitNotification","method":...,"params":{...},"timeoutMs":5000}
//   {"op":"listChanged","kind":"tools"|"prompts"|"resources","timeoutMs":5000}
//   {"op":"notifications"} {"op":"received"} {"op":"transportErrors"} {"op":"sleep","ms":...}
//   {"op":"sendRootsListChanged"} {"op":"serverInfo"} {"op":"close"}
//   {"op":"signal","path":...}  {"op":"waitSignal","path":...,"timeoutMs":5000}   (between two drivers)
// Any request step takes "timeoutMs" (default: the global timeout).
//
// Exit status: 0 when every step ran (failed steps included), 2 on bad usage or a bad script,
// 124 when the global timeout (default 60 s) expired, 1 on any other crash.

import { access, writeFile } from 'node:fs/promises';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    ErrorCode,
    ListRootsRequestSchema,
    McpError
} from '@modelcontextprotocol/sdk/types.js';

const EXIT_USAGE = 2;
const EXIT_TIMEOUT = 124;
const EXIT_CRASH = 1;
const CLOSE_TIMEOUT_MS = 5000;
const DEFAULT_WAIT_MS = 5000;
const MAX_PAGES = 1000;
const SIGNAL_POLL_MS = 20;
const TRANSPORTS = ['streamable-http', 'sse'];

// stdout carries step results only: whatever else calls console.log/info/debug goes to stderr.
for (const level of ['log', 'info', 'debug']) {
    console[level] = (...args) => console.error(...args);
}

function diag(message) {
    process.stderr.write(`ts-client: ${message}\n`);
}

function usage(message) {
    diag(message);
    diag('usage: node client.mjs URL [--timeout SECONDS] [--transport streamable-http|sse] < script.json');
    process.exit(EXIT_USAGE);
}

function parseArgs(argv) {
    let url;
    let timeoutS = 60;
    let transport = 'streamable-http';
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (arg === '--timeout' || arg.startsWith('--timeout=')) {
            const value = arg === '--timeout' ? argv[++i] : arg.slice('--timeout='.length);
            timeoutS = Number(value);
            if (!Number.isFinite(timeoutS) || timeoutS <= 0) usage(`bad --timeout: ${value}`);
        } else if (arg === '--transport' || arg.startsWith('--transport=')) {
            transport = arg === '--transport' ? argv[++i] : arg.slice('--transport='.length);
            if (!TRANSPORTS.includes(transport)) usage(`bad --transport: ${transport} (one of ${TRANSPORTS.join(', ')})`);
        } else if (arg.startsWith('--')) {
            usage(`unknown option: ${arg}`);
        } else if (url === undefined) {
            url = arg;
        } else {
            usage(`unexpected argument: ${arg}`);
        }
    }
    if (url === undefined) usage('missing URL');
    try {
        return { url: new URL(url), timeoutMs: Math.round(timeoutS * 1000), transport };
    } catch {
        usage(`bad URL: ${url}`);
    }
}

async function readScript() {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString('utf8');
    let steps;
    try {
        steps = JSON.parse(text);
    } catch (error) {
        usage(`script is not JSON: ${error.message}`);
    }
    if (!Array.isArray(steps)) usage('script must be a JSON array of steps');
    steps.forEach((step, index) => {
        if (step === null || typeof step !== 'object' || typeof step.op !== 'string') {
            usage(`step ${index} is not an object with a string "op"`);
        }
    });
    return steps;
}

function emit(line) {
    process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** The error as a step's `error` object. McpError's message loses the SDK's "MCP error N: " prefix. */
function errorObject(error) {
    if (error instanceof McpError) {
        const prefix = `MCP error ${error.code}: `;
        const message = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
        const out = { code: error.code, message, name: 'McpError' };
        if (error.data !== undefined) out.data = error.data;
        return out;
    }
    if (error instanceof Error) {
        // StreamableHTTPError's code is the HTTP status (-1 for an unexpected content type);
        // SseError's is the HTTP status of the failed GET (undefined when the connection broke).
        const code = typeof error.code === 'number' ? error.code : null;
        return { code, message: error.message, name: error.name };
    }
    return { code: null, message: String(error), name: typeof error };
}

class StepError extends Error {
    constructor(code, message, data) {
        super(message);
        this.code = code;
        this.data = data;
        this.name = 'StepError';
    }
}

/** A canned answer list: an object repeats forever, an array is served in order, then its last repeats. */
function answers(spec) {
    const list = Array.isArray(spec) ? spec : [spec];
    let next = 0;
    return () => list[Math.min(next++, list.length - 1)];
}

/** Resolve once `path` exists (another driver's "signal" step); StepError -32001 after `timeoutMs`. */
async function waitForFile(path, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        try {
            await access(path);
            return;
        } catch {
            if (Date.now() >= deadline) throw new StepError(ErrorCode.RequestTimeout, `no signal at ${path} within ${timeoutMs} ms`);
        }
        await new Promise(resolve => setTimeout(resolve, SIGNAL_POLL_MS));
    }
}

function matches(params, want) {
    if (want === undefined) return true;
    if (params === null || typeof params !== 'object') return false;
    return Object.entries(want).every(([key, value]) => JSON.stringify(params[key]) === JSON.stringify(value));
}

class Driver {
    constructor(url, timeoutMs, transportKind = 'streamable-http') {
        this.url = url;
        this.timeoutMs = timeoutMs;
        this.transportKind = transportKind;
        this.notifications = [];
        this.received = [];
        this.transportErrors = [];
        this.waiters = new Set();
        this.client = undefined;
        this.transport = undefined;
        this.connectError = undefined;
        this.closed = false;
    }

    async connect(init) {
        const capabilities = { ...(init.capabilities ?? {}) };
        if (init.elicitation !== undefined && capabilities.elicitation === undefined) capabilities.elicitation = {};
        if (init.sampling !== undefined && capabilities.sampling === undefined) capabilities.sampling = {};
        if (init.roots !== undefined && capabilities.roots === undefined) capabilities.roots = { listChanged: true };
        const clientInfo = init.clientInfo ?? { name: 'toolway-ts-client', version: '0.0.0' };
        const client = new Client(clientInfo, { capabilities });

        if (init.elicitation !== undefined) {
            const next = answers(init.elicitation);
            client.setRequestHandler(ElicitRequestSchema, async () => next());
        }
        if (init.sampling !== undefined) {
            const next = answers(init.sampling);
            client.setRequestHandler(CreateMessageRequestSchema, async () => {
                const answer = next();
                if (answer.result !== undefined) return answer.result;
                return {
                    role: 'assistant',
                    content: { type: 'text', text: answer.text ?? '' },
                    model: answer.model ?? 'toolway-ts-client',
                    stopReason: answer.stopReason ?? 'endTurn'
                };
            });
        }
        if (init.roots !== undefined) {
            const roots = init.roots;
            client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots }));
        }

        const transport =
            this.transportKind === 'sse' ? new SSEClientTransport(this.url) : new StreamableHTTPClientTransport(this.url);
        // Protocol.connect chains to callbacks already set, so this tap sees every message first,
        // progress notifications included (the SDK routes those to the request's onprogress only).
        transport.onmessage = message => this.tap(message);
        transport.onerror = error => {
            // Closing aborts the standalone GET (or SSE) stream, which the SDK reports as an error: not one.
            if (this.closed) return;
            diag(`transport error: ${error?.message ?? error}`);
            this.transportErrors.push(errorObject(error));
        };
        this.client = client;
        this.transport = transport;
        try {
            await client.connect(transport, { timeout: this.timeoutMs });
        } catch (error) {
            this.connectError = error;
            throw error;
        }
        return { ...this.facts(), clientCapabilities: capabilities };
    }

    /** The connection facts. Over SSE, `sessionId` is the endpoint's `session_id` and `endpoint` its URL. */
    facts() {
        const transport = this.transport;
        const client = this.client;
        const out = {};
        if (this.transportKind === 'sse') {
            // SSEClientTransport keeps both privately: the negotiated version and the POST endpoint.
            const endpoint = transport._endpoint;
            out.protocolVersion = transport._protocolVersion ?? null;
            out.sessionId = endpoint?.searchParams.get('session_id') ?? null;
            out.endpoint = endpoint?.href ?? null;
        } else {
            out.protocolVersion = transport.protocolVersion ?? null;
            out.sessionId = transport.sessionId ?? null;
        }
        out.serverInfo = client.getServerVersion() ?? null;
        out.capabilities = client.getServerCapabilities() ?? null;
        out.instructions = client.getInstructions() ?? null;
        return out;
    }

    tap(message) {
        if (message === null || typeof message !== 'object' || typeof message.method !== 'string') return;
        const entry = { method: message.method };
        if (message.params !== undefined) entry.params = message.params;
        if ('id' in message) {
            this.received.push({ id: message.id, ...entry });
            return;
        }
        this.notifications.push(entry);
        for (const waiter of this.waiters) waiter(entry);
    }

    waitFor(method, params, timeoutMs) {
        const found = this.notifications.find(n => n.method === method && matches(n.params, params));
        if (found) return Promise.resolve(found);
        return new Promise((resolve, reject) => {
            const waiter = entry => {
                if (entry.method !== method || !matches(entry.params, params)) return;
                clearTimeout(timer);
                this.waiters.delete(waiter);
                resolve(entry);
            };
            const timer = setTimeout(() => {
                this.waiters.delete(waiter);
                reject(new StepError(ErrorCode.RequestTimeout, `no ${method} notification within ${timeoutMs} ms`));
            }, timeoutMs);
            this.waiters.add(waiter);
        });
    }

    options(step) {
        return { timeout: step.timeoutMs ?? this.timeoutMs };
    }

    async listAll(method, key, step) {
        const items = [];
        let cursor = step.cursor;
        let pages = 0;
        do {
            const params = cursor === undefined ? undefined : { cursor };
            const page = await this.client[method](params, this.options(step));
            items.push(...(page[key] ?? []));
            pages += 1;
            cursor = page.nextCursor;
            if (step.allPages === false) break;
            if (pages >= MAX_PAGES) throw new StepError(null, `more than ${MAX_PAGES} pages of ${key}`);
        } while (cursor !== undefined && cursor !== null);
        const result = { [key]: items, pages };
        if (step.allPages === false && cursor !== undefined) result.nextCursor = cursor;
        return result;
    }

    async close() {
        if (this.closed || this.client === undefined) return;
        this.closed = true;
        // Only Streamable HTTP has a session to DELETE; an SSE session ends with its stream.
        const streamable = this.transport instanceof StreamableHTTPClientTransport;
        if (streamable && this.transport.sessionId !== undefined && this.connectError === undefined) {
            let timer;
            const deadline = new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error('DELETE timed out')), CLOSE_TIMEOUT_MS);
            });
            try {
                await Promise.race([this.transport.terminateSession(), deadline]);
            } catch (error) {
                diag(`terminating the session failed: ${error?.message ?? error}`);
            } finally {
                clearTimeout(timer);
            }
        }
        await this.client.close();
    }

    /** Run one step; return its output line (without `ok`), or throw for an ok:false line. */
    async run(step, out) {
        const op = step.op;
        // Local ops first: they need no connection.
        switch (op) {
            case 'notifications':
                return this.notifications;
            case 'received':
                return this.received;
            case 'transportErrors':
                return this.transportErrors;
            case 'sleep':
                await new Promise(resolve => setTimeout(resolve, step.ms ?? 0));
                return {};
            case 'waitNotification':
                if (typeof step.method !== 'string') throw new StepError(ErrorCode.InvalidParams, 'waitNotification needs "method"');
                return this.waitFor(step.method, step.params, step.timeoutMs ?? DEFAULT_WAIT_MS);
            case 'listChanged':
                return this.waitFor(`notifications/${step.kind ?? 'tools'}/list_changed`, undefined, step.timeoutMs ?? DEFAULT_WAIT_MS);
            case 'signal':
                if (typeof step.path !== 'string') throw new StepError(ErrorCode.InvalidParams, 'signal needs "path"');
                await writeFile(step.path, '');
                return {};
            case 'waitSignal':
                if (typeof step.path !== 'string') throw new StepError(ErrorCode.InvalidParams, 'waitSignal needs "path"');
                await waitForFile(step.path, step.timeoutMs ?? DEFAULT_WAIT_MS);
                return {};
            case 'init':
                throw new StepError(null, '"init" must be the first step');
        }
        if (this.connectError !== undefined) {
            const cause = errorObject(this.connectError);
            throw new StepError(cause.code, `not connected: ${cause.message}`);
        }
        if (this.closed) throw new StepError(null, 'the client was closed by an earlier "close" step');
        const client = this.client;
        switch (op) {
            case 'listTools':
                return this.listAll('listTools', 'tools', step);
            case 'listPrompts':
                return this.listAll('listPrompts', 'prompts', step);
            case 'listResources':
                return this.listAll('listResources', 'resources', step);
            case 'listResourceTemplates':
                return this.listAll('listResourceTemplates', 'resourceTemplates', step);
            case 'callTool': {
                const options = this.options(step);
                if (step.progress) {
                    out.progress = [];
                    options.onprogress = progress => out.progress.push(progress);
                }
                const params = { name: step.name, arguments: step.arguments ?? {} };
                if (step._meta !== undefined) params._meta = step._meta;
                return client.callTool(params, undefined, options);
            }
            case 'getPrompt':
                return client.getPrompt({ name: step.name, arguments: step.arguments ?? {} }, this.options(step));
            case 'readResource':
                return client.readResource({ uri: step.uri }, this.options(step));
            case 'subscribe':
                return client.subscribeResource({ uri: step.uri }, this.options(step));
            case 'unsubscribe':
                return client.unsubscribeResource({ uri: step.uri }, this.options(step));
            case 'setLoggingLevel':
                return client.setLoggingLevel(step.level, this.options(step));
            case 'complete': {
                const params = { ref: step.ref, argument: step.argument };
                if (step.context !== undefined) params.context = step.context;
                return client.complete(params, this.options(step));
            }
            case 'ping':
                return client.ping(this.options(step));
            case 'sendRootsListChanged':
                await client.sendRootsListChanged();
                return {};
            case 'serverInfo':
                return this.facts();
            case 'close':
                await this.close();
                return {};
            default:
                throw new StepError(ErrorCode.MethodNotFound, `unknown op: ${op}`);
        }
    }
}

async function main() {
    const { url, timeoutMs, transport } = parseArgs(process.argv.slice(2));
    const timer = setTimeout(() => {
        diag(`global timeout of ${timeoutMs} ms expired`);
        process.exit(EXIT_TIMEOUT);
    }, timeoutMs);
    const steps = await readScript();
    const driver = new Driver(url, timeoutMs, transport);

    let rest = steps;
    const init = steps.length > 0 && steps[0].op === 'init' ? steps[0] : undefined;
    if (init !== undefined) rest = steps.slice(1);
    try {
        const result = await driver.connect(init ?? {});
        if (init !== undefined) emit({ ok: true, result });
    } catch (error) {
        diag(`connecting to ${url} failed: ${error?.stack ?? error}`);
        if (init !== undefined) emit({ ok: false, error: errorObject(error) });
    }

    for (const step of rest) {
        const out = {};
        try {
            const result = await driver.run(step, out);
            emit({ ok: true, result: result ?? null, ...out });
        } catch (error) {
            emit({ ok: false, error: errorObject(error), ...out });
        }
    }

    await driver.close().catch(error => diag(`close failed: ${error?.message ?? error}`));
    clearTimeout(timer);
    // Open sockets (an SSE stream being torn down) must not hold the process; flush stdout first.
    process.stdout.write('', () => process.exit(0));
}

main().catch(error => {
    diag(`crashed: ${error?.stack ?? error}`);
    process.exit(EXIT_CRASH);
});
