-- wrk script: a small POST /v1/activations (three items, every layer), as a notebook asks.
wrk.method = "POST"
wrk.body = '{"items": [0, 1, 2]}'
wrk.headers["Content-Type"] = "application/json"
