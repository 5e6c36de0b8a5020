"""Password hashes (scrypt, salted, parameters kept in the hash) and token hashes."""
from __future__ import annotations

import base64
import hashlib

from engine.domain import credentials


def test_a_password_verifies_and_a_wrong_one_does_not() -> None:
    stored = credentials.hash_password("correct horse")
    assert stored.startswith(f"scrypt${credentials.SCRYPT_N}${credentials.SCRYPT_R}${credentials.SCRYPT_P}$")
    assert "correct horse" not in stored
    assert credentials.verify_password("correct horse", stored)
    assert not credentials.verify_password("correct horsf", stored)
    assert credentials.hash_password("correct horse") != stored   # a new salt each time


def test_a_hash_made_with_other_parameters_still_verifies() -> None:
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"pw-older", salt=salt, n=2 ** 12, r=8, p=1, dklen=32)
    stored = f"scrypt${2 ** 12}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert credentials.verify_password("pw-older", stored)
    assert not credentials.verify_password("pw-newer", stored)


def test_malformed_hashes_never_verify() -> None:
    for stored in ("", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA==$AA==", "scrypt$16384$8$1$!!$AA=="):
        assert not credentials.verify_password("anything", stored)


def test_secrets_are_long_random_and_stored_as_sha256() -> None:
    first, second = credentials.new_secret(), credentials.new_secret()
    assert first != second and len(first) >= 43
    assert credentials.secret_hash(first) == hashlib.sha256(first.encode()).hexdigest()
    assert credentials.same_secret(first, first) and not credentials.same_secret(first, second)
