// Server-Sent Events over fetch(): unlike EventSource it can send an Authorization header, and it resumes
// with Last-Event-ID after a dropped connection, as EventSource would.
"use strict";

window.EvoSSE = (() => {
  const RETRY_MS = 2000; // the spec's usual default; the server may change it with a "retry:" field
  const MAX_BACKOFF_MS = 30000;

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** Turns text/event-stream chunks into {type, data, id} events, following the WHATWG parsing rules. */
  class EventStreamParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.data = [];
      this.type = "";
      this.lastEventId = null; // survives reconnects: it is what Last-Event-ID sends
      this.retryMs = null;
    }

    push(text) {
      this.buffer += text;
      let start = 0;
      for (;;) {
        const match = /\r\n|\r|\n/g;
        match.lastIndex = start;
        const found = match.exec(this.buffer);
        // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
        if (!found || (found[0] === "\r" && found.index === this.buffer.length - 1)) break;
        this.line(this.buffer.slice(start, found.index));
        start = found.index + found[0].length;
      }
      this.buffer = this.buffer.slice(start);
    }

    line(line) {
      if (line === "") {
        this.dispatch();
        return;
      }
      if (line.startsWith(":")) return; // a comment: servers send them as keep-alives
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.type = value;
      else if (field === "data") this.data.push(value);
      else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    }

    dispatch() {
      if (this.data.length > 0) {
        this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.data = [];
      this.type = "";
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  async function responseMessage(response) {
    try {
      const body = await response.json();
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
    } catch {
      return response.statusText || `HTTP ${response.status}`;
    }
  }

  /**
   * Follows an event stream until `isFinished()` says so or `signal` aborts, reconnecting with backoff.
   *
   * options: headers() -> extra request headers (the token); onEvent({type, data, id});
   * onState("connecting" | "open" | "reconnecting" | "closed" | "error", detail);
   * isFinished() -> true once a final event arrived; onUnauthorized() -> a promise settled when a new token
   * may be tried; signal: an AbortSignal.
   */
  async function follow(url, options) {
    const { signal } = options;
    const parser = new EventStreamParser(options.onEvent);
    let failures = 0;
    while (!signal.aborted) {
      try {
        const headers = { Accept: "text/event-stream", ...options.headers() };
        if (parser.lastEventId !== null) headers["Last-Event-ID"] = parser.lastEventId;
        options.onState(failures ? "reconnecting" : "connecting");
        const response = await fetch(url, { headers, signal, cache: "no-store" });
        if (response.status === 204) break; // the spec's way for a server to say "do not reconnect"
        if (!response.ok) throw new HttpError(response.status, await responseMessage(response));
        options.onState("open");
        failures = 0;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
          if (options.isFinished()) {
            reader.cancel().catch(() => {});
            break;
          }
        }
        parser.dispatch(); // a final event without its blank line is still an event
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof HttpError && error.status === 401) {
          options.onState("error", "the server wants an API token");
          await options.onUnauthorized();
          continue;
        }
        if (error instanceof HttpError && error.status >= 400 && error.status < 500) {
          options.onState("error", error.message);
          return; // the request itself is wrong (e.g. the experiment is gone): retrying cannot help
        }
        failures += 1;
      }
      if (options.isFinished() || signal.aborted) break;
      const base = parser.retryMs ?? RETRY_MS;
      options.onState("reconnecting");
      await sleep(Math.min(base * 2 ** Math.max(failures - 1, 0), MAX_BACKOFF_MS), signal);
    }
    if (!signal.aborted) options.onState("closed");
  }

  return { follow, EventStreamParser, HttpError };
})();
