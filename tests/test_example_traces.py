"""The example inference server emits a trace per HTTP request, linked to the batch that served
it, with jaxobs' compile span under the batch when the batch compiled (in-memory exporter)."""

from __future__ import annotations

import itertools
import json
import sys
import urllib.request

from opentelemetry import trace
from realtools import REPO

import jaxobs

sys.path.insert(0, str(REPO / "examples" / "inference_server"))

import server  # noqa: E402

_HIDDEN = itertools.count(900)  # a model size no other test compiled




def test_each_request_span_links_to_its_batch_and_a_cold_batch_holds_the_compile(spans, registry):
    app = server.InferenceApp(server.ModelConfig(hidden=next(_HIDDEN)), registry=registry)
    httpd, _ = server.serve(app, "127.0.0.1", 0)
    jaxobs.set_ready()
    try:
        body = json.dumps({"inputs": [[0.1] * server.ModelConfig().features]}).encode()
        for _ in range(2):  # the first batch compiles its bucket; the second does not
            request = urllib.request.Request(f"http://127.0.0.1:{httpd.server_port}/predict", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as answer:
                assert answer.status == 200
    finally:
        jaxobs.set_ready(False)
        httpd.shutdown()
        httpd.server_close()
        app.close()
    finished = spans.get_finished_spans()
    requests = [s for s in finished if s.name == "POST /predict"]
    batches = {s.context.span_id: s for s in finished if s.name == "batch"}
    assert len(requests) == 2 and requests[0].kind is trace.SpanKind.SERVER
    for request in requests:
        (link,) = request.links
        assert link.context.span_id in batches  # the batch it joined
    first_batch = batches[requests[0].links[0].context.span_id]
    compiles = [s for s in finished if s.name == "jaxobs.compile" and s.parent.span_id == first_batch.context.span_id]
    assert compiles and first_batch.attributes["jaxobs.start"] == "cold"
    assert batches[requests[1].links[0].context.span_id].attributes["jaxobs.start"] == "steady"
