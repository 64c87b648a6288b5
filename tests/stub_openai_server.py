"""A minimal OpenAI-compatible streaming server on 127.0.0.1 for fault injection in tests.

Real servers are tested in the vLLM CI stage (a real `vllm serve`); this one
exists to produce the failures a real server will not produce on demand:
HTTP 500, a malformed stream, a stall past the timeout, too few tokens,
several tokens per chunk, a usage block that disagrees with the stream, a /metrics page that is garbage or
missing. Its /metrics page (vLLM's names) counts what it really serves: requests in flight, a KV usage of 0.1
per request in flight, and prefix-cache queries and hits (a prompt it has seen before is a hit, every token).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that timed out and left: expected here
        pass


class StubServer:
    """mode: ok | multi | http500 | malformed | stall | short | single | usage_str | choices_obj | ids_str |
    crawl (after crawl_after requests, each waits 0.5 s before its first token) |
    keepalive | miscount (the stream carries one token fewer than its usage block counts).
    metrics: ok | garbage | missing (the /metrics page). Both /v1/completions (token ids) and /v1/chat/completions (text deltas) are served; a request with
    stream=false (the output check's) gets token 7 at every position with all its probability, the server that
    repeats one token whatever the prompt."""

    def __init__(self, mode: str = "ok", model: str = "tiny", crawl_after: int = 20, metrics: str = "ok",
                 per_event: int = 2) -> None:
        self.mode, self.model, self.metrics, self.per_event = mode, model, metrics, per_event
        self.in_flight = self.queries = self.hits = 0
        self.seen: set[tuple] = set()
        self.served, self.crawl_after, self.lock = 0, crawl_after, threading.Lock()
        self.prompt_lengths: list[int] = []  # every request's prompt tokens, in arrival order
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                kind = "application/json"
                body = json.dumps({"object": "list", "data": [{"id": server.model}]}).encode()
                if self.path == "/metrics":
                    if server.metrics == "missing":
                        self.send_error(404)
                        return
                    kind, body = "text/plain; version=0.0.4", server.metrics_page().encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                n = req["max_tokens"]
                if server.mode == "http500":
                    self.send_response(500)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"boom!")
                    return
                if req.get("stream") is False:  # the output check's request: one token, over and over, sure of it
                    top = [{"token_id:7": 0.0} for _ in range(n)] if req.get("logprobs") else None
                    body = json.dumps({"choices": [{"index": 0, "text": "x" * n, "logprobs": {
                        "tokens": ["token_id:7"] * n, "top_logprobs": top}}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()

                def send(obj):
                    self.wfile.write(f"data: {json.dumps(obj) if not isinstance(obj, str) else obj}\n\n".encode())
                    self.wfile.flush()

                chat = self.path.endswith("/chat/completions")
                prompt_tokens = len(req["messages"][0]["content"].split()) if chat else len(req["prompt"])
                odd = {"malformed": "{not json", "usage_str": {"choices": [], "usage": "lots"},
                       "choices_obj": {"choices": {"text": "x"}}, "ids_str": {"choices": [{"token_ids": "12"}]},
                       "usage_only": {"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n}}}
                if server.mode in odd:
                    send(odd[server.mode])
                    return
                if server.mode == "keepalive":  # comments forever, never a token: only a deadline ends it
                    try:
                        for _ in range(600):
                            self.wfile.write(b": ping\n\n")
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        pass  # the client gave up: what we want
                    return
                if server.mode == "stall":
                    time.sleep(3)
                with server.lock:
                    server.served += 1
                    served = server.served
                    server.prompt_lengths.append(prompt_tokens)
                    server.in_flight += 1
                    key = tuple(req["prompt"]) if not chat else None
                    server.queries += prompt_tokens
                    server.hits += prompt_tokens if key in server.seen else 0
                    server.seen.add(key)
                try:
                    self.stream(send, chat, served, n, prompt_tokens)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def stream(self, send, chat, served, n, prompt_tokens):
                if server.mode == "crawl" and served > server.crawl_after:  # slows to a crawl mid-sweep
                    time.sleep(0.5)
                produce = n - 1 if server.mode in ("short", "miscount") else n
                step = {"multi": server.per_event, "single": produce}.get(server.mode, 1)
                for i in range(0, produce, step):
                    k = min(step, produce - i)
                    if chat:
                        send({"choices": [{"index": 0, "delta": {"content": "x"}}]})
                    else:
                        send({"choices": [{"index": 0, "text": "x" * k, "token_ids": list(range(k))}]})
                    time.sleep(0.002)
                counted = produce + (server.mode == "miscount")
                send({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": counted}})
                send("[DONE]")

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def metrics_page(self) -> str:
        """Prometheus text as vLLM names it, or garbage."""
        if self.metrics == "garbage":
            return "<html><body>502 Bad Gateway</body></html>\n"
        with self.lock:
            running, queries, hits = self.in_flight, self.queries, self.hits
        label = f'{{model_name="{self.model}"}}'
        return "".join(f"# TYPE {name} {kind}\n{name}{'_total' if kind == 'counter' else ''}{label} {value}\n"
                       for name, kind, value in (
                           ("vllm:num_requests_running", "gauge", float(running)),
                           ("vllm:num_requests_waiting", "gauge", 0.0),
                           ("vllm:kv_cache_usage_perc", "gauge", min(1.0, 0.1 * running)),
                           ("vllm:prefix_cache_queries", "counter", float(queries)),
                           ("vllm:prefix_cache_hits", "counter", float(hits))))

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
