// Streamed generation over the three chat APIs, as text deltas.
import { request, readText, sseParser } from './api.js';

export const ENDPOINTS = [
  { id: 'v1/chat/completions', label: 'OpenAI chat completions' },
  { id: 'v1/messages', label: 'Anthropic messages' },
  { id: 'v1/responses', label: 'OpenAI responses' },
];

/** The request body for `endpoint` from a plain chat (messages: [{role, content, images?}]). */
export function chatBody(endpoint, { model, messages, system, temperature, maxTokens }) {
  const num = (v) => (v === '' || v === null || v === undefined || Number.isNaN(Number(v)) ? undefined : Number(v));
  if (endpoint === 'v1/messages') {
    return {
      model, stream: true, system: system || undefined, temperature: num(temperature),
      max_tokens: num(maxTokens) || 1024,
      messages: messages.map((m) => ({
        role: m.role,
        content: m.images?.length ? [...m.images.map((src) => ({
          type: 'image', source: { type: 'base64', media_type: src.slice(5, src.indexOf(';')), data: src.slice(src.indexOf(',') + 1) },
        })), { type: 'text', text: m.content }] : m.content,
      })),
    };
  }
  if (endpoint === 'v1/responses') {
    return {
      model, stream: true, instructions: system || undefined, temperature: num(temperature),
      max_output_tokens: num(maxTokens),
      input: messages.map((m) => ({ role: m.role, content: m.content })),
    };
  }
  const all = system ? [{ role: 'system', content: system }, ...messages] : messages;
  return {
    model, stream: true, temperature: num(temperature), max_tokens: num(maxTokens),
    stream_options: { include_usage: true },
    messages: all.map((m) => ({
      role: m.role,
      content: m.images?.length ? [{ type: 'text', text: m.content },
        ...m.images.map((src) => ({ type: 'image_url', image_url: { url: src } }))] : m.content,
    })),
  };
}

/** The text deltas in one parsed SSE payload of any of the three APIs. */
export function deltaOf(event) {
  const out = { content: '', reasoning: '', usage: null, timings: null, error: null };
  if (event.error) out.error = event.error.message || JSON.stringify(event.error);
  const delta = event.choices?.[0]?.delta;
  if (delta) {
    out.content = delta.content || '';
    out.reasoning = delta.reasoning_content || delta.reasoning || '';
  } else if (event.choices?.[0]?.text) {
    out.content = event.choices[0].text;
  }
  switch (event.type) {
    case 'content_block_delta':
      out.content = event.delta?.text || '';
      out.reasoning = event.delta?.thinking || '';
      break;
    case 'response.output_text.delta':
      out.content = event.delta || '';
      break;
    case 'response.reasoning_text.delta':
    case 'response.reasoning_summary_text.delta':
      out.reasoning = event.delta || '';
      break;
    case 'message_delta':
    case 'message_start':
      out.usage = event.usage || event.message?.usage || null;
      break;
    case 'response.completed':
      out.usage = event.response?.usage || null;
      break;
    case 'error':
      out.error = event.error?.message || 'error';
      break;
    default:
      break;
  }
  if (event.usage) out.usage = event.usage;
  if (event.timings) out.timings = event.timings;
  return out;
}

/**
 * POST a streamed generation; `onDelta(delta)` for every event, `onHeaders()`
 * when the response starts. Throws HTTPError / AbortError.
 */
export async function streamGeneration(endpoint, body, { signal, headers, onDelta, onHeaders }) {
  const response = await request('POST', endpoint, { json: body, signal, headers });
  if (onHeaders) onHeaders(response);
  const type = response.headers.get('content-type') || '';
  if (!type.includes('event-stream')) {
    // A server that ignored stream: true answers with one JSON document.
    const doc = JSON.parse(await response.text());
    const content = doc.choices?.[0]?.message?.content
      ?? doc.content?.filter?.((c) => c.type === 'text').map((c) => c.text).join('') ?? doc.output_text ?? '';
    onDelta({ content, reasoning: doc.choices?.[0]?.message?.reasoning_content || '', usage: doc.usage, timings: doc.timings });
    return;
  }
  const parse = sseParser(({ data }) => {
    if (!data || data === '[DONE]') return;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return; // not JSON: ignore the line
    }
    onDelta(deltaOf(event));
  });
  await readText(response, parse);
}
