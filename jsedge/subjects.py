"""Subject rules (layer 0): validation, naive matching and subject algebra on `bytes`.

Subjects are `bytes` throughout jsedge, exactly as they appear on the wire (spec/protocol.md §8). A
subject is one or more tokens separated by `.`; `*` as a whole token matches exactly one token and `>`
as a whole token matches one or more trailing tokens. `*`/`>` inside a longer token are literal
characters. Whitespace (space, TAB, CR, LF, FF) is never part of a valid subject.

This module is the readable reference: the sublist trie (`jsedge.routing.sublist`) must agree with
`subject_matches`, and the property tests check that it does. Permissions and stream subject overlap
use `subject_is_subset` / `subjects_overlap`. It imports nothing from jsedge.
"""

from __future__ import annotations

__all__ = [
    "PWC",
    "FWC",
    "SEP",
    "valid_subject",
    "valid_literal_subject",
    "valid_sublist_subject",
    "valid_pedantic_publish_subject",
    "subject_matches",
    "tokens_count",
    "subject_is_subset",
    "subjects_overlap",
    "is_literal",
]

#: Partial wildcard token: matches exactly one token.
PWC = b"*"
#: Full wildcard token: matches one or more trailing tokens; only valid as the last token.
FWC = b">"
#: Token separator.
SEP = b"."

# bytes.translate(None, delete) removes these; a length change means the subject contained one.
_WHITESPACE = b" \t\r\n\f"


def _has_whitespace(subject: bytes) -> bool:
    # translate() runs in C and beats a per-byte Python loop by ~50x on 20-byte subjects.
    return len(subject.translate(None, _WHITESPACE)) != len(subject)


def valid_subject(subject: bytes) -> bool:
    """A valid SUB subject (§8.2): non-empty tokens, no whitespace, `>` only as the last token."""
    if not subject or _has_whitespace(subject):
        return False
    tokens = subject.split(SEP)
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if not token:
            return False
        if token == FWC and index != last:
            return False
    return True


def valid_literal_subject(subject: bytes) -> bool:
    """A valid subject without wildcard tokens: what a pedantic PUB must use (§8.3)."""
    if not valid_subject(subject):
        return False
    return all(token != PWC and token != FWC for token in subject.split(SEP))


def valid_sublist_subject(subject: bytes) -> bool:
    """What a SUB may use (nats-server's Sublist.Insert rule): non-empty tokens, nothing after `>`.
    Unlike `valid_subject`, bytes such as FF or CR inside a token are allowed, as nats-server allows
    them (the parser already split the line on spaces and TABs)."""
    if not subject:
        return False
    tokens = subject.split(SEP)
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if not token or (token == FWC and index != last):
            return False
    return True


def valid_pedantic_publish_subject(subject: bytes) -> bool:
    """What a pedantic PUB may use (nats-server's IsValidLiteralSubject): non-empty tokens, no
    wildcard token; other bytes are not checked."""
    for token in subject.split(SEP):
        if not token or token == PWC or token == FWC:
            return False
    return True


def is_literal(subject: bytes) -> bool:
    """True when no token is a whole-token wildcard (the subject may still be invalid otherwise)."""
    if b"*" not in subject and b">" not in subject:
        return True
    return all(token != PWC and token != FWC for token in subject.split(SEP))


def tokens_count(subject: bytes) -> int:
    """Number of tokens (0 for the empty subject)."""
    if not subject:
        return 0
    return subject.count(SEP) + 1


def subject_matches(filter_subject: bytes, subject: bytes) -> bool:
    """Naive reference matcher: does the subscription subject `filter_subject` match `subject`?

    `subject` is a published subject. It is routed by plain token comparison, so a wildcard token in
    it (non-pedantic PUB, §8.3) only matches a filter wildcard or the identical literal token. A
    subject with an empty token matches nothing (nats-server's sublist returns an empty result).
    """
    if not subject:
        return False
    subject_tokens = subject.split(SEP)
    if any(not token for token in subject_tokens):
        return False
    filter_tokens = filter_subject.split(SEP)
    for index, filter_token in enumerate(filter_tokens):
        if filter_token == FWC:
            # `>` needs at least one more token; it is the last filter token when the filter is valid.
            return index < len(subject_tokens) and index == len(filter_tokens) - 1
        if index >= len(subject_tokens):
            return False
        if filter_token == PWC:
            continue
        if not filter_token or filter_token != subject_tokens[index]:
            return False
    return len(filter_tokens) == len(subject_tokens)


def subject_is_subset(subset: bytes, superset: bytes) -> bool:
    """Is every subject matched by the filter `subset` also matched by the filter `superset`?

    Both are SUB-style filters. `foo.bar` ⊆ `foo.*` ⊆ `foo.>` ⊆ `>`; `foo.>` is not a subset of
    `foo.*` (it also matches `foo.a.b`).
    """
    a_tokens = subset.split(SEP)
    b_tokens = superset.split(SEP)
    for index, b_token in enumerate(b_tokens):
        if index >= len(a_tokens):
            return False
        a_token = a_tokens[index]
        if b_token == FWC:
            return True
        if a_token == FWC:
            return False  # a matches longer subjects than b can at this position
        if b_token == PWC:
            continue
        if a_token == PWC or a_token != b_token:
            return False
    return len(a_tokens) == len(b_tokens)


def subjects_overlap(a: bytes, b: bytes) -> bool:
    """Is there at least one subject matched by both filters `a` and `b`?"""
    a_tokens = a.split(SEP)
    b_tokens = b.split(SEP)
    for index in range(min(len(a_tokens), len(b_tokens))):
        a_token = a_tokens[index]
        b_token = b_tokens[index]
        if a_token == FWC or b_token == FWC:
            return True  # the other side has >= 1 token left here, `>` absorbs all of them
        if a_token == PWC or b_token == PWC or a_token == b_token:
            continue
        return False
    return len(a_tokens) == len(b_tokens)


_JS_ACK = b"$JS.ACK."


def js_deliver_split(reply: bytes) -> int:
    """In a routed JetStream delivery the reply is `$JS.ACK.<8 tokens>@<subject to show>` (how
    nats-server carries the stored subject across a route while routing on the deliver subject):
    the index of that `@`, else -1. Only an `@` after the eighth dot counts (tokens may hold `@`)."""
    if not reply.startswith(_JS_ACK):
        return -1
    dots = 0
    for i, byte in enumerate(reply):
        if byte == 0x2E:
            dots += 1
        elif byte == 0x40 and dots >= 8:
            return i
    return -1
