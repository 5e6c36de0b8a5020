"""The operators' store on both engines: users, hashed tokens and sessions, what the HTTP side keeps in
memory (access_records), removal with tokens and sessions, and the bound on sessions per user."""
from __future__ import annotations

import dataclasses
import time

import pytest

from engine.store import users
from engine.store.database import DuplicateKey, Store


def add(store: Store, name: str, role: str = "viewer") -> users.User:
    return store.write(lambda txn: users.add_user(txn, name, role, f"hash-of-{name}"))


def session(user: users.User, n: int, expires_at: float) -> users.StoredSession:
    return users.StoredSession(user.id, f"session-hash-{user.name}-{n}", f"csrf-{n}", expires_at)


def test_users_tokens_and_sessions_read_back_as_frozen_records(store: Store) -> None:
    alice = add(store, "alice", "admin")
    bob = add(store, "bob")
    now = time.time()
    store.write(lambda txn: users.add_token(txn, alice, "token-hash-1"))
    store.write(lambda txn: users.open_session(txn, session(bob, 1, now + 60), now))
    store.write(lambda txn: users.open_session(txn, session(bob, 2, now - 1), now - 2))   # expired already
    assert store.read(lambda txn: users.find_user(txn, "alice")) == alice
    assert store.read(lambda txn: users.find_user(txn, "nobody")) is None
    found = store.read(lambda txn: users.credentials(txn, "bob"))
    assert (found.user, found.password_hash) == (bob, "hash-of-bob")
    assert store.read(users.admin_count) == 1
    records = store.read(lambda txn: users.access_records(txn, now))
    assert records.users == (alice, bob)
    assert records.tokens == (("token-hash-1", alice.id),)
    assert records.sessions == (session(bob, 1, now + 60),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        records.users[0].role = "viewer"   # type: ignore[misc]
    overviews = store.read(lambda txn: users.user_overviews(txn, now))
    assert [(o.name, o.role, o.tokens, o.sessions) for o in overviews] == [("alice", "admin", 1, 0),
                                                                          ("bob", "viewer", 0, 1)]


def test_a_taken_name_is_a_duplicate_key(store: Store) -> None:
    add(store, "alice")
    with pytest.raises(DuplicateKey):
        add(store, "alice")


def test_removing_a_user_removes_its_tokens_and_sessions(store: Store) -> None:
    alice, bob = add(store, "alice"), add(store, "bob")
    now = time.time()
    for n, user in enumerate((alice, alice, bob)):
        store.write(lambda txn: users.add_token(txn, user, f"token-hash-{n}"))
        store.write(lambda txn: users.open_session(txn, session(user, n, now + 60), now))
    assert store.write(lambda txn: users.remove_user(txn, alice)) == 2
    records = store.read(lambda txn: users.access_records(txn, now))
    assert records.users == (bob,)
    assert records.tokens == (("token-hash-2", bob.id),)
    assert [s.session_hash for s in records.sessions] == ["session-hash-bob-2"]


def test_a_login_purges_expired_sessions_and_keeps_a_bounded_number_per_user(store: Store) -> None:
    alice, bob = add(store, "alice"), add(store, "bob")
    now = time.time()
    store.write(lambda txn: users.open_session(txn, session(bob, 0, now + 1), now))
    for n in range(users.SESSIONS_KEPT_PER_USER + 5):
        store.write(lambda txn: users.open_session(txn, session(alice, n, now + 60), now))
    kept = store.read(lambda txn: users.access_records(txn, now)).sessions
    assert [s.session_hash for s in kept if s.user_ref == alice.id] == [
        f"session-hash-alice-{n}" for n in range(5, users.SESSIONS_KEPT_PER_USER + 5)]
    assert any(s.user_ref == bob.id for s in kept)   # another user's sessions are not counted
    store.write(lambda txn: users.open_session(txn, session(alice, 99, now + 60), now + 2))   # bob's expired
    assert not any(s.user_ref == bob.id for s in store.read(lambda txn: users.access_records(txn, now)).sessions)
    assert store.write(lambda txn: users.close_session(txn, "session-hash-alice-99"))
    assert not store.write(lambda txn: users.close_session(txn, "session-hash-alice-99"))
