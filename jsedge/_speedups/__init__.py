"""Compiled (Cython) twins of the hot paths. Never import these directly: use the selectors
(`jsedge.routing.sublist`, `jsedge.protocol.parser`), which honour JSEDGE_NO_EXTENSIONS."""
