"""The JetStream JSON API (layer 5): `$JS.API.>` handlers on top of `jsedge.jetstream`.

`JetStreamAPI(server, jetstream)` subscribes the API subjects; see `dispatcher` for the envelope and
error rules, `request` for the types the dispatcher and the handlers share (why it is a module of its
own: no import cycle), `streams` for the stream endpoints, `consumers` for the consumer endpoints,
`snapshot` for backup/restore and `direct` for MSG.GET lookups and DIRECT.GET.
"""

from jsedge.api.dispatcher import JetStreamAPI

__all__ = ["JetStreamAPI"]
