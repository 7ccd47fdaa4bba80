"""OpenAI-compatible backend against a tiny completions server started on 127.0.0.1 in the test.

The server is a stand-in for ``vllm serve``: it implements ``POST /v1/completions`` (echo, logprobs,
stop, max_tokens) in the OpenAI response layout, computing with a real tiny transformers model, so
the backend's answers can be compared with the HF backend's on the same model.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from taskmill.errors import TaskmillError
from taskmill.backends.hf import HFBackend
from taskmill.backends.openai import OpenAIBackend
from taskmill.backends.requests import GenerateRequest, LoglikelihoodRequest


def _echo_choice(model, tok, prompt: str, index: int) -> dict:
    import torch

    enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], [s for s, _ in enc["offset_mapping"]]
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    values, tops = [None], [None]
    for pos in range(1, len(ids)):
        row = logp[pos - 1]
        values.append(float(row[ids[pos]]))
        top = int(row.argmax())
        tops.append({tok.convert_ids_to_tokens(top): float(row[top])})
    nxt = int(logp[-1].argmax())  # the one generated token (max_tokens=1)
    return {"index": index, "text": prompt + tok.decode([nxt]), "logprobs": {
        "tokens": tok.convert_ids_to_tokens(ids) + [tok.convert_ids_to_tokens(nxt)],
        "token_logprobs": values + [float(logp[-1, nxt])],
        "top_logprobs": tops + [{tok.convert_ids_to_tokens(nxt): float(logp[-1, nxt])}],
        "text_offset": offsets + [len(prompt)]}}


def make_server(model, tok):
    hf = HFBackend(model, tok)
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            if self.path != "/v1/completions":
                self.send_response(404)
                self.end_headers()
                return
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            if body.get("echo"):
                choices = [_echo_choice(model, tok, p, i) for i, p in enumerate(prompts)]
            else:
                texts = hf.generate([GenerateRequest(p, tuple(body.get("stop") or ()), body["max_tokens"]) for p in prompts])
                choices = [{"index": i, "text": t} for i, t in enumerate(texts)]
            data = json.dumps({"object": "text_completion", "model": body["model"], "choices": choices[::-1]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture()
def server(tiny_model, smol_tokenizer):
    srv, seen = make_server(tiny_model, smol_tokenizer)
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", seen
    srv.shutdown()
    srv.server_close()


def test_echo_logprobs_match_hf_backend(server, tiny_model, smol_tokenizer):
    url, seen = server
    backend = OpenAIBackend("tiny", base_url=url, batch_size=2)
    reqs = [LoglikelihoodRequest("The cat sat on the ", "mat"), LoglikelihoodRequest("Question: 2+2?\nAnswer:", " four"),
            LoglikelihoodRequest("Hello", " world and more words")]
    got = backend.loglikelihood(reqs)
    ref = HFBackend(tiny_model, smol_tokenizer).loglikelihood(reqs)
    for g, r in zip(got, ref):
        assert g.logprob == pytest.approx(r.logprob, abs=1e-4)
        assert g.n_tokens == r.n_tokens and g.is_greedy == r.is_greedy
    assert seen[0]["echo"] is True and seen[0]["logprobs"] == 1 and seen[0]["model"] == "tiny"
    assert seen[0]["prompt"][0] == "The cat sat on the mat"  # context space moved to the continuation
    assert backend.calls == 2  # 3 requests in batches of 2


def test_generation_with_stop_and_adapter_model_name(server, tiny_model, smol_tokenizer):
    url, seen = server
    backend = OpenAIBackend("tiny", adapter="fold-3", base_url=url)
    reqs = [GenerateRequest("Once upon a time", ("\n",), 5), GenerateRequest("x", (), 3)]
    got = backend.generate(reqs)
    assert got == HFBackend(tiny_model, smol_tokenizer).generate(reqs)
    assert seen[-1]["model"] == "fold-3" and backend.adapter_hash


def test_unreachable_server_is_one_clear_error():
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", retries=1, timeout=2)
    with pytest.raises(TaskmillError, match="cannot reach the server"):
        backend.generate([GenerateRequest("a")])
