"""Operator credentials: scrypt password hashes, API tokens and session ids (no I/O).

Passwords are hashed with ``hashlib.scrypt`` (the standard library's binding of OpenSSL: no extra
package to keep up to date), a random 16-byte salt each, and the cost parameters stored in the hash, so
hashes made with other parameters keep verifying after a change here.  The parameters are OWASP's
N=2^14, r=8, p=5 line (16 MiB, about 0.25 s on one core): a login costs that once, a guesser every try.

API tokens and session ids are 256 random bits (``secrets``); only their SHA-256 is stored, which is
enough for values that cannot be guessed (a slow hash protects low-entropy passwords, not these).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 5
_MAX_MEMORY = 128 * 1024 * 1024   # allows stored N up to 2^16 at r=8 (128 * N * r bytes)
_SCHEME = "scrypt"

MIN_PASSWORD_LENGTH = 8
USER_NAME_PATTERN = r"[A-Za-z0-9._@-]{1,64}"   # swf users and the API's users take the same names


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (salt and hash base64), for the users table."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join((_SCHEME, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored hash (compared in constant time); False for a malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.lru_cache(maxsize=1)
def unknown_user_hash() -> str:
    """Verified against when the user does not exist, so a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def new_secret() -> str:
    """An API token, a session id or a CSRF token: 256 random bits, URL- and header-safe."""
    return secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """What the store keeps of a token or session id (hex SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
