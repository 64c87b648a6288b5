"""Any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp's server, a vendor's endpoint), streamed.

The engine holds the server's settings and puts two parts together: an arrival process (arrivals.py: all at
once, Poisson, a trace, multi-turn sessions) deciding when each request is sent, and the streaming client
(openai_client.py) sending one and timing its stream on this machine's clock. The API key is read from an
environment variable and never written anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import torch

from bench.core.errors import BadInput
from bench.core.metrics import Repetition, tokens_per_event
from bench.core.params import Param
from bench.core.secrets import ENV_NAME, redact
from bench.engines import arrivals, output_check, server_metrics
from bench.engines.base import Engine, LoadOptions
from bench.engines.openai_client import ServerError, StreamingClient
from bench.engines.output_check import OutputCheck
from bench.hardware.devices import Device
from bench.spec.models import ModelSpec, resolve_model
from bench.spec.trace import check_trace

CLOSED_LOOP_ROUNDS = 4  # requests per user by default: enough for the load to hold between ramp-up and drain

# This engine's own workload keys (the loader merges them; --set reaches them like any key).
OPTIONS: dict[str, Param] = {
    "base_url": Param(str, "", "openai: server URL, e.g. http://127.0.0.1:8000/v1",
                      reload=True),
    "served_model": Param(str, "", "openai: the server's model name (default: the model name)", reload=True),
    "api_key_env": Param(str, "OPENAI_API_KEY", "openai: environment variable holding the API key"),
    "request_rate": Param(float, 0.0, "openai: Poisson arrivals per second (0: all requests at once); a list "
                          "sweeps the load, lowest first", minimum=0, matrix=True, plan="rate"),
    "concurrency": Param(int, 0, "openai: closed-loop users, each sending its next request the moment its last "
                         "finished, held for num_requests and min_seconds (0: off); with request_rate, arrivals wait "
                         "for a free user; a list sweeps the load, lowest first", minimum=0, maximum=100_000,
                         matrix=True, plan="users"),
    "server_metrics": Param(bool, True, "openai: read the server's /metrics during each case (false: not at all, "
                            "to see what reading it costs the server)", reload=True),
    "num_requests": Param(int, 0, "openai: requests per repetition (0: batch_size; with concurrency, "
                          f"{CLOSED_LOOP_ROUNDS} per user)", minimum=0),
    "timeout_s": Param(float, 120.0, "openai: deadline for a whole request (connect to last token)", minimum=0.1),
    "trace": Param(str, "", "openai: a request trace to replay (Mooncake JSONL: timestamp ms, input_length, "
                   "output_length, hash_ids); arrivals and lengths come from it", reload=True),
    "trace_speed": Param(float, 1.0, "openai: replay the trace this many times faster", minimum=1e-3),
    "trace_limit": Param(int, 0, "openai: replay at most this many of the trace's requests (0: all)", minimum=0),
    "turns": Param(int, 1, "openai: multi-turn sessions of this many turns, each prompt holding the previous "
                   "turns and the server's answers (prefix reuse across turns); batch_size sessions at once",
                   minimum=1, maximum=1000),
    "api": Param(str, "completions", "openai: endpoint, /v1/completions (token ids, exact lengths) or "
                 "/v1/chat/completions (text; the server counts the prompt)", choices=("completions", "chat"),
                 reload=True),
}


def metrics_url(base_url: str) -> str:
    """The server's Prometheus page: /metrics at the root its /v1 API hangs from."""
    root = base_url.rstrip("/")
    return (root.removesuffix("/v1") if root.endswith("/v1") else root) + "/metrics"


def is_local(base_url: str) -> bool:
    """Whether the server runs on this machine (its power is then in our telemetry)."""
    host = urlparse(base_url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.startswith("127.")


class OpenAIEngine(Engine):
    """Streaming completions against `base_url` (e.g. http://127.0.0.1:8000/v1)."""

    name = "openai"
    in_process = False
    on_local_device = False
    columns = ("tokens_per_event", *server_metrics.COLUMNS)

    def __init__(self) -> None:
        self.base_url = ""
        self.served_model = ""
        self.timeout_s = 60.0
        self.request_rate = 0.0
        self.seed = 0
        self.headers: dict[str, str] = {}
        self.client: StreamingClient | None = None
        self.spec: ModelSpec | None = None  # --model: a local checkpoint lets the output check compare
        self.device: Device | None = None
        self.dtype = torch.float32
        self.metrics: server_metrics.ServerMetrics | None = None
        self.metrics_problem = ""

    @classmethod
    def server_info(cls, params: dict[str, Any]) -> dict[str, Any] | None:
        """Which server, and whether it is local (its power is then in our telemetry)."""
        url = params["base_url"]
        return {"base_url": redact(url), "local": is_local(url), "api_key_env": params["api_key_env"]}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """A URL that can be one, and a key variable that is a variable's name (and set, if one was named)."""
        if params.get("quant", "none") != "none":
            raise BadInput("quant applies to engines that load the model here; a server quantizes its own weights")
        url = params.get("base_url") or ""
        if not url:
            raise BadInput("the openai engine needs --set base_url=http://HOST:PORT/v1")
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BadInput(f"base_url {redact(url)!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")
        name = params.get("api_key_env") or ""
        if not ENV_NAME.fullmatch(name):
            raise BadInput("api_key_env must name an environment variable (letters, digits, _), not hold the "
                           "key itself: export KEY_VAR=... and --set api_key_env=KEY_VAR")
        if name != OPTIONS["api_key_env"].default and name not in os.environ:
            raise BadInput(f"api_key_env: the environment variable {name} is not set")
        if params.get("trace"):

            if params.get("api") == "chat":
                raise BadInput("trace replay sends token ids: use the completions endpoint (api=completions)")
            check_trace(params["trace"], resolve_model(params["model"]).shape.max_position, params["trace_limit"])
        if params.get("turns", 1) > 1 and params.get("api") == "chat":
            raise BadInput("multi-turn sessions send token ids: use the completions endpoint (api=completions)")
        if params.get("turns", 1) > 1 and (params.get("trace") or params.get("request_rate", 0)):
            raise BadInput("turns is a closed-loop session mode: not with a trace or a request_rate")
        if params.get("concurrency", 0) and (params.get("trace") or params.get("turns", 1) > 1):
            raise BadInput("concurrency holds N users sending the case's prompts: not with a trace or turns")

    def _take(self, params: Mapping[str, Any], model: str) -> None:
        """The server settings, from the engine's own options."""
        self.base_url = params["base_url"].rstrip("/")
        self.served_model = params["served_model"] or model
        self.timeout_s = params["timeout_s"]
        self.request_rate = params["request_rate"]
        self.api = params.get("api", "completions")
        self.num_requests = params["num_requests"]
        self.trace, self.trace_speed, self.trace_limit = params["trace"], params["trace_speed"], params["trace_limit"]
        self.turns = params["turns"]
        self.concurrency = params["concurrency"]
        self.min_seconds = params.get("min_seconds", 0.0)
        key = os.environ.get(params["api_key_env"], "")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        if self.client is not None:  # a case's own deadline for its requests
            self.client.timeout_s = self.timeout_s

    def configure(self, options: dict[str, Any]) -> None:
        """Each case's load (request rate, request count, trace speed...): the server stays the same."""
        self._take(options, self.served_model)

    def load(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        """Check the server is up and serves the model; nothing is loaded here."""
        self._take(options.engine, model.name)
        self.spec, self.device, self.dtype = model, device, options.dtype
        self.seed = options.seed  # Poisson arrivals and later turns' prompts follow the run's seed
        self.vocab = model.shape.vocab
        if not self.base_url:
            raise ServerError("the openai engine needs --set base_url=http://HOST:PORT/v1")
        self.client = StreamingClient(self.base_url, self.served_model, self.timeout_s, self.api, self.headers)
        self.client.open()
        if options.engine.get("server_metrics", True):
            self.metrics = server_metrics.ServerMetrics(metrics_url(self.base_url), self.client.side_client())
            self.metrics.start()

    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any = None,
                 reuse_prefix: int = 0) -> Repetition:
        """The case's arrival process (bench/engines/arrivals.py) sending through the streaming client: the
        trace's arrivals and lengths, multi-turn sessions, or all prompts at once / at Poisson arrivals."""
        if self.metrics is not None:  # the edges of every call are read, so a case's counters bracket its window
            self.metrics.read_now()
        try:
            return self._send(input_ids, output_len)
        finally:
            if self.metrics is not None:
                self.metrics.read_now()

    def _send(self, input_ids: torch.Tensor, output_len: int) -> Repetition:
        send = self.client.request
        if self.trace:
            return Repetition(tuple(arrivals.replay(send, self.trace, self.trace_speed, self.trace_limit,
                                                    self.vocab)))
        prompts = [row.tolist() for row in input_ids]
        if self.turns > 1:
            return self._sessions(send, prompts, output_len)
        if self.concurrency:
            requests = self.num_requests or CLOSED_LOOP_ROUNDS * self.concurrency
            return Repetition(tuple(arrivals.closed_loop(send, prompts, output_len, self.concurrency, requests,
                                                         self.min_seconds, self.request_rate, self.seed)))
        if self.num_requests > len(prompts):
            prompts = [prompts[i % len(prompts)] for i in range(self.num_requests)]
        return Repetition(tuple(arrivals.at_once_or_poisson(send, prompts, output_len, self.request_rate, self.seed)))

    def _sessions(self, send: Any, prompts: list[list[int]], output_len: int) -> Repetition:
        """Multi-turn sessions; the note says TTFT of the first and the last turn."""
        def short(turn: int, got: int) -> None:  # a server that streams text only: the history cannot be exact
            raise ServerError(f"multi-turn needs the answer's token ids (turn {turn} streamed {got} of "
                              f"{output_len}); the server must return token ids")

        done = arrivals.sessions(send, prompts, output_len, self.turns, self.vocab, self.seed, short)
        firsts = sorted(1000 * s[0].ttft for s in done)
        lasts = sorted(1000 * s[-1].ttft for s in done)
        self.client.warnings.append(
            f"multi-turn: {self.turns} turns; TTFT of turn 1 {firsts[len(firsts) // 2]:.1f} ms, of turn "
            f"{self.turns} {lasts[len(lasts) // 2]:.1f} ms (median over {len(done)} sessions; its prompt holds "
            f"{self.turns - 1} earlier turns)")
        return Repetition(tuple(t for s in done for t in s))

    def check_output(self, input_ids: torch.Tensor, output_len: int, reuse_prefix: int = 0) -> OutputCheck:
        """The server once more with each token's top log-probabilities (vLLM's server gives them), against the
        checkpoint --model names, where it is a local directory."""
        watch = output_check.Stopwatch()
        if self.spec is None or self.spec.weights != "pretrained":
            return OutputCheck.skipped("the server's weights are not local (--model DIR of the same checkpoint "
                                       "lets the check compare)")
        if self.api == "chat":
            return OutputCheck.skipped("the chat endpoint sends text: the answer's positions cannot be replayed")
        rows = [row.tolist() for row in input_ids[:output_check.CHECK_MAX_ROWS]]
        answers = [self.client.top_logprobs(r, output_len, output_check.TOP_LOGPROBS) for r in rows]
        return output_check.check_top("openai", self.spec, self.device, self.dtype, rows, answers, watch)

    def case_columns(self, reps: list[Repetition]) -> dict[str, Any]:
        """Tokens per streamed event, and what the server's /metrics said over the case's repetitions."""
        reqs = [q for rep in reps for q in rep.requests]
        said, self.metrics_problem = self.metrics.summary(min(r.start for r in reps), max(r.end for r in reps)) \
            if self.metrics is not None else ({}, "")
        return {"tokens_per_event": tokens_per_event(reqs), **said}

    def reported_dtype(self, requested: str, resolved: str) -> str:
        """A server picks its own dtype; we only know what was asked for."""
        return resolved if requested != "auto" else "server"

    def notes(self) -> list[str]:
        """This case's notes; cleared, since the engine (one server connection) serves every later case too."""
        if self.client is None:
            return []
        said, self.client.warnings = sorted(set(self.client.warnings)), []
        problem, self.metrics_problem = self.metrics_problem, ""
        return said + ([problem] if problem else [])

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
        if self.client is not None:
            self.client.close()
            self.client = None



