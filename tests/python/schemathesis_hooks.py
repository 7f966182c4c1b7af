"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): how to send an NDJSON body, for
`POST /v1/collections/{name}/import`."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    """A generated string is sent as it is (one or more lines); any other value as one JSON line."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return (json.dumps(value) + "\n").encode()
