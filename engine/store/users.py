"""SQL of the operators: users with their role and password hash, API tokens and console sessions.

Tokens and session ids are stored only as their hashes (engine/domain/credentials.py makes them).  The
HTTP side never reads these tables per request: it keeps ``access_records`` in memory and re-reads them
every few seconds off the reactor thread (a few hundred rows at most: sessions are bounded per user),
which also catches ``swf users`` run by another process.  (A change counter would miss a removal and an
addition between two reads: SQLite gives a new row the id of a deleted highest one.)
"""
from __future__ import annotations

from dataclasses import dataclass

from .database import Transaction
from .repository import now_iso

SESSIONS_KEPT_PER_USER = 20   # a login past this ends the user's oldest session: the table stays bounded


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str                  # viewer | operator | admin (engine/domain/principal.py)
    created_at: str


@dataclass(frozen=True)
class Credentials:
    """A user and the password hash a login is checked against."""

    user: User
    password_hash: str


@dataclass(frozen=True)
class UserOverview:
    """One line of ``swf users list``."""

    name: str
    role: str
    created_at: str
    tokens: int
    sessions: int              # sessions not yet expired


@dataclass(frozen=True)
class StoredSession:
    user_ref: int
    session_hash: str
    csrf_token: str
    expires_at: float          # epoch seconds


@dataclass(frozen=True)
class AccessRecords:
    """Everything a request's authentication is decided from: users, token hashes, open sessions."""

    users: tuple[User, ...]
    tokens: tuple[tuple[str, int], ...]      # (token hash, user id)
    sessions: tuple[StoredSession, ...]


_USER_COLUMNS = "id, name, role, created_at"


def add_user(txn: Transaction, name: str, role: str, password_hash: str) -> User:
    """The new user (a taken name raises ``DuplicateKey``)."""
    at = now_iso()
    user_id = txn.insert("INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                         (name, role, password_hash, at))
    return User(user_id, name, role, at)


def find_user(txn: Transaction, name: str) -> User | None:
    row = txn.row(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
    return None if row is None else User(*row)


def credentials(txn: Transaction, name: str) -> Credentials | None:
    row = txn.row(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE name = ?", (name,))
    return None if row is None else Credentials(User(*row[:4]), row[4])


def user_count(txn: Transaction) -> int:
    return int(txn.row("SELECT COUNT(*) FROM users")[0])


def admin_count(txn: Transaction) -> int:
    return int(txn.row("SELECT COUNT(*) FROM users WHERE role = 'admin'")[0])


def user_overviews(txn: Transaction, now: float) -> list[UserOverview]:
    """Every user by name, with its token count and open sessions."""
    return [UserOverview(*row) for row in txn.rows(
        "SELECT u.name, u.role, u.created_at,"
        " (SELECT COUNT(*) FROM api_tokens t WHERE t.user_ref = u.id),"
        " (SELECT COUNT(*) FROM sessions s WHERE s.user_ref = u.id AND s.expires_at > ?)"
        " FROM users u ORDER BY u.name", (now,))]


def remove_user(txn: Transaction, user: User) -> int:
    """Remove the user with its tokens and sessions; the number of tokens it had."""
    tokens = txn.execute("DELETE FROM api_tokens WHERE user_ref = ?", (user.id,)).rowcount
    txn.execute("DELETE FROM sessions WHERE user_ref = ?", (user.id,))
    txn.execute("DELETE FROM users WHERE id = ?", (user.id,))
    return int(tokens)


def add_token(txn: Transaction, user: User, token_hash: str) -> int:
    """The new token's id (the token itself is never stored)."""
    return txn.insert("INSERT INTO api_tokens (user_ref, token_hash, created_at) VALUES (?, ?, ?)",
                      (user.id, token_hash, now_iso()))


def open_session(txn: Transaction, session: StoredSession, now: float) -> None:
    """Store a new session; expired sessions go, and the user's oldest beyond ``SESSIONS_KEPT_PER_USER``."""
    txn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
    txn.execute("INSERT INTO sessions (user_ref, session_hash, csrf_token, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (session.user_ref, session.session_hash, session.csrf_token, now_iso(), session.expires_at))
    txn.execute("DELETE FROM sessions WHERE user_ref = ? AND id NOT IN"
                " (SELECT id FROM sessions WHERE user_ref = ? ORDER BY id DESC LIMIT ?)",
                (session.user_ref, session.user_ref, SESSIONS_KEPT_PER_USER))


def close_session(txn: Transaction, session_hash: str) -> bool:
    return txn.execute("DELETE FROM sessions WHERE session_hash = ?", (session_hash,)).rowcount > 0


def access_records(txn: Transaction, now: float) -> AccessRecords:
    """Users, token hashes and the sessions not expired at ``now``."""
    return AccessRecords(
        tuple(User(*row) for row in txn.rows(f"SELECT {_USER_COLUMNS} FROM users ORDER BY id")),
        tuple((token_hash, int(user_ref)) for token_hash, user_ref in txn.rows(
            "SELECT token_hash, user_ref FROM api_tokens")),
        tuple(StoredSession(int(user_ref), session_hash, csrf_token, float(expires_at))
              for user_ref, session_hash, csrf_token, expires_at in txn.rows(
                  "SELECT user_ref, session_hash, csrf_token, expires_at FROM sessions WHERE expires_at > ?",
                  (now,))))
