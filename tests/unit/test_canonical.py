"""The body hash is part of every ledger: its definition is pinned, not recomputed."""

from __future__ import annotations

import hashlib
import json

from xpdeploy.canonical import body_sha256, canonical_json

BODY = {
    "id": 245624,
    "target_by": "user_id",
    "target_with_params": {"crm-2": {"fname": "Zoë"}, "crm-1": {"fname": "Ann"}},
    "params": {"external_message_id": "welcome-1"},
    "apptoken": "never part of the hash",
}


def test_canonical_json_is_sorted_compact_utf8_without_the_apptoken() -> None:
    assert canonical_json(BODY) == (
        '{"id":245624,"params":{"external_message_id":"welcome-1"},"target_by":"user_id",'
        '"target_with_params":{"crm-1":{"fname":"Ann"},"crm-2":{"fname":"Zoë"}}}'
    )


def test_the_hash_of_a_known_body_never_changes() -> None:
    """Changing it would turn every applied execution in every ledger into "drifted"."""
    expected = hashlib.sha256(canonical_json(BODY).encode("utf-8")).hexdigest()
    assert body_sha256(BODY) == expected
    assert expected == "6bcfaf055d893ba63d5fcb020efc4b541951820248186f905bf8bf41f2e4f4f0"


def test_large_maps_hash_the_same_whatever_their_order() -> None:
    """Bodies over the chunking threshold are encoded piece by piece: still sorted."""
    recipients = {f"crm-{i:04d}": {"n": i, "name": f"Ü{i}"} for i in range(1000)}
    forward = {"id": 1, "target_with_params": recipients, "target": list(range(600))}
    backward = {
        "target": list(range(600)),
        "target_with_params": dict(reversed(list(recipients.items()))),
        "id": 1,
    }
    reference = json.dumps(forward, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(forward) == canonical_json(backward) == reference
    assert body_sha256(backward) == hashlib.sha256(reference.encode("utf-8")).hexdigest()
