"""The JetStream JSON API (layer 5): `$JS.API.>` handlers on top of `jsedge.jetstream`.

`JetStreamAPI(server, jetstream)` subscribes the API subjects; see `dispatcher` for the envelope and
error rules, `streams` for the stream endpoints and `direct` for MSG.GET lookups and DIRECT.GET.
"""

from jsedge.api.dispatcher import JetStreamAPI

__all__ = ["JetStreamAPI"]
