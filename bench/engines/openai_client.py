"""The streaming client of the openai engine: one /v1/completions (or /v1/chat/completions) request, streamed
and timed on this machine's clock (start when it is sent, one timestamp per streamed event), its token counts
checked against the server's usage block. Arrival processes (bench/engines/arrivals.py) decide when requests
are sent; this module only sends one and reads its stream, as vLLM keeps `endpoint_request_func` apart from
its request generator.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from bench.core import clock
from bench.core.metrics import RequestTiming


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


def _token_id(token: str) -> int:
    """N from vLLM's "token_id:N" (ValueError for anything else)."""
    if not isinstance(token, str) or not token.startswith("token_id:"):
        raise ValueError(token)
    return int(token.removeprefix("token_id:"))


@dataclass
class StreamingClient:
    """One server: its URL, model, endpoint and deadline; `request` sends one prompt and times its stream.
    Notes on how the stream could be read (events holding several tokens, text prompts) gather in `warnings`."""

    base_url: str
    served_model: str
    timeout_s: float
    api: str = "completions"
    headers: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    http: Any = None

    def open(self) -> None:
        """Connect and check the server is up and serves the model (ServerError with what it said)."""
        import httpx

        # No pool limit: at 100 connections (httpx's default) the 101st user's request would wait on this side
        # and its wait be timed as the server's.
        self.http = httpx.Client(timeout=httpx.Timeout(self.timeout_s, connect=5.0), headers=self.headers,
                                 limits=httpx.Limits(max_connections=None, max_keepalive_connections=None))
        try:
            resp = self.http.get(f"{self.base_url}/models")
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

    def side_client(self) -> Any:
        """A client of its own with the same headers, for reads beside the requests (the server's /metrics)."""
        import httpx

        return httpx.Client(headers=self.headers)

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    def request_body(self, ids: list[int], output_len: int) -> tuple[str, dict[str, Any]]:
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

    def top_logprobs(self, ids: list[int], output_len: int, top: int) -> tuple[list[int], list[dict[int, float]]]:
        """(the token ids, each one's top log-probabilities by token id) of one greedy completion, unstreamed:
        the output check's request. vLLM's extension return_tokens_as_token_ids names tokens "token_id:N", so no
        tokenizer is needed here; a server that answers otherwise is a ServerError saying what came back."""
        import httpx

        _, body = self.request_body(ids, output_len)
        body.update(stream=False, logprobs=top, return_tokens_as_token_ids=True)
        body.pop("stream_options", None)
        try:
            resp = self.http.post(f"{self.base_url}/completions", json=body)
        except httpx.HTTPError as exc:
            raise ServerError(f"connection failed: {exc.__class__.__name__}: {exc}") from None
        if resp.status_code != 200:
            raise ServerError(f"POST /completions with logprobs: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            said = resp.json()["choices"][0]["logprobs"]
            tokens = [_token_id(t) for t in said["tokens"]]
            tops = [{_token_id(t): float(lp) for t, lp in step.items()} for step in said["top_logprobs"]]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ServerError(f"POST /completions with logprobs: no per-token top_logprobs by token id in "
                              f"{resp.text[:120]!r}") from None
        if len(tokens) != output_len or len(tops) != output_len:
            raise ServerError(f"POST /completions with logprobs: {len(tokens)} tokens, expected {output_len}")
        return tokens, tops

    def request(self, ids: list[int], output_len: int, start_at: float, scheduled: bool,
                     answer: list[int] | None = None) -> RequestTiming:
        """One streamed request, timed; answer (when given) receives the token ids the server streamed back."""
        import httpx

        delay = start_at - clock.now()
        if delay > 0:
            time.sleep(delay)
        path, body = self.request_body(ids, output_len)
        times: list[float] = []
        chunk_tokens: list[int] = []
        usage_tokens = prompt_tokens = None
        start = clock.now()
        deadline = start + self.timeout_s  # for the whole request: a server that keeps a stream alive ends too
        try:
            with self.http.stream("POST", f"{self.base_url}{path}", json=body) as resp:
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
        if usage_tokens is not None and counted != usage_tokens and (self.api != "chat" or counted > usage_tokens):
            # A chat stream's deltas are pieces of text, not tokens: fewer than the usage is expected there.
            self.warnings.append(f"the server's usage counts {usage_tokens} completion tokens, its stream carried "
                                 f"{counted}: the usage count is used")
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
                 "ITL is left empty (tokens sharing an event have no gap of their own); TPOT divides the time "
                 "after the first event by the tokens after it"))
            # Tokens sharing an event get its timestamp, so counts stay exact.
            times = [t for t, n in zip(times, chunk_tokens) for _ in range(n)] if counted == total else \
                times + [times[-1]] * (total - len(times))
        if self.api == "chat":
            self.warnings.append("chat endpoint: the prompt went as text; input_len is the server's count "
                                 "(usage.prompt_tokens) where it gives one")
        n_in = prompt_tokens if self.api == "chat" and prompt_tokens else len(ids)
        first = min(chunk_tokens[0], total) if chunk_tokens and counted == total else 1
        return RequestTiming(start, tuple(times[:total]), n_in, resolution, start_at if scheduled else None,
                             first_event_tokens=max(first, 1), events=len(chunk_tokens))
