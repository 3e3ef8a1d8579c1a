"""The NATS client wire protocol (layer 1): framing of what clients send.

`jsedge.protocol.parser` is the only module others import: it exports `Parser`, the twin chosen by
`jsedge._ext` (compiled `jsedge/_speedups/parser.pyx`, or the pure-Python reference
`_parser_py.py`). The parser turns bytes into handler calls and, for the fused fast path of
docs/design.md, hands complete PUB/HPUB messages straight to the sublist's `deliver()`.
"""
