"""Any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp's server, a vendor's endpoint), streamed.

Each request is a streaming /v1/completions call with the prompt as token ids,
timed on this machine's clock: start when the request is sent, one timestamp
per streamed chunk. Token counts come from the server's usage block when it
sends one, else from the chunks (with a warning when a chunk held several
tokens, since those tokens then share one timestamp). The API key is read from
an environment variable and never written anywhere.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import torch

from bench.core import clock
from bench.core.errors import BadInput
from bench.core.metrics import Repetition, RequestTiming
from bench.core.params import Param
from bench.core.secrets import ENV_NAME, redact
from bench.engines.base import Engine, LoadOptions
from bench.hardware.devices import Device
from bench.spec.models import ModelSpec

# This engine's own workload keys (the loader merges them; --set reaches them like any key).
OPTIONS: dict[str, Param] = {
    "base_url": Param(str, "", "openai: server URL, e.g. http://127.0.0.1:8000/v1",
                      reload=True),
    "served_model": Param(str, "", "openai: the server's model name (default: the model name)", reload=True),
    "api_key_env": Param(str, "OPENAI_API_KEY", "openai: environment variable holding the API key"),
    "request_rate": Param(float, 0.0, "openai: Poisson arrivals per second (0: all requests at once); a list "
                          "sweeps the load, lowest first", minimum=0, matrix=True, plan="rate"),
    "num_requests": Param(int, 0, "openai: requests per repetition (0: batch_size)", minimum=0),
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


MAX_IN_FLIGHT = 512  # concurrent requests of a trace replay (more wait in the pool: their sends show as late)


class ServerError(RuntimeError):
    """The server refused, failed or answered something we cannot read; the case becomes an error row."""


def _parse_event(data: str) -> dict[str, Any]:
    """One SSE data payload as an object with the shapes the API promises, or ServerError."""
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        raise ServerError(f"malformed stream: not JSON: {data[:80]!r}") from None
    if not isinstance(event, dict):
        raise ServerError(f"malformed stream: not an object: {data[:80]!r}")
    if event.get("error"):
        raise ServerError(f"server error in stream: {str(event['error'])[:200]}")
    if event.get("usage") is not None and not isinstance(event["usage"], dict):
        raise ServerError(f"malformed stream: 'usage' is not an object: {data[:80]!r}")
    choices = event.get("choices")
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, dict) for c in choices)):
        raise ServerError(f"malformed stream: 'choices' is not a list of objects: {data[:80]!r}")
    return event


def _count(usage: dict[str, Any], key: str, data: str, previous: int | None) -> int | None:
    value = usage.get(key)
    if value is None:
        return previous
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ServerError(f"malformed stream: usage.{key} is {value!r}: {data[:80]!r}")
    return value


def _tokens_in(choice: dict[str, Any], data: str) -> int:
    """Tokens a streamed choice carries: its token ids if given, else one per non-empty text or delta."""
    ids = choice.get("token_ids")
    if ids is not None:
        if not isinstance(ids, list):
            raise ServerError(f"malformed stream: token_ids is not a list: {data[:80]!r}")
        return len(ids)
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    if text is not None and not isinstance(text, str):
        raise ServerError(f"malformed stream: text is not a string: {data[:80]!r}")
    return 1 if text else 0  # a final empty chunk (finish_reason only) carries no token


def is_local(base_url: str) -> bool:
    """Whether the server runs on this machine (its power is then in our telemetry)."""
    host = urlparse(base_url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.startswith("127.")


class OpenAIEngine(Engine):
    """Streaming completions against `base_url` (e.g. http://127.0.0.1:8000/v1)."""

    name = "openai"
    in_process = False
    on_local_device = False

    def __init__(self) -> None:
        self.base_url = ""
        self.served_model = ""
        self.timeout_s = 60.0
        self.request_rate = 0.0
        self.seed = 0
        self.headers: dict[str, str] = {}
        self.client: Any = None
        self.warnings: list[str] = []

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
            from bench.spec.models import resolve_model
            from bench.spec.trace import check_trace

            if params.get("api") == "chat":
                raise BadInput("trace replay sends token ids: use the completions endpoint (api=completions)")
            check_trace(params["trace"], resolve_model(params["model"]).shape.max_position, params["trace_limit"])
        if params.get("turns", 1) > 1 and params.get("api") == "chat":
            raise BadInput("multi-turn sessions send token ids: use the completions endpoint (api=completions)")
        if params.get("turns", 1) > 1 and (params.get("trace") or params.get("request_rate", 0)):
            raise BadInput("turns is a closed-loop session mode: not with a trace or a request_rate")

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
        key = os.environ.get(params["api_key_env"], "")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def configure(self, options: dict[str, Any]) -> None:
        """Each case's load (request rate, request count, trace speed...): the server stays the same."""
        self._take(options, self.served_model)

    def load(self, model: ModelSpec, device: Device, options: LoadOptions) -> None:
        """Check the server is up and serves the model; nothing is loaded here."""
        import httpx

        self._take(options.engine, model.name)
        self.seed = options.seed  # Poisson arrivals and later turns' prompts follow the run's seed
        self.vocab = model.shape.vocab
        if not self.base_url:
            raise ServerError("the openai engine needs --set base_url=http://HOST:PORT/v1")
        self.client = httpx.Client(timeout=httpx.Timeout(self.timeout_s, connect=5.0), headers=self.headers)
        try:
            resp = self.client.get(f"{self.base_url}/models")
        except httpx.HTTPError as exc:
            raise ServerError(f"server {self.base_url} unreachable: {exc.__class__.__name__}: {exc}") from None
        if resp.status_code != 200:
            raise ServerError(f"GET {self.base_url}/models: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            served = [m["id"] for m in resp.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ServerError(f"GET {self.base_url}/models: not an OpenAI model list") from None
        if served and self.served_model not in served:
            raise ServerError(f"server does not serve model '{self.served_model}' (it serves: {', '.join(served)}); "
                              "set --set served_model=NAME")

    def _request_body(self, ids: list[int], output_len: int) -> tuple[str, dict[str, Any]]:
        """(path, JSON body): token ids to /completions, or text to /chat/completions."""
        body: dict[str, Any] = {
            "model": self.served_model, "max_tokens": output_len, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True},
            # vLLM/SGLang/llama.cpp extension: exact lengths (servers without it ignore unknown fields or say
            # 400). Not min_tokens as well: redundant beside ignore_eos, and on vLLM it adds a logits processor
            # to every step (TPOT +20% on the tiny model on a CPU, against `vllm bench serve`: README).
            "ignore_eos": True,
        }
        if self.api == "chat":
            # No tokenizer here (random-weight configs): one word per token id; the server counts them.
            body["messages"] = [{"role": "user", "content": " ".join(f"w{i}" for i in ids)}]
            return "/chat/completions", body
        return "/completions", {**body, "prompt": ids, "return_token_ids": True}

    def _one_request(self, ids: list[int], output_len: int, start_at: float, scheduled: bool,
                     answer: list[int] | None = None) -> RequestTiming:
        """One streamed request, timed; answer (when given) receives the token ids the server streamed back."""
        import httpx

        delay = start_at - clock.now()
        if delay > 0:
            time.sleep(delay)
        path, body = self._request_body(ids, output_len)
        times: list[float] = []
        chunk_tokens: list[int] = []
        usage_tokens = prompt_tokens = None
        start = clock.now()
        deadline = start + self.timeout_s  # for the whole request: a server that keeps a stream alive ends too
        try:
            with self.client.stream("POST", f"{self.base_url}{path}", json=body) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise ServerError(f"POST {path}: HTTP {resp.status_code}: {resp.text[:200]}")
                for line in resp.iter_lines():
                    if clock.now() > deadline:
                        raise ServerError(f"request exceeded its {self.timeout_s:g} s deadline "
                                          f"({sum(chunk_tokens)} of {output_len} tokens)")
                    if not line or not line.startswith("data:"):
                        continue  # SSE comments (keep-alives) and blank lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = _parse_event(data)
                    usage = event.get("usage")
                    if usage is not None:
                        usage_tokens = _count(usage, "completion_tokens", data, usage_tokens)
                        prompt_tokens = _count(usage, "prompt_tokens", data, prompt_tokens)
                    for choice in event.get("choices") or []:
                        now = clock.now()
                        n = _tokens_in(choice, data)
                        if n:
                            times.append(now)
                            chunk_tokens.append(n)
                            if answer is not None and isinstance(choice.get("token_ids"), list):
                                answer.extend(int(t) for t in choice["token_ids"] if isinstance(t, int))
        except httpx.TimeoutException:
            raise ServerError(f"request timed out after {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ServerError(f"connection failed: {exc.__class__.__name__}: {exc}") from None
        counted = sum(chunk_tokens)
        total = usage_tokens if usage_tokens is not None else counted
        if not times and total:
            raise ServerError(f"the stream had no token event: its usage block counts {total} completion tokens, "
                              "but no choice carried text or token ids, so no token has a time")
        if total != output_len:
            raise ServerError(f"server returned {total} tokens, expected {output_len} (does it honour "
                              "ignore_eos?)")
        resolution = "token"
        if len(times) < total:
            resolution = "single" if len(times) <= 1 else "chunk"
            self.warnings.append(
                f"the server does not stream per token ({total} tokens in {len(times)} event(s)): " +
                ("TPOT, ITL and decode tok/s are left empty" if resolution == "single" else
                 "ITL is left empty (tokens sharing an event have no gap of their own); TPOT is unaffected"))
            # Tokens sharing an event get its timestamp, so counts stay exact.
            times = [t for t, n in zip(times, chunk_tokens) for _ in range(n)] if counted == total else \
                times + [times[-1]] * (total - len(times))
        if self.api == "chat":
            self.warnings.append("chat endpoint: the prompt went as text; input_len is the server's count "
                                 "(usage.prompt_tokens) where it gives one")
        n_in = prompt_tokens if self.api == "chat" and prompt_tokens else len(ids)
        return RequestTiming(start, tuple(times[:total]), n_in, resolution, start_at if scheduled else None)

    def _sessions(self, first_prompts: list[list[int]], output_len: int) -> Repetition:
        """batch_size sessions at once, each `turns` requests in turn: a turn's prompt is the previous turns'
        prompts and answers (the token ids the server streamed) plus input_len new tokens."""
        def session(index: int, first: list[int]) -> list[RequestTiming]:
            rng = random.Random(self.seed * 1_000_003 + index)
            history, timings = [], []
            prompt = first
            for turn in range(self.turns):
                answer: list[int] = []
                timings.append(self._one_request(history + prompt, output_len, clock.now(), False, answer))
                if len(answer) != output_len:  # a server that streams text only: the history cannot be exact
                    raise ServerError(f"multi-turn needs the answer's token ids (turn {turn + 1} streamed "
                                      f"{len(answer)} of {output_len}); the server must return token ids")
                history += prompt + answer
                prompt = rng.choices(range(self.vocab), k=len(first))
            return timings

        with ThreadPoolExecutor(max_workers=len(first_prompts)) as pool:
            sessions = list(pool.map(session, range(len(first_prompts)), first_prompts))
        firsts = [1000 * s[0].ttft for s in sessions]
        lasts = [1000 * s[-1].ttft for s in sessions]
        self.warnings.append(f"multi-turn: {self.turns} turns; TTFT of turn 1 {sorted(firsts)[len(firsts) // 2]:.1f} "
                             f"ms, of turn {self.turns} {sorted(lasts)[len(lasts) // 2]:.1f} ms (median over "
                             f"{len(sessions)} sessions; its prompt holds {self.turns - 1} earlier turns)")
        return Repetition(tuple(t for s in sessions for t in s))

    def _replay(self) -> Repetition:
        """The trace, request by request at its arrival times (streamed from the file, sent as they come due);
        each request's own lengths, its prompt built from its hash ids so shared prefixes are shared."""
        from bench.spec.trace import prompt_ids, requests

        now = clock.now()
        with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
            futures = []
            for request in requests(self.trace, self.trace_speed, self.trace_limit):
                due = now + request.at_s
                if due - clock.now() > 0.002:  # read ahead no further than the next send: constant memory
                    time.sleep(due - clock.now())
                futures.append(pool.submit(self._one_request, prompt_ids(request, self.vocab),
                                           request.output_len, due, True))
            results = [f.result() for f in futures]
        return Repetition(tuple(results))

    def generate(self, input_ids: torch.Tensor, output_len: int, on_token: Any = None,
                 reuse_prefix: int = 0) -> Repetition:
        """All prompts as concurrent requests (fixed concurrency), Poisson arrivals at request_rate, or the
        trace's arrivals and lengths."""
        if self.trace:
            return self._replay()
        if self.turns > 1:
            return self._sessions([row.tolist() for row in input_ids], output_len)
        prompts = [row.tolist() for row in input_ids]
        if self.num_requests > len(prompts):
            prompts = [prompts[i % len(prompts)] for i in range(self.num_requests)]
        now = clock.now()
        starts = [now] * len(prompts)
        if self.request_rate > 0:
            rng = random.Random(self.seed)
            t = now
            for i in range(len(prompts)):
                starts[i] = t
                t += rng.expovariate(self.request_rate)
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            futures = [pool.submit(self._one_request, p, output_len, s, self.request_rate > 0)
                       for p, s in zip(prompts, starts)]
            results = [f.result() for f in futures]
        return Repetition(tuple(results))

    def reported_dtype(self, requested: str, resolved: str) -> str:
        """A server picks its own dtype; we only know what was asked for."""
        return resolved if requested != "auto" else "server"

    def notes(self) -> list[str]:
        """This case's notes; cleared, since the engine (one server connection) serves every later case too."""
        said, self.warnings = sorted(set(self.warnings)), []
        return said

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None



